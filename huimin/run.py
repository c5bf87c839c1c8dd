"""A run's execution, for `huimin run`, `replay` and the tests: build a world, start the broker
and the platform (huimin/local_platform.py), let the hospitals carry out the visits over
Kafka, and judge what came back (huimin/run_checks.py)."""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from kafka.errors import KafkaError

from huimin.local_platform import (
    SERVING_TIMEOUT_S,
    Platform,
    check_data_dir,
    check_fresh,
    clearing_statements,
    national_view,
    platform,
    summed_view,
)
from huimin.logfiles import (
    LogHeader,
    expected_path_for,
    whole_file,
    write_header,
    write_records,
    write_visit,
)
from huimin.run_checks import (
    Accounting,
    BadRequestCheck,
    Comparison,
    DailyReconciliationCheck,
    ReconciliationCheck,
    account,
    check_bad_requests,
    check_daily_reconciliation,
    check_reconciliation,
    compare,
    to_post,
)
from messages.visitlog import TIME_FORMAT, Visit
from settlement.clearing import clear
from settlement.ledger import events_from_answers
from settlement.oracle import Oracle
from simulators.bad_messages import KINDS, BadMessage, generate_bad_messages
from simulators.cluster_watch import STOP_AFTER_UNREACHABLE_S, ClusterWatch
from simulators.faults import FaultPlan
from simulators.hospital import SIGN_IN_TIMEOUT_S, HospitalFleet
from simulators.interrupt import GentleInterrupt, is_the_stop, terminated
from simulators.reconciliation import closing_requests
from simulators.visit_run import HospitalRunResult, LateAnswer, OnProgress, Sink
from simulators.visits import VisitSpec, generate_visits
from simulators.world import (
    World,
    WorldSpec,
    build_world,
    clearing_policy,
    world_tag,
    worlds_build_s,
)
from streams.broker import BOOTSTRAP_ENV, broker, unreachable
from streams.config import fetch_wait_for
from streams.dead_letters import TopicMissing
from streams.trail import Trail, follow_trail


@dataclass(frozen=True, slots=True)
class RunOptions:
    world: WorldSpec = field(default_factory=WorldSpec)
    visits: VisitSpec = field(default_factory=VisitSpec)
    rate: float = 50.0  # visit arrivals per second (open loop)
    bad_per_kind: int = 2  # bad requests of each kind mixed in
    partitions: int = 8
    answer_timeout_s: float = 30.0
    #: the visits stop once the cluster has refused every connection this long in silence
    stop_after_unreachable_s: float = STOP_AFTER_UNREACHABLE_S
    out_dir: Path | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)
    broker: str = "tansu"  # the local broker, when KAFKA_BOOTSTRAP_SERVERS names none
    workers: int = 1  # platform workers in the consumer group from the start
    store: str = "memory"  # where the workers keep their tables (streams/config.py STORES)


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
    #: bad requests of each kind, as the run's visits.jsonl header says them (the option's,
    #: and those the `malformed` fault adds): what a replay of that log says too
    bad_per_kind: int = 0

    @property
    def ok(self) -> bool:
        return (self.comparison.ok and self.bad_requests.ok and not self.result.timed_out
                and not self.result.interrupted  # the visits stopped on a cluster lost
                and self.accounting.unaccounted == 0 and self.clearing_ok
                and not self.accounting.foreign_dead_letters  # the platform's own messages
                and self.reconciliation.ok and self.daily_reconciliation.ok
                and self.ehr_audit_events is not None
                and self.ehr_audit_events - self.ehr_operator_audit_events
                == self.ehr_audit_events_expected)


def default_out_dir() -> Path:
    return Path("out") / datetime.now().strftime("run-%Y%m%d-%H%M%S")


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


def check_workers_data(out_dir: Path, workers: int) -> None:
    """Refuse (FileExistsError) an `out_dir` where the workers a run will start could not keep
    their tables (local_platform.check_data_dir), before the run writes anything there."""
    for i in range(workers):
        check_data_dir(out_dir / f"worker-{i}-data")


UNSENT_WAIT_S = 5.0


def unsent_wait_s(exc: BaseException | None, cluster_lost: bool) -> float:
    """How long the hospitals' producer may go on sending what it holds as a run unwinds.
    Unwinding from a stop (a third Ctrl-C, or one in `huimin run`, a SIGTERM, whatever error
    either surfaced as) or from a cluster lost, it is given up at once: the user asked to
    stop, or nothing would take it."""
    stopped = exc is not None and (is_the_stop(exc) or terminated())
    return 0.0 if stopped or cluster_lost else UNSENT_WAIT_S


