"""`huimin run`: build a world, start the broker and the platform, let the hospitals carry out
the visits over Kafka, compare every answer with the oracle, and report."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import os
import shutil
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from kafka.errors import KafkaError

from huimin.logfiles import (
    LogHeader,
    expected_path_for,
    whole_file,
    write_header,
    write_records,
    write_visit,
)
from huimin.verify import answer_diff
from messages.codes import ErrorCode, Infno
from messages.platform import hospital_context
from messages.topics import HOSP_REQUESTS
from messages.visitlog import TIME_FORMAT, Visit, VisitSession
from settlement.clearing import clear
from settlement.ledger import events_from_answers
from settlement.oracle import Oracle
from simulators.bad_messages import KINDS, BadMessage, generate_bad_messages
from simulators.faults import FaultPlan
from simulators.hospital import DeadLetterRecord, HospitalFleet, HospitalRunResult, OnProgress
from simulators.interrupt import GentleInterrupt
from simulators.reconciliation import closing_requests, settlements_to_post
from simulators.visits import VisitSpec, generate_visits
from simulators.world import World, WorldSpec, build_world, clearing_policy, world_tag
from streams.broker import BOOTSTRAP_ENV, broker, free_port, unreachable
from streams.config import FETCH_WAIT_MS, LINGER_MS, STORES, WorkerConfig, fetch_wait_for
from streams.dead_letters import TopicMissing
from streams.process import WorkerProcess
from streams.role import REQUESTS_INWARD
from streams.table_files import LOCK_FILE
from streams.topics import (
    create_platform_topics,
    records_in,
    topic_problems,
    unfit_topics,
)
from streams.trail import Trail, follow_trail


@dataclass(frozen=True, slots=True)
class RunOptions:
    world: WorldSpec = field(default_factory=WorldSpec)
    visits: VisitSpec = field(default_factory=VisitSpec)
    rate: float = 50.0  # visit arrivals per second (open loop)
    bad_per_kind: int = 2  # bad requests of each kind mixed in
    partitions: int = 8
    answer_timeout_s: float = 30.0
    out_dir: Path | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)
    broker: str = "tansu"  # the local broker, when KAFKA_BOOTSTRAP_SERVERS names none
    workers: int = 1  # platform workers in the consumer group from the start
    store: str = "memory"  # where the workers keep their tables (streams/config.py STORES)


@dataclass
class Comparison:
    """Streamed answers against the oracle's, visit by visit and step by step."""

    visits: int = 0
    settlements_expected: int = 0
    settlements_equal: int = 0
    answers_compared: int = 0
    answers_equal: int = 0
    redelivered: int = 0  # identical extra answers after a rebalance or a restart
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.answers_equal == self.answers_compared and not self.mismatches


def distinct(answers: list[dict]) -> list[dict]:
    out: list[dict] = []
    for a in answers:
        if a not in out:
            out.append(a)
    return out


def compare(streamed: list[VisitSession], expected: list[VisitSession],
            redelivery: bool = False) -> Comparison:
    """Every answer the oracle gives, to every request of every visit, must have come back
    from the platform identical (and as often: a duplicate request gets its answer twice).
    With `redelivery` (a worker was killed: at-least-once delivery replays what it had not
    committed) an answer may come back more often than asked, but always identical."""
    cmp = Comparison(visits=len(expected))
    for got, want in zip(streamed, expected, strict=True):
        if want.settlement is not None:
            cmp.settlements_expected += 1
            if got.settlement == want.settlement:
                cmp.settlements_equal += 1
        for msgid, infno in want.sent:
            want_answers = want.answers.get(msgid, [])
            got_answers = got.answers.get(msgid, [])
            cmp.answers_compared += len(want_answers)
            if redelivery and len(got_answers) > len(want_answers):
                cmp.redelivered += len(got_answers) - len(want_answers)
                if distinct(got_answers) == distinct(want_answers):
                    got_answers = want_answers
            if got_answers == want_answers:
                cmp.answers_equal += len(want_answers)
            elif len(cmp.mismatches) < 20:
                cmp.mismatches.append(f"visit {got.visit.visit_no} {infno}: "
                                      f"{answer_diff(got_answers, want_answers)}")
    return cmp


@dataclass
class BadRequestCheck:
    """Each bad request got exactly its expected outcome; nothing else was dead-lettered."""

    expected: int = 0
    as_expected: int = 0
    unexpected_dead_letters: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.as_expected == self.expected and not self.unexpected_dead_letters


