"""A replay hands each visit on as it ends (huimin/replay_results.py) instead of keeping them
all: its results file, accounting and summary must be what they were when it kept every
visit, and an answer given again soon after a visit ended (redelivery) must still find it."""

from __future__ import annotations

import io
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from huimin import cli
from huimin.logfiles import read_visit_log, record_line
from huimin.replay_results import ReplayRecorder
from huimin.report import SettledMoney, settled_in_ms
from huimin.run import Execution, arrivals_at_rate
from huimin.run_checks import RequestTally, account
from messages.visitlog import Visit, VisitSession
from simulators.reconciliation import DailyReconciler, settlements_to_post
from simulators.visit_run import Exchange, HospitalRunResult
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from tests.fleets import OracleFleet

WORLD = build_world(WorldSpec(seed=11, persons=400))
VISITS = list(generate_visits(WORLD, VisitSpec(visits=60, days=2)))
TAG = "world of the test"


class RedeliveringFleet(OracleFleet):
    """Keeps every answer it delivers, to deliver them all again (`redeliver`): a worker
    restarted after its answers went out and before its offsets were committed."""

    def __init__(self) -> None:
        super().__init__(WORLD, answer_timeout_s=600.0)
        self.given: list[dict[str, Any]] = []

    def _poll(self, timeout_ms: int, worlds: set[str] | None = None) -> list[dict[str, Any]]:
        out = super()._poll(timeout_ms, worlds)
        self.given += out
        return out

    def redeliver(self) -> None:
        self.held += self.given


def money_of(results: bytes) -> dict[str, Any]:
    """What the settlements in a results file paid, as a summary says it."""
    paid = SettledMoney()
    for line in results.splitlines():
        paid.add(orjson.loads(line)["setlinfo"])
    return paid.to_summary()


def test_a_replay_written_as_its_visits_end_gives_the_file_and_counts_of_one_that_kept_them():
    kept = OracleFleet(WORLD, answer_timeout_s=600.0).run(
        VISITS, arrivals_at_rate(len(VISITS), 2_000.0), drain_s=5.0)
    assert all(s.done for s in kept.sessions) and len(kept.sessions) == len(VISITS)

    results, latencies = io.BytesIO(), io.BytesIO()
    recorder = ReplayRecorder(results, latencies, TAG)
    handed: list[int] = []

    def sink(session: VisitSession, exchanges: list[Exchange]) -> None:
        handed.append(session.arrival)
        recorder(session, exchanges)

    streamed = OracleFleet(WORLD, answer_timeout_s=600.0).run(
        VISITS, arrivals_at_rate(len(VISITS), 2_000.0), drain_s=5.0, sink=sink)
    recorder.finish()
    assert not streamed.sessions and not streamed.exchanges  # nothing kept
    assert handed != sorted(handed)  # visits ended out of their order: the file is not
    assert results.getvalue() == b"".join(record_line(s, TAG) for s in kept.sessions)
    assert len(latencies.getvalue().splitlines()) == len(kept.exchanges)
    assert account(streamed, [], recorder.requests) == account(kept, [])
    assert sorted(recorder.settlements_ms) != [] and len(recorder.settlements_ms) == sum(
        settled_in_ms(ex) is not None for ex in kept.exchanges.values())
    assert recorder.to_post == recorder.to_post_of_ended == settlements_to_post(kept.sessions)
    assert (recorder.arrived, recorder.over) == (len(VISITS), len(VISITS))
    # the money its summary.json says: its results file's, a run's of the same visits
    assert recorder.paid.to_summary() == money_of(results.getvalue())
    assert sum(recorder.paid.routes.values()) > 0 and recorder.paid.money["hifp_pay"] > 0