def execute(world: World, visits: Iterable[Visit], arrivals: list[float], bad: list[BadMessage],
            out_dir: Path, *, bootstrap: str | None = None, partitions: int = 8,
            answer_timeout_s: float = 30.0, client_config: dict | None = None,
            on_stage: Callable[[str], None] = lambda s: None,
            on_progress: OnProgress | None = None,
            kill_worker: int = 0, join_worker: int = 0, workers: int = 1,
            broker_kind: str = "tansu", store: str = "memory",
            expected_clearing: list[dict[str, Any]] | None = None,
            idempotent: bool = False, interrupt: GentleInterrupt | None = None,
            on_visits_over: Callable[[HospitalRunResult], None] = lambda r: None,
            on_period_over: Callable[[Execution], None] = lambda ex: None,
            stop_after_unreachable_s: float = STOP_AFTER_UNREACHABLE_S,
            sink: Sink | None = None, linger_s: float = 0.0,
            late: LateAnswer | None = None) -> Execution:
    """Let the hospitals carry out `visits` against a platform: the one at `bootstrap`, if
    given (already running, as an integration tester's deployment is), else our own platform on the
    embedded broker (or on KAFKA_BOOTSTRAP_SERVERS), started here and stopped afterwards.
    `idempotent`: the hospitals' producers are, on a cluster that offers it (our own Apache
    Kafka always is). `on_visits_over` gets the visits' result as soon as they end, before
    the clearing and the period's reconciliation, and before the platform stops: what it
    writes is safe from a Ctrl-C after that. `interrupt`: a Ctrl-C while the visits run, or
    in `on_visits_over`, ends them there, and the platform is stopped without the clearing
    and the period's reconciliation. So does a cluster that has refused every connection
    for `stop_after_unreachable_s` while the visits waited in silence (0: never; each visit
    then waits out its answer time-out), the result saying why (`cluster_lost`).
    `on_period_over` gets what `execute` returns before the platform stops: a Ctrl-C or a
    SIGTERM in that stop raises past the return, and the closed period would be lost (a
    review found a replay so stopped had written no clearing statements).
    `visits`, one for each of the `arrivals`, may be read as they arrive; `sink`, `linger_s`
    and `late` are `HospitalFleet.run`'s."""
    started = time.monotonic()
    upcoming = iter(visits)
    first = next(upcoming, None)
    with contextlib.ExitStack() as stack:
        events: list[tuple[float, Callable[[], object]]] = []
        ours: Platform | None = None
        if bootstrap is None:
            check_workers_data(out_dir, workers + join_worker)
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
        result: HospitalRunResult | None = None

        def close_fleet(_kind: object, exc: BaseException | None, *_: object) -> None:
            fleet.close(unsent_wait_s(exc, result is not None and result.cluster_lost is not None))

        stack.push(close_fleet)
        setup_s = time.monotonic() - started
        on_stage("waiting for the platform to answer the hospitals' sign-in and for every "
                 "worker to join")
        building_s = 0.0 if ours is None else worlds_build_s(  # the workers we started
            world.spec.persons, len(ours.workers), os.cpu_count() or 1)
        sign_in_s = fleet.sign_in(world.ref.hospitals.values(),
                                  first.begntime if first else "2026-01-01 00:00:00",
                                  timeout_s=SIGN_IN_TIMEOUT_S + building_s,
                                  world=world_tag(world.spec),
                                  gone=ours.gone if ours is not None else lambda: None)
        if ours is not None:
            sign_in_s += ours.wait_until_serving(SERVING_TIMEOUT_S + building_s)
        on_stage(f"{len(arrivals):,} visits")
        stop = interrupt or GentleInterrupt()  # one not entered is never requested
        with stop.armed():
            result = fleet.run(itertools.chain([first] if first else [], upcoming), arrivals,
                               bad, on_progress, events=events, sink=sink, linger_s=linger_s,
                               late=late,
                               stop_requested=stop.was_requested,
                               watch=ClusterWatch(bootstrap, stop_after_unreachable_s))
            if result.cluster_lost:
                on_stage("the visits stopped, the cluster lost; writing the answers received "
                         "(the period is not closed)")
            elif result.interrupted:
                on_stage(f"stopped by {stop.stopper}: writing the answers received")
            on_visits_over(result)
        result.interrupted = result.interrupted or stop.requested  # while they were written
        trail = None
        # visits given up on a cluster that refuses connections (killed, or its address
        # gone): following the requests and closing the period would each wait on it in vain
        gone = result.cluster_lost or (cluster_gone(bootstrap) if result.timed_out
                                       and not result.interrupted else None)
        if gone and not result.cluster_lost:  # that was said as the visits stopped
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
        done = Execution(result, bootstrap, kill_worker if events else 0, statements, ledger,
                         ehr_stats, recon, setup_s, sign_in_s, trail, gone or None)
        on_period_over(done)
        on_stage("stopping")
    return done


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