def ours(result: HospitalRunResult, bad: list[BadMessage]
         ) -> Callable[[DeadLetterRecord], bool]:
    """Whether a dead letter is of a message these hospitals sent: a bad request sent on
    purpose (by its bytes), or a message that carries the msgid of a request they sent. Any
    other is another producer's, on a cluster shared with it (garbage written to a topic by
    hand, say): counted apart, neither lost nor unexpected here."""
    values = {b.value for b in bad}
    daily = result.daily.msgids if result.daily is not None else set()

    def test(letter: DeadLetterRecord) -> bool:  # by lookups: a million visits' msgids
        if letter.value in values:  # are not copied into one more set
            return True
        ctx = hospital_context(letter.value, letter.entry.source_topic == HOSP_REQUESTS)
        msgid = ctx.get("msgid") if ctx is not None else None
        return msgid is not None and (msgid in result.exchanges or msgid in result.bad_answers
                                      or msgid in daily)
    return test


def check_bad_requests(result: HospitalRunResult, bad: list[BadMessage],
                       redelivery: bool = False) -> BadRequestCheck:
    check = BadRequestCheck(expected=len(bad))
    mine = ours(result, bad)
    letters = Counter((d.value, d.error_code) for d in result.dead_letters if mine(d))
    if redelivery:  # a replayed bad request is dead-lettered again, identically
        letters = Counter({k: min(n, sum(b.value == k[0] for b in bad)) for k, n in
                           letters.items()})
    for b in bad:
        if b.expect == "answer":
            answers = result.bad_answers.get(b.msgid, [])
            codes = [a.get("err_code") for a in (distinct(answers) if redelivery else answers)]
            good = codes == [b.code.value] and answers[0]["infcode"] == -1
            seen = f"answers {codes}"
        else:
            good = letters[(b.value, b.code.value)] > 0
            if good:
                letters[(b.value, b.code.value)] -= 1
            seen = "no dead letter with that code"
        if good:
            check.as_expected += 1
        elif len(check.problems) < 20:
            check.problems.append(f"bad request {b.kind}: expected {b.expect} {b.code.value}, "
                                  f"got {seen}")
    check.unexpected_dead_letters = sum(n for n in letters.values() if n > 0)
    return check


@dataclass
class DailyReconciliationCheck:
    """The hospitals' daily 3201/3202 during the run: every hospital-day ends balanced (平),
    and exactly the settlements whose answers a HIS lost were posted from 3202 details."""

    days: int = 0
    balanced_at_once: int = 0
    balanced_after_posting: int = 0  # 不平 until 3202 detailed the settlements it had lost
    balanced_after_waiting: int = 0  # 不平 until the platform's clearing caught up
    unbalanced: list[str] = field(default_factory=list)
    posted: int = 0
    expected_posted: int = 0
    #: the posted settlements' money, fen: medfee_sumamt, hifp_pay, acct_pay
    posted_fen: list[int] = field(default_factory=lambda: [0, 0, 0])

    @property
    def ok(self) -> bool:
        return not self.unbalanced and self.posted == self.expected_posted


def check_daily_reconciliation(result: HospitalRunResult,
                               expected: list[VisitSession]) -> DailyReconciliationCheck:
    check = DailyReconciliationCheck(expected_posted=settlements_to_post(expected))
    for day in result.days_reconciled:
        check.days += 1
        check.posted += day.posted
        check.posted_fen = [a + b for a, b in zip(check.posted_fen, day.posted_fen, strict=True)]
        if not day.balanced:
            check.unbalanced.append(f"{day.fixmedins_code} {day.day}: {day.result or 'no answer'}"
                                    f" after {day.attempts} 3201")
        elif day.attempts == 1:
            check.balanced_at_once += 1
        elif day.posted:
            check.balanced_after_posting += 1
        else:
            check.balanced_after_waiting += 1
    return check


@dataclass
class ReconciliationCheck:
    """The closing 3201/3202 of every hospital and 3203 of every agency: answered, balanced
    (平) or accepted (受理), and as the oracle answers them."""

    sent: int = 0
    balanced: int = 0
    equal_to_oracle: int = 0
    problems: list[str] = field(default_factory=list)
    #: why none was sent: the cluster could not be reached once the visits had timed out
    not_sent: str = ""

    @property
    def ok(self) -> bool:
        return self.equal_to_oracle == self.sent == self.balanced and not self.problems


def check_reconciliation(ex: Execution, oracle: Oracle) -> ReconciliationCheck:
    if ex.cluster_gone:
        why = f"the cluster could not be reached once the visits timed out ({ex.cluster_gone})"
        return ReconciliationCheck(problems=[f"not sent: {why}"], not_sent=why)
    check = ReconciliationCheck()
    for key, req in closing_requests(ex.result.books):
        check.sent += 1
        got = distinct(ex.reconciliation.get(req["msgid"], []))
        want = oracle.submit(key, req)
        expected = [want] if want is not None else []  # None: the oracle dead-letters it
        if got == expected:
            check.equal_to_oracle += 1
        elif len(check.problems) < 10:
            check.problems.append(f"{req['infno']} of {req['fixmedins_code']}: "
                                  f"{answer_diff(got, expected)}")
        out = want["output"] if want and want["infcode"] == 0 else {}
        if out.get("stmt_rslt") == "0" or out.get("appy_stas") == "1" or (
                req["infno"] == Infno.RECONCILE_DETAILS and out and
                not out["missing_at_hospital"] and not out["missing_on_platform"]):
            check.balanced += 1
        elif len(check.problems) < 10:
            check.problems.append(f"{req['infno']} of {req['fixmedins_code']} does not balance:"
                                  f" {out or want}")
    return check