@pytest.mark.parametrize("linger_s", [0.0, 600.0], ids=["handed-on-at-once", "lingering"])
def test_an_answer_given_again_while_its_visit_lingers_is_counted_as_redelivered(
        linger_s: float) -> None:
    """Every answer delivered twice once every visit ended: within the linger each finds its
    request (given again, counted apart and written with its visit); once the visit was
    handed on, it is an answer the hospitals did not expect."""
    fleet, tally = RedeliveringFleet(), RequestTally()
    finished = [0]
    phase = ["visits"]

    def stop_requested() -> bool:
        if phase[0] == "visits" and finished[0] == len(VISITS) and not fleet.held:
            fleet.redeliver()
            phase[0] = "again"
            return False
        return phase[0] == "again" and not fleet.held

    def progress(done: int, dropped: int) -> None:
        finished[0] += done

    def tallied(session: VisitSession, exchanges: list[Exchange]) -> None:
        for ex in exchanges:
            tally.add(ex)

    result = fleet.run(VISITS, arrivals_at_rate(len(VISITS), 2_000.0), drain_s=60.0,
                       sink=tallied,
                       linger_s=linger_s, on_progress=progress, stop_requested=stop_requested)
    given = len(fleet.given) // 2
    assert given > len(VISITS)  # every request's answer, twice
    if linger_s:
        assert (tally.extra, result.unexpected_answers) == (given, 0)
    else:
        assert (tally.extra, result.unexpected_answers) == (0, given)
    assert tally.ok + tally.error == tally.sent == given


def replay_reading_visits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: Path,
                          on_read: Callable[[], object] = lambda: None,
                          unexpected: list[str] | None = None) -> tuple[Any, list[int]]:
    """`huimin replay LOG --bootstrap …` whose platform reads the visits handed to it (after
    `on_read`) and answers none but the `unexpected`: the visit numbers it read."""
    read: list[int] = []

    def reading(_world: Any, visits: Iterable[Visit], arrivals: list[float], *_: Any,
                on_visits_over: Any, **__: Any) -> Execution:
        on_read()
        read.extend(v.visit_no for v in visits)
        assert len(arrivals) == len(read)
        result = HospitalRunResult([], {}, {}, [], [], len(unexpected or []), 1.0,
                                   unexpected_msgids=unexpected or [])
        on_visits_over(result)
        return Execution(result, "127.0.0.1:1", 0, None, None, None, {}, 0.0, 0.0)

    monkeypatch.setattr(cli, "execute", reading)
    monkeypatch.setattr(cli, "check_reachable", lambda *_: None)
    monkeypatch.setattr(cli, "_check_platform_there", lambda *_: 0)
    return CliRunner().invoke(cli.app, ["replay", str(log), "--rate", "10", "--bootstrap",
                                        "127.0.0.1:1", "--bad-per-kind", "0",
                                        "--results", str(tmp_path / "r.jsonl")]), read


@pytest.fixture()
def log(tmp_path: Path) -> Path:
    path = tmp_path / "v.jsonl"
    result = CliRunner().invoke(cli.app, ["generate", "--persons", "200", "--visits", "7",
                                          "-o", str(path)])
    assert result.exit_code == 0, result.output
    return path


def test_a_replay_reads_its_log_again_as_the_visits_arrive_or_holds_a_pipes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    _, visits = read_visit_log(log)
    numbers = [v.visit_no for v in visits]
    _, read = replay_reading_visits(tmp_path, monkeypatch, log)
    assert read == numbers
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_bytes(log.read_bytes()))
    writer.start()
    _, read = replay_reading_visits(tmp_path, monkeypatch, pipe)
    writer.join(5)
    assert read == numbers  # read once, and held


CHANGED = "it was written to, cut short or replaced since the replay began"


