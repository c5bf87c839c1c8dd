"""A replay hands each visit on as it ends (huimin/replay_results.py) instead of keeping them
all: its results file, accounting and summary must be what they were when it kept every
visit, and an answer given again soon after a visit ended (redelivery) must still find it."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from huimin import cli
from huimin.logfiles import read_visit_log, record_line
from huimin.replay_results import ReplayRecorder
from huimin.report import settled_in_ms
from huimin.run import Execution, arrivals_at_rate
from huimin.run_checks import RequestTally, account
from messages.visitlog import Visit, VisitSession
from simulators.reconciliation import settlements_to_post
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

    result = fleet.run(VISITS, arrivals_at_rate(len(VISITS), 2_000.0), drain_s=60.0,
                       sink=lambda session, exchanges: [tally.add(ex) for ex in exchanges],
                       linger_s=linger_s, on_progress=progress, stop_requested=stop_requested)
    given = len(fleet.given) // 2
    assert given > len(VISITS)  # every request's answer, twice
    if linger_s:
        assert (tally.extra, result.unexpected_answers) == (given, 0)
    else:
        assert (tally.extra, result.unexpected_answers) == (0, given)
    assert tally.ok + tally.error == tally.sent == given


def replay_reading_visits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: Path,
                          on_read: Callable[[], None] = lambda: None) -> tuple[Any, list[int]]:
    """`huimin replay LOG --bootstrap …` whose platform reads the visits handed to it (after
    `on_read`) and answers none: the visit numbers it read."""
    read: list[int] = []

    def reading(_world: Any, visits: Iterable[Visit], arrivals: list[float], *_: Any,
                on_visits_over: Any, **__: Any) -> Execution:
        on_read()
        read.extend(v.visit_no for v in visits)
        assert len(arrivals) == len(read)
        result = HospitalRunResult([], {}, {}, [], [], 0, 1.0)
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


def test_a_log_edited_while_it_is_replayed_is_refused_in_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    lines = log.read_bytes().splitlines(keepends=True)
    result, _ = replay_reading_visits(
        tmp_path, monkeypatch, log,
        on_read=lambda: log.write_bytes(b"".join(lines[:3]) + b"{not a visit\n"))
    assert result.exit_code == 2, (result.output, result.exception)
    assert f"{log} changed while it was replayed: " in " ".join(result.output.split())
    assert not (tmp_path / "r.jsonl").exists()  # no half a file