@dataclass(frozen=True, slots=True)
class Accounting:
    """sent = answered OK + answered with an error + dead-lettered + unaccounted; answers that
    came back more often than their request was sent (redelivery after a rebalance or a crash)
    are counted apart, in `redelivered`."""

    sent: int
    answered_ok: int
    answered_error: int
    dead_lettered: int
    redelivered: int = 0
    #: dead letters of messages these hospitals did not send (`ours`), outside the sum, and
    #: of them the platform's failures (E9001/E9002 on its own messages: a money event, a
    #: document's registration), which fail a run or replay on any platform
    foreign_dead_letters: int = 0
    foreign_failures: int = 0

    @property
    def unaccounted(self) -> int:
        return self.sent - self.answered_ok - self.answered_error - self.dead_lettered


#: What a role that fails on a message dead-letters it with (and answers, on its way in).
ROLE_FAILURES = frozenset({ErrorCode.INTERNAL_ERROR.value, ErrorCode.TOO_LARGE.value})


def account(result: HospitalRunResult, bad: list[BadMessage]) -> Accounting:
    ok = error = extra = 0
    sends = [(e.sends, e.answers) for e in result.exchanges.values()]
    sends += [(1, answers) for answers in result.bad_answers.values()]
    if result.daily is not None:  # each daily 3201/3202 is sent once and answered once
        sends += [(1, [a]) for _, a in result.daily.answered]
        sends += [(1, [])] * (result.daily.sent - len(result.daily.answered))
    for n, answers in sends:
        kept = answers[:n]
        extra += len(answers) - len(kept)
        n_ok = sum(1 for a in kept if a.get("infcode") == 0)
        ok, error = ok + n_ok, error + len(kept) - n_ok
    mine = ours(result, bad)
    letters = distinct_dead_letters(result, bad)
    repeats = len(result.dead_letters) - len(letters)
    foreign = [d for d in letters if not mine(d)]
    letters = [d for d in letters if mine(d)]
    # a request a role failed on (E9001/E9002) on its way in is answered with the error and
    # dead-lettered too (streams/role.py, `failed`): counted once, as answered
    answered = {m for m, e in result.exchanges.items() if e.answers} | \
        {m for m, a in result.bad_answers.items() if a} | \
        ({a.get("inf_refmsgid") for _, a in result.daily.answered} if result.daily else set())
    letters = [d for d in letters if not (
        d.entry.msgid in answered and d.error_code in ROLE_FAILURES
        and d.entry.source_topic in REQUESTS_INWARD)]
    daily = result.daily.sent if result.daily is not None else 0
    return Accounting(sent=result.sent + daily + len(bad), answered_ok=ok, answered_error=error,
                      dead_lettered=len(letters), redelivered=extra + repeats,
                      foreign_dead_letters=len(foreign),
                      foreign_failures=sum(d.error_code in ROLE_FAILURES for d in foreign))


def replay_passed(acc: Accounting, timed_out: bool, bad_ok: bool, own_platform: bool) -> bool:
    """Every request answered or dead-lettered, none timed out, the bad requests as
    expected, and no failure of the platform's; another producer's dead letters only fail
    a replay on its own platform, where there is none."""
    return (acc.unaccounted == 0 and not timed_out and bad_ok and not acc.foreign_failures
            and not (own_platform and acc.foreign_dead_letters))


def distinct_dead_letters(result: HospitalRunResult, bad: list[BadMessage]
                          ) -> list[DeadLetterRecord]:
    """The dead letters less the repeats of a bad request sent on purpose: a redelivery
    (after a worker's crash) dead-letters the same bytes again, which is not another
    message lost. Any other dead letter is kept, repeats included: none should exist."""
    left = Counter(b.value for b in bad if b.expect == "dead-letter")
    kept = []
    for letter in result.dead_letters:
        if letter.value in left:
            if left[letter.value] == 0:
                continue
            left[letter.value] -= 1
        kept.append(letter)
    return kept