@pytest.mark.parametrize(("edit", "said"), [
    (lambda lines: [*lines[:3], b"{not a visit\n"], CHANGED),
    (lambda lines: lines[:4], CHANGED),
    (lambda lines: [lines[0].replace(b'"seed":42', b'"seed":43'), *lines[1:]],
     "its header is not the one it had when the replay began"),
    # a visit's price edited in place, the log still whole and valid: it was sent as edited,
    # and verify then failed it against the log as it is (a review)
    (lambda lines: [*lines[:5], lines[5].replace(b'"pric":', b'"pric":1', 1), *lines[6:]],
     CHANGED),
    # the same size, the same file: only its mtime tells
    (lambda lines: [*lines[:5], re.sub(rb'"pric":(\d)', lambda m: b'"pric":' + (
        b"7" if m[1] != b"7" else b"8"), lines[5], count=1), *lines[6:]], CHANGED),
], ids=["broken", "cut-short", "another-header", "a visit edited", "a digit edited in place"])
def test_a_log_edited_while_it_is_replayed_is_refused_in_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: Path,
        edit: Callable[[list[bytes]], list[bytes]], said: str) -> None:
    lines = log.read_bytes().splitlines(keepends=True)
    assert b'"seed":42' in lines[0]
    result, _ = replay_reading_visits(
        tmp_path, monkeypatch, log, on_read=lambda: log.write_bytes(b"".join(edit(lines))))
    assert result.exit_code == 2, (result.output, result.exception)
    out = " ".join(result.output.split())
    assert f"{log} changed while it was replayed: " in out and said in out, out
    assert not (tmp_path / "r.jsonl").exists()  # no half a file


def test_a_replay_stopped_early_writes_the_visits_waiting_for_their_person_too() -> None:
    """A visit that arrived while its person's earlier visit was under way has sent nothing
    when the replay stops: it is written all the same, under way, and counted as arrived."""
    visits = list(VISITS[:4])
    visits[1] = visits[1].model_copy(update={"certno": visits[0].certno})
    results = io.BytesIO()
    recorder = ReplayRecorder(results, io.BytesIO(), TAG)
    fleet = OracleFleet(WORLD, answer_timeout_s=600.0, answering=False)
    result = fleet.run(visits, arrivals_at_rate(len(visits), 1_000.0), drain_s=1.0,
                       sink=recorder, linger_s=60.0,
                       stop_requested=lambda: len(fleet.persons) == len(visits) - 1)
    recorder.finish()
    assert result.interrupted and result.waited_for_person == 1
    written = [orjson.loads(line) for line in results.getvalue().splitlines()]
    assert [r["visit_no"] for r in written] == [v.visit_no for v in visits]
    assert all(r.get("under_way") for r in written)
    assert (recorder.arrived, recorder.over) == (len(visits), 0)


class LateFleet(OracleFleet):
    """Answers nothing until `answering` is set, then every request's answer, as errors if
    `errors` (a worker back after its time-out, failing)."""

    def __init__(self, errors: bool) -> None:
        super().__init__(WORLD, answer_timeout_s=0.3, answering=False)
        self.errors = errors

    def _poll(self, timeout_ms: int, worlds: set[str] | None = None) -> list[dict[str, Any]]:
        out = super()._poll(timeout_ms, worlds)
        for m in out if self.errors else []:
            m["ans"] = {**m["ans"], "infcode": -1, "err_code": "E9001", "output": {}}
        return out