def arrivals_at_speed(offsets_s: list[float], speed: float) -> list[float]:
    """Arrivals following the recorded visit times (`VisitsAhead.offsets_s`), `speed` times
    faster than simulated time."""
    return [t / speed for t in offsets_s]


@dataclass
class VisitsAhead:
    """What a replay needs of its log's visits before the first is sent, read in one pass,
    so that the visits themselves can be read again as they arrive: a long log is never held
    in memory."""

    count: int = 0
    period: tuple[str, str] | None = None  # as `visit_period` gives it
    patients: set[tuple[str, str]] = field(default_factory=set)  # as `patients_of` does
    #: with `times`: the seconds of simulated time from the first visit to each
    offsets_s: list[float] = field(default_factory=list)


def look_ahead(visits: Iterable[Visit], times: bool = False) -> VisitsAhead:
    ahead, first, t0 = VisitsAhead(), None, None
    for v in visits:
        ahead.count += 1
        ahead.patients.add((v.fixmedins_code, v.certno))
        first = first or v.begntime
        ahead.period = (first, v.begntime)
        if times:
            t = datetime.strptime(v.begntime, TIME_FORMAT)
            t0 = t0 or t
            ahead.offsets_s.append((t - t0).total_seconds())
    return ahead


def run_scenario(opts: RunOptions, on_stage: Callable[[str], None] = lambda s: None,
                 on_progress: OnProgress | None = None) -> RunReport:
    started = time.monotonic()
    if os.environ.get(BOOTSTRAP_ENV):  # before anything is built or written
        on_stage(f"checking the cluster at {os.environ[BOOTSTRAP_ENV]}")
        check_fresh(os.environ[BOOTSTRAP_ENV], partitions=opts.partitions)
    out_dir = opts.out_dir or default_out_dir()
    check_workers_data(out_dir, opts.workers + opts.faults.join_worker)  # before any is written
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
    write_records(expected_path_for(out_dir / "visits.jsonl"), expected, world_tag(opts.world),
                  expected=True)
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
                 expected_clearing=expected_clearing,
                 stop_after_unreachable_s=opts.stop_after_unreachable_s)
    write_money_views(ex, lambda name: out_dir / f"{name}.json", ours=True)
    redelivery = opts.faults.kill_worker > 0 or opts.faults.join_worker > 0 or opts.workers > 1
    # all the visits and bad requests, unless the visits stopped early (a cluster lost): then
    # what was sent and received, the summary saying why
    stopped = ex.result.interrupted
    comparison = compare(ex.result.sessions, expected, redelivery, stopped)
    clearing_ok = ex.clearing == expected_clearing
    recon = check_reconciliation(ex, oracle_of_expected)
    sent_bad = bad[:ex.result.bad_sent] if stopped else bad
    return RunReport(opts, sent_bad, ex.result, comparison, clearing_ok, len(expected_clearing),
                     recon, check_daily_reconciliation(ex.result, to_post(ex.result, expected)),
                     ex.ehr_stats["audit_events"] if ex.ehr_stats else None,
                     sum(oracle_of_expected.ehr.record(c).audited
                         for c in oracle_of_expected.ehr.records),
                     ex.ehr_stats.get("operator_accesses_audited", 0) if ex.ehr_stats else 0,
                     check_bad_requests(ex.result, bad, redelivery),
                     account(ex.result, sent_bad), out_dir, ex.bootstrap, ex.worker_kills,
                     ex.setup_s, ex.sign_in_s,
                     time.monotonic() - started, ex.trail, len(bad) // len(KINDS))