@dataclass
class RunReport:
    options: RunOptions
    bad: list[BadMessage]
    result: HospitalRunResult
    comparison: Comparison
    clearing_ok: bool  # the streamed clearing statements equal the oracle's
    clearing_months: int
    reconciliation: ReconciliationCheck
    daily_reconciliation: DailyReconciliationCheck
    ehr_audit_events: int | None  # counted by the platform's repositories (None: not ours,
    # or a worker did not answer)
    ehr_audit_events_expected: int
    #: of `ehr_audit_events`, the operator's reads through the FHIR views (curl during a
    #: run): audited like any access, but not the hospitals' and so not the oracle's
    ehr_operator_audit_events: int
    bad_requests: BadRequestCheck
    accounting: Accounting
    out_dir: Path
    bootstrap: str
    worker_kills: int
    setup_s: float
    sign_in_s: float
    total_s: float
    trail: Trail | None = None  # where the unanswered requests went, if any were

    @property
    def ok(self) -> bool:
        return (self.comparison.ok and self.bad_requests.ok and not self.result.timed_out
                and self.accounting.unaccounted == 0 and self.clearing_ok
                and not self.accounting.foreign_dead_letters  # the platform's own messages
                and self.reconciliation.ok and self.daily_reconciliation.ok
                and self.ehr_audit_events is not None
                and self.ehr_audit_events - self.ehr_operator_audit_events
                == self.ehr_audit_events_expected)


def default_out_dir() -> Path:
    return Path("out") / datetime.now().strftime("run-%Y%m%d-%H%M%S")


class TopicsUnfit(Exception):
    """The cluster's topics cannot serve our platform: made earlier with another partition
    count (by `huimin topics`, an earlier run, or a broker that creates topics as asked)."""


def unfit(bootstrap: str, partitions: int, problems: list[str]) -> TopicsUnfit:
    return TopicsUnfit(f"{unfit_topics(bootstrap, partitions, problems)} Give --partitions of "
                       "the count the keyed topics were made with (by `huimin topics` or an "
                       "earlier run), or use a fresh cluster")


class PlatformNotServing(TimeoutError):
    """Our workers did not settle into one consumer group in time (their logs say why)."""


#: Written into each worker's data folder a new platform makes, so that a later one started in
#: the same folder empties only what huimin made there.
WORKER_DATA_MARK = ".huimin-worker-data"


def check_data_dir(data_dir: Path) -> None:
    """Refuse (FileExistsError) a `data_dir` a new worker may not take over: one huimin did
    not make (neither its mark nor Faust's `v1/` from before the mark), or one a running
    worker holds (another run into the same folder). Checked for every worker a run will
    start before it starts any, so that a `join-worker` fault's is not refused mid-run."""
    if data_dir.is_dir() and (data_dir / LOCK_FILE).is_file():
        with open(data_dir / LOCK_FILE) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FileExistsError(errno.EBUSY, "a running worker keeps its tables there "
                                      "(another run into the same folder?): give another "
                                      "--out", str(data_dir)) from None
    if data_dir.is_symlink() or (data_dir.exists() and not data_dir.is_dir()) or (
            data_dir.is_dir() and any(data_dir.iterdir())
            and not (data_dir / WORKER_DATA_MARK).is_file() and not (data_dir / "v1").is_dir()):
        raise FileExistsError(errno.EEXIST, "there is something there that is not a worker's "
                              "data folder huimin made: move it, or give another --out",
                              str(data_dir))


def fresh_data_dir(data_dir: Path) -> None:
    """Make `data_dir` an empty, marked worker data folder (`check_data_dir` first): what an
    earlier run left there is emptied."""
    check_data_dir(data_dir)
    if data_dir.is_dir():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    (data_dir / WORKER_DATA_MARK).touch()