@pytest.mark.parametrize("errors", [False, True], ids=["answers", "errors"])
def test_answers_that_come_after_a_given_up_visit_was_written_are_counted_as_if_kept(
        errors: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every visit times out; its answers come once it was written (its linger over). They
    are counted as a replay that kept every visit counted them (answered late, none
    unanswered), the run waits for them, and the trail still knows what each timed-out
    request was, however its answer ended the visit."""
    visits = VISITS[:4]
    # the daily 3201s, which this fleet never answers, would keep the run going anyway
    monkeypatch.setattr(DailyReconciler, "busy", property(lambda self: False))

    def run(sink: ReplayRecorder | None) -> HospitalRunResult:
        fleet = LateFleet(errors)
        threading.Timer(1.0, lambda: setattr(fleet, "answering", True)).start()
        return fleet.run(visits, arrivals_at_rate(len(visits), 100.0), drain_s=5.0,
                         sink=sink, linger_s=0.05 if sink else 0.0,
                         late=sink.late_answer if sink else None)

    results, latencies = io.BytesIO(), io.BytesIO()
    recorder = ReplayRecorder(results, latencies, TAG)
    streamed = run(recorder)
    # counted, and forgotten, as soon as their answers came: not held to the end
    assert recorder.requests.sent == len(visits)
    recorder.finish()
    kept = run(None)
    assert len(streamed.timed_out) == len(kept.timed_out) == len(visits)
    assert streamed.late_answers == kept.late_answers == len(visits)
    assert account(streamed, [], recorder.requests) == account(kept, [])
    tally = recorder.requests  # every visit request answered, late (the daily 3201s are not)
    assert tally.ok + tally.error == tally.sent == len(visits) and tally.error == (
        len(visits) if errors else 0)
    assert set(streamed.timed_out) == set(recorder.timed_out)
    assert len(latencies.getvalue().splitlines()) == len(kept.exchanges)
    assert recorder.paid.to_summary() == money_of(results.getvalue())


def test_a_finished_visit_owed_an_answer_it_does_not_await_holds_back_no_result() -> None:
    """The HIS lost a visit's last answer (`~`) and the platform never gave it: at the
    answer time-out the visit is given up and written, not held to the end with every
    result after it."""
    visits = list(VISITS)
    steps = [*visits[0].steps[:-1], visits[0].steps[-1].rstrip("~") + "~"]
    visits[0] = visits[0].model_copy(update={"steps": steps})
    dropped = VisitSession(visits[0]).msgid_at(len(steps) - 1)

    class Dropping(OracleFleet):
        def _poll(self, timeout_ms: int, worlds: set[str] | None = None
                  ) -> list[dict[str, Any]]:
            return [m for m in super()._poll(timeout_ms, worlds)
                    if m["ans"].get("inf_refmsgid") != dropped]

    results = io.BytesIO()
    recorder = ReplayRecorder(results, io.BytesIO(), TAG)
    handed: list[int] = []

    def sink(session: VisitSession, exchanges: list[Exchange]) -> None:
        handed.append(session.arrival)
        recorder(session, exchanges)

    result = Dropping(WORLD, answer_timeout_s=0.3).run(
        visits, arrivals_at_rate(len(visits), 30.0), drain_s=1.0, sink=sink, linger_s=0.05,
        late=recorder.late_answer)
    recorder.finish()
    assert not result.interrupted
    assert handed.index(0) < len(visits) // 2  # written while the visits went on
    tally = recorder.requests
    assert tally.sent - tally.ok - tally.error == 1  # the answer never given
    # a visit owed an answer at the end counts its money once, as written
    money = recorder.paid.to_summary()
    assert money == money_of(results.getvalue()) and money["money_fen"]["hifp_pay"] > 0


def test_answers_to_no_request_awaited_are_said_beside_the_accounting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Outside the sum (no request of the replay awaited them), but not unsaid."""
    result, _ = replay_reading_visits(tmp_path, monkeypatch, log,
                                      unexpected=["H110100000012026120108000000", "M2"])
    out = " ".join(result.output.split())
    assert "2 answers to no request these hospitals still awaited (given again over a minute " \
        "after their visit was written, or another client's), the first to " \
        "H110100000012026120108000000, M2" in out, out


class ReconcilingTwiceFleet(OracleFleet):
    """Answers the hospitals' daily 3201 too, 平, and every such answer twice: a worker
    restarted after answering it, before committing."""

    def _send(self, key: str | bytes | None, value: bytes, sender: str = "",
              signing: str = "valid") -> int:
        req = orjson.loads(value)
        if req.get("infno") == "3201":
            answer = {"infcode": 0, "inf_refmsgid": req["msgid"], "output": {"stmt_rslt": "0"}}
            self.held += [{"ans": answer}, {"ans": answer}]
            return time.time_ns()
        return super()._send(key, value, sender, signing)


def test_a_daily_reconciliation_answered_again_is_redelivery_not_an_unexpected_answer(
        ) -> None:
    result = ReconcilingTwiceFleet(WORLD, answer_timeout_s=600.0).run(
        VISITS, arrivals_at_rate(len(VISITS), 2_000.0), drain_s=1.0)
    daily = result.daily
    assert daily is not None and daily.days and daily.answered_again == len(daily.answered)
    assert all(d.balanced for d in daily.days.values())
    assert result.unexpected_answers == 0
    acc = account(result, [])
    assert acc.redelivered == daily.answered_again