class Platform:
    """Our platform's worker processes on one cluster (topics created first)."""

    def __init__(self, bootstrap: str, world: WorldSpec, partitions: int, out_dir: Path,
                 idempotent: bool = False, linger_ms: int = LINGER_MS,
                 fetch_wait_ms: int = FETCH_WAIT_MS, store: str = "memory",
                 fresh_tables: bool = True) -> None:
        self.fresh_tables = fresh_tables
        self.cfg = WorkerConfig(bootstrap=bootstrap, partitions=partitions, world=world,
                                idempotent=idempotent, linger_ms=linger_ms,
                                fetch_max_wait_ms=fetch_wait_ms, store=STORES[store])
        self.out_dir = out_dir
        self.workers: list[WorkerProcess] = []
        create_platform_topics(bootstrap, partitions)
        if problems := topic_problems(bootstrap, partitions):
            raise unfit(bootstrap, partitions, problems)

    def add_worker(self) -> WorkerProcess:
        """Start one more worker in the consumer group (its own web port and data folder);
        the partitions are rebalanced across the workers. With `fresh_tables` (a new
        platform: run, replay, bench) a data folder an earlier run left in the same folder is
        emptied first: with `--store rocksdb` the worker would take up that run's tables and
        answer this run's requests as duplicates of its requests (it recovers its tables
        from the changelog topics instead)."""
        i = len(self.workers)
        data_dir = self.out_dir / f"worker-{i}-data"
        if self.fresh_tables:
            fresh_data_dir(data_dir)
        cfg = WorkerConfig(**{**self.cfg.to_dict(), "world": self.cfg.world,
                              "web_port": free_port(), "data_dir": str(data_dir)})
        worker = WorkerProcess(cfg, self.out_dir / f"worker-{i}.log").start()
        self.workers.append(worker)
        (self.out_dir / "workers.json").write_bytes(orjson.dumps([  # for a person
            {"worker": n, "web": f"http://127.0.0.1:{w.cfg.web_port}",
             "metrics": f"http://127.0.0.1:{w.cfg.web_port}/metrics"}
            for n, w in enumerate(self.workers)], option=orjson.OPT_INDENT_2))
        (self.out_dir / "targets.json").write_bytes(orjson.dumps([  # Prometheus file_sd
            {"targets": [f"127.0.0.1:{w.cfg.web_port}"],
             "labels": {"job": "huimin-workers", "worker": str(n)}}
            for n, w in enumerate(self.workers)], option=orjson.OPT_INDENT_2))
        return worker

    def assignments(self) -> list[dict[str, Any] | None]:
        """Each worker's `/assignment/` (None while its web server is not up yet)."""
        out: list[dict[str, Any] | None] = []
        for w in self.workers:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{w.cfg.web_port}/assignment/",
                                            timeout=5) as r:
                    out.append(orjson.loads(r.read()))
            except (OSError, ValueError):
                out.append(None)
        return out

    def wait_until_serving(self, timeout_s: float = 90.0) -> float:
        """Wait until every worker started has joined the consumer group and the group has
        settled: one generation, the partitions of hosp.requests split among the workers, no
        rebalance under way. Otherwise a worker slow to start joins while the visits run — a
        rebalance no one asked for (docs/streams.md). Returns the seconds waited."""
        start = time.monotonic()
        while True:
            seen = self.assignments()
            served = sorted(p for a in seen if a for p in a["partitions"])
            if all(a and not a["rebalancing"] for a in seen) and \
                    len({a["generation"] for a in seen if a}) == 1 and \
                    served == list(range(self.cfg.partitions)):
                return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                logs = ", ".join(str(w.log_path) for w in self.workers)
                raise PlatformNotServing(
                    f"the {len(self.workers)} workers did not settle into one consumer group "
                    f"within {timeout_s:.0f} s (their logs: {logs}): {seen}")
            time.sleep(0.2)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to every worker first, then wait for them (SIGKILL past `timeout`): an
        interrupt while waiting (a second Ctrl-C) kills the rest, rather than leaving a worker
        that never heard it was to stop."""
        for w in self.workers:
            w.terminate()
        deadline = time.monotonic() + timeout
        try:
            for w in self.workers:
                w.wait_or_kill(max(0.0, deadline - time.monotonic()))
        except BaseException:
            for w in self.workers:
                w.kill()
            raise


@contextlib.contextmanager
def platform(bootstrap: str, world: WorldSpec, partitions: int, out_dir: Path,
             workers: int = 1, idempotent: bool = False,
             linger_ms: int = LINGER_MS, fetch_wait_ms: int = FETCH_WAIT_MS,
             store: str = "memory", fresh_tables: bool = True) -> Iterator[Platform]:
    """`workers` platform worker processes running; all stopped on exit. `store`: where they
    keep their tables (`memory` or `rocksdb`); `fresh_tables`: see `Platform.add_worker`."""
    p = Platform(bootstrap, world, partitions, out_dir, idempotent, linger_ms, fetch_wait_ms,
                 store, fresh_tables)
    try:
        for _ in range(workers):
            p.add_worker()
        yield p
    finally:
        p.stop()


@dataclass(frozen=True, slots=True)
class Execution:
    result: HospitalRunResult
    bootstrap: str
    worker_kills: int
    clearing: list[dict[str, Any]] | None  # the national platform's statements, if ours
    ledger: dict[str, Any] | None  # its trial balance, if ours
    ehr_stats: dict[str, int] | None  # the repositories' totals, summed over our workers
    reconciliation: dict[str, list[dict[str, Any]]]  # msgid -> answers to 3201/3202
    setup_s: float
    sign_in_s: float
    trail: Trail | None = None  # where the unanswered requests went, if any were
    #: why the cluster could not be reached after visits timed out (nothing more was asked)
    cluster_gone: str | None = None


def clearing_applications(ex: Execution) -> list[dict[str, Any]]:
    """The answers to the agencies' 3203 clearing applications, by month and province."""
    return sorted((a["output"] for answers in ex.reconciliation.values()
                   for a in answers[:1] if "appy_stas" in (a.get("output") or {})),
                  key=lambda o: (o["clr_ym"], o["clr_optins"]))


def write_money_views(ex: Execution, path_for: Callable[[str], Path],
                      ours: bool = False) -> list[Path]:
    """clearing.json and ledger.json (as the national platform served them) and
    applications.json (the 3203 answers): the paths written. On a platform that is `ours`,
    a view it did not serve is written as null, as the run's report names the file; on
    someone else's there are none to write."""
    views = {"clearing": ex.clearing, "ledger": ex.ledger,
             "applications": clearing_applications(ex)}
    written = []
    for name, view in views.items():
        if view is not None or ours:
            path_for(name).write_bytes(orjson.dumps(view, option=orjson.OPT_INDENT_2))
            written.append(path_for(name))
    return written


class UsedCluster(Exception):
    """Our platform would start on a cluster an earlier run used: its workers would meet that
    run's persons and answers (in the changelogs and the consumer group's offsets)."""


def check_fresh(bootstrap: str, client_config: dict | None = None,
                partitions: int | None = None) -> None:
    """A cluster our platform may start on: none of an earlier run's requests, then (given
    `partitions`) none of its topics made with another count, refused before anything is
    written (topics missing are made later)."""
    held = records_in(bootstrap, HOSP_REQUESTS, client_config)
    if held:
        raise UsedCluster(
            f"the cluster at {bootstrap} already holds {held:,} hospital requests of an "
            "earlier run, and our platform needs a fresh one: use a new cluster, or delete "
            "the topics of docs/wire.md, the huimin-*-changelog topics and the consumer group "
            "huimin (or, to drive a platform already running there, `huimin replay "
            "--bootstrap`)")
    if partitions is not None and (problems := [
            p for p in topic_problems(bootstrap, partitions, client_config, wait_s=0)
            if not p.startswith("missing:")]):
        raise unfit(bootstrap, partitions, problems)


def execute(world: World, visits: list[Visit], arrivals: list[float], bad: list[BadMessage],
            out_dir: Path, *, bootstrap: str | None = None, partitions: int = 8,
            answer_timeout_s: float = 30.0, client_config: dict | None = None,
            on_stage: Callable[[str], None] = lambda s: None,
            on_progress: OnProgress | None = None,
            kill_worker: int = 0, join_worker: int = 0, workers: int = 1,
            broker_kind: str = "tansu", store: str = "memory",
            expected_clearing: list[dict[str, Any]] | None = None,
            idempotent: bool = False, interrupt: GentleInterrupt | None = None,
            on_visits_over: Callable[[HospitalRunResult], None] = lambda r: None) -> Execution:
    """Let the hospitals carry out `visits` against a platform: the one at `bootstrap`, if
    given (already running, as an integration tester's deployment is), else our own platform on the
    embedded broker (or on KAFKA_BOOTSTRAP_SERVERS), started here and stopped afterwards.
    `idempotent`: the hospitals' producers are, on a cluster that offers it (our own Apache
    Kafka always is). `on_visits_over` gets the visits' result as soon as they end, before
    the clearing and the period's reconciliation, and before the platform stops: what it
    writes is safe from a Ctrl-C after that. `interrupt`: a Ctrl-C while the visits run, or
    in `on_visits_over`, ends them there, and the platform is stopped without the clearing
    and the period's reconciliation."""
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        events: list[tuple[float, Callable[[], object]]] = []
        ours: Platform | None = None
        if bootstrap is None:
            for i in range(workers + join_worker):
                check_data_dir(out_dir / f"worker-{i}-data")
            on_stage(f"starting the platform on {os.environ[BOOTSTRAP_ENV]}"
                     if os.environ.get(BOOTSTRAP_ENV) else "starting the broker and the platform")
            bootstrap = stack.enter_context(broker(out_dir / "broker.log", broker_kind))
            ours = stack.enter_context(platform(bootstrap, world.spec, partitions, out_dir,
                                                workers, idempotent=broker_kind == "kafka",
                                                fetch_wait_ms=fetch_wait_for(broker_kind),
                                                store=store))
            period = arrivals[-1] if arrivals else 0.0
            events += [(period * (i + 1) / (kill_worker + 1), ours.workers[0].restart_after_kill)
                       for i in range(kill_worker)]
            events += [(period * (i + 1) / (join_worker + 2), ours.add_worker)
                       for i in range(join_worker)]
        on_kafka = broker_kind == "kafka" and ours is not None
        fleet = HospitalFleet(bootstrap, answer_timeout_s, client_config,
                              idempotent=on_kafka or idempotent,
                              fetch_wait_ms=fetch_wait_for("kafka" if on_kafka else "tansu"))
        # unwinding from an interrupt (a third Ctrl-C), what the producer holds is given up
        stack.push(lambda kind, *_: fleet.close(
            0.0 if kind is not None and issubclass(kind, KeyboardInterrupt) else 5.0))
        setup_s = time.monotonic() - started
        on_stage("waiting for the platform to answer the hospitals' sign-in and for every "
                 "worker to join")
        sign_in_s = fleet.sign_in(world.ref.hospitals.values(),
                                  visits[0].begntime if visits else "2026-01-01 00:00:00",
                                  world=world_tag(world.spec))
        if ours is not None:
            sign_in_s += ours.wait_until_serving()
        on_stage(f"{len(visits):,} visits")
        stop = interrupt or GentleInterrupt()  # one not entered is never requested
        with stop.armed():
            result = fleet.run(visits, arrivals, bad, on_progress, events=events,
                               stop_requested=stop.was_requested)
            if result.interrupted:
                on_stage(f"stopped by {stop.stopper}: writing the answers received")
            on_visits_over(result)
        result.interrupted = result.interrupted or stop.requested  # while they were written
        trail = None
        # visits given up on a cluster that refuses connections (killed, or its address
        # gone): following the requests and closing the period would each wait on it in vain
        gone = cluster_gone(bootstrap) if result.timed_out and not result.interrupted else None
        if gone:
            on_stage(f"the cluster at {bootstrap} cannot be reached ({gone}): the unanswered "
                     "requests are not followed and the period is not closed")
        elif result.timed_out and not result.interrupted:
            on_stage("following the unanswered requests through the cluster's topics")
            trail = unanswered_trail(bootstrap, result.timed_out, client_config)
        statements = ledger = ehr_stats = None
        recon: dict[str, list[dict[str, Any]]] = {}
        if not result.interrupted and not gone:
            if ours is not None:
                on_stage("reading the national clearing statements and ledger")
                statements = clearing_statements(ours, expected_clearing)
                ledger = national_view(ours, "/ledger/", wait_s=15.0)
                ehr_stats = summed_view(ours, "/ehr/stats/")
            on_stage("the hospitals reconcile the period (3201/3202), the agencies apply for "
                     "clearing (3203)")
            recon = fleet.exchange(closing_requests(result.books))
            result.period_closed = True
        on_stage("stopping")
    return Execution(result, bootstrap, kill_worker if events else 0, statements, ledger,
                     ehr_stats, recon, setup_s, sign_in_s, trail, gone or None)


def cluster_gone(bootstrap: str, tries: int = 3, apart_s: float = 1.0) -> str | None:
    """Why the cluster cannot be reached, if it refused `tries` attempts `apart_s` apart:
    one refused connection may be a broker restarting."""
    for attempt in range(tries):
        if attempt:
            time.sleep(apart_s)
        if not (why := unreachable(bootstrap)):
            return None
    return why


#: How many unanswered requests a run follows through the cluster's topics (the first ones).
TRAILS_FOLLOWED = 20


def unanswered_trail(bootstrap: str, msgids: list[str],
                     client_config: dict[str, Any] | None = None) -> Trail:
    """Where the first unanswered requests went (streams/trail.py). A cluster that cannot be
    read gives a trail that says why: the run's report is not given up for it."""
    try:
        return follow_trail(bootstrap, msgids[:TRAILS_FOLLOWED], client_config=client_config)
    except (KafkaError, OSError, TopicMissing) as exc:
        return Trail({}, complete=False, problem=f"{type(exc).__name__}: {exc}")


def summed_view(ours: Platform, path: str, attempts: int = 3) -> dict[str, int] | None:
    """GET `path` (JSON totals) from every worker, summed: each holds its partitions. None
    if a worker does not answer."""
    totals: dict[str, int] = {}
    for worker in ours.workers:
        for attempt in range(attempts):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{worker.cfg.web_port}{path}",
                                            timeout=10) as r:
                    body = orjson.loads(r.read())
                break
            except (OSError, ValueError):
                if attempt == attempts - 1:
                    return None
                time.sleep(1.0)
        for k, v in body.items():
            totals[k] = totals.get(k, 0) + v
    return totals


def national_view(ours: Platform, path: str, wait_s: float = 0.0) -> Any:
    """GET `path` (JSON) from the worker that holds the national clearing table, the only
    one that serves it; None if none does (a rebalance under way) within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        for worker in ours.workers:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{worker.cfg.web_port}{path}",
                                            timeout=5) as r:
                    return orjson.loads(r.read())
            except (OSError, ValueError):  # another worker's 503, or one not answering
                continue
        if time.monotonic() >= deadline:
            return None
        time.sleep(1.0)


def clearing_statements(ours: Platform, expected: list[dict[str, Any]] | None,
                        timeout_s: float = 15.0) -> list[dict[str, Any]] | None:
    """GET /clearing/ from our workers until the statements settle (or equal `expected`):
    the money events trail the hospitals' last answers by a few hops."""
    deadline = time.monotonic() + timeout_s
    last: list[dict[str, Any]] | None = None
    while time.monotonic() < deadline:
        body = national_view(ours, "/clearing/")
        seen = body["statements"] if body and body["events"] else None
        if seen is not None and seen in (expected, last):
            return seen
        last = seen
        time.sleep(1.0)
    return last


def patients_of(visits: list[Visit]) -> set[tuple[str, str]]:
    """Each hospital's patients in the visits (fixmedins_code, certno): whom no bad request
    of that hospital's names (simulators/bad_messages.py)."""
    return {(v.fixmedins_code, v.certno) for v in visits}


def visit_period(visits: list[Visit]) -> tuple[str, str] | None:
    """The simulated times of the first and last visits: what bad requests are dated within."""
    return (visits[0].begntime, visits[-1].begntime) if visits else None


def arrivals_at_rate(n: int, rate: float) -> list[float]:
    """Open-loop arrivals: visit k at k / rate seconds."""
    return [k / rate for k in range(n)]


def arrivals_at_speed(visits: list[Visit], speed: float) -> list[float]:
    """Arrivals following the recorded visit times, `speed` times faster than simulated time."""
    if not visits:
        return []
    t0 = datetime.strptime(visits[0].begntime, TIME_FORMAT)
    return [(datetime.strptime(v.begntime, TIME_FORMAT) - t0).total_seconds() / speed
            for v in visits]


def run_scenario(opts: RunOptions, on_stage: Callable[[str], None] = lambda s: None,
                 on_progress: OnProgress | None = None) -> RunReport:
    started = time.monotonic()
    if os.environ.get(BOOTSTRAP_ENV):  # before anything is built or written
        on_stage(f"checking the cluster at {os.environ[BOOTSTRAP_ENV]}")
        check_fresh(os.environ[BOOTSTRAP_ENV], partitions=opts.partitions)
    out_dir = opts.out_dir or default_out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    on_stage("building the world and the visits")
    world = build_world(opts.world)
    visits = list(opts.faults.apply(generate_visits(world, opts.visits), opts.world.seed))
    gc.freeze()  # the world and the visits live as long as the run: no need to scan them
    bad = generate_bad_messages(world, opts.faults.bad_per_kind(
        sum(len(v.steps) for v in visits), opts.bad_per_kind), visit_period(visits),
        patients_of(visits))
    on_stage("settling the visit log with the oracle")
    oracle_of_expected = Oracle(world.ref)
    expected = list(oracle_of_expected.settle_log(visits))
    with whole_file(out_dir / "visits.jsonl") as f:  # so `huimin verify` can check this run
        write_header(f, LogHeader(opts.world, opts.visits, str(opts.faults.in_plans()),
                                  len(bad) // len(KINDS)))
        for v in visits:
            write_visit(f, v)
    write_records(expected_path_for(out_dir / "visits.jsonl"), expected, expected=True)
    expected_clearing = [s.as_dict() for s in clear(
        (e for session in expected for e in events_from_answers(
            session.visit.fixmedins_code,
            [(m, i, session.answers.get(m, [])) for m, i in session.sent])),
        clearing_policy(opts.world))]
    ex = execute(world, visits, arrivals_at_rate(len(visits), opts.rate), bad, out_dir,
                 partitions=opts.partitions, answer_timeout_s=opts.answer_timeout_s,
                 on_stage=on_stage, on_progress=on_progress,
                 kill_worker=opts.faults.kill_worker, join_worker=opts.faults.join_worker,
                 workers=opts.workers, broker_kind=opts.broker, store=opts.store,
                 expected_clearing=expected_clearing)
    write_money_views(ex, lambda name: out_dir / f"{name}.json", ours=True)
    redelivery = opts.faults.kill_worker > 0 or opts.faults.join_worker > 0 or opts.workers > 1
    comparison = compare(ex.result.sessions, expected, redelivery)
    clearing_ok = ex.clearing == expected_clearing
    recon = check_reconciliation(ex, oracle_of_expected)
    return RunReport(opts, bad, ex.result, comparison, clearing_ok, len(expected_clearing), recon,
                     check_daily_reconciliation(ex.result, expected),
                     ex.ehr_stats["audit_events"] if ex.ehr_stats else None,
                     sum(oracle_of_expected.ehr.record(c).audited
                         for c in oracle_of_expected.ehr.records),
                     ex.ehr_stats.get("operator_accesses_audited", 0) if ex.ehr_stats else 0,
                     check_bad_requests(ex.result, bad, redelivery),
                     account(ex.result, bad), out_dir, ex.bootstrap, ex.worker_kills,
                     ex.setup_s, ex.sign_in_s,
                     time.monotonic() - started, ex.trail)
