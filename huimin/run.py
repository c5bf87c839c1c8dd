"""`huimin run`: build a world, start the broker and the platform, let the hospitals carry out
the visits over Kafka, compare every answer with the oracle, and report."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from messages.topics import ALL_TOPICS
from messages.visitlog import VisitSession
from settlement.oracle import Oracle
from simulators.hospital import HospitalFleet, HospitalRunResult
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from streams.broker import broker, free_port
from streams.config import TABLES, WorkerConfig
from streams.process import WorkerProcess
from streams.topics import changelog_topics, ensure_topics


@dataclass(frozen=True, slots=True)
class RunOptions:
    world: WorldSpec = field(default_factory=WorldSpec)
    visits: VisitSpec = field(default_factory=VisitSpec)
    rate: float = 50.0  # visit arrivals per second (open loop)
    partitions: int = 8
    answer_timeout_s: float = 30.0
    out_dir: Path | None = None


@dataclass
class Comparison:
    """Streamed answers against the oracle's, visit by visit and step by step."""

    visits: int = 0
    settlements_expected: int = 0
    settlements_equal: int = 0
    answers_compared: int = 0
    answers_equal: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.answers_equal == self.answers_compared and not self.mismatches


def compare(streamed: list[VisitSession], expected: list[VisitSession]) -> Comparison:
    cmp = Comparison(visits=len(expected))
    for got, want in zip(streamed, expected, strict=True):
        if want.settlement is not None:
            cmp.settlements_expected += 1
            if got.settlement == want.settlement:
                cmp.settlements_equal += 1
        for infno, want_answer in want.answers.items():
            cmp.answers_compared += 1
            got_answer = got.answers.get(infno)
            if got_answer == want_answer:
                cmp.answers_equal += 1
            elif len(cmp.mismatches) < 20:
                cmp.mismatches.append(_describe(got.visit.visit_no, infno, got_answer,
                                                want_answer))
    return cmp


def _describe(visit_no: int, infno: str, got: dict | None, want: dict) -> str:
    if got is None:
        return f"visit {visit_no} {infno}: no answer (expected infcode {want['infcode']})"
    fields = sorted(k for k in {**got, **want} if got.get(k) != want.get(k))
    if fields == ["output"] and "setlinfo" in want["output"]:
        g, w = got["output"].get("setlinfo", {}), want["output"]["setlinfo"]
        fields = [f"setlinfo.{k}: {g.get(k)!r} != {w.get(k)!r}" for k in w if g.get(k) != w[k]]
    return f"visit {visit_no} {infno}: differs in {', '.join(fields)}"


@dataclass
class RunReport:
    options: RunOptions
    result: HospitalRunResult
    comparison: Comparison
    out_dir: Path
    bootstrap: str
    setup_s: float
    sign_in_s: float
    total_s: float

    @property
    def ok(self) -> bool:
        return self.comparison.ok and not self.result.unanswered and \
            not self.result.conflicting_duplicates


def default_out_dir() -> Path:
    return Path("out") / datetime.now().strftime("run-%Y%m%d-%H%M%S")


@contextlib.contextmanager
def platform(bootstrap: str, world: WorldSpec, partitions: int, out_dir: Path,
             workers: int = 1) -> Iterator[list[WorkerProcess]]:
    """Topics created and `workers` platform worker processes running; stopped on exit."""
    cfg = WorkerConfig(bootstrap=bootstrap, partitions=partitions, world=world)
    ensure_topics(bootstrap, [*ALL_TOPICS, *changelog_topics(cfg.app_id, TABLES)], partitions)
    procs = []
    try:
        for i in range(workers):
            wcfg = WorkerConfig(**{**cfg.to_dict(), "world": world, "web_port": free_port(),
                                   "data_dir": str(out_dir / f"worker-{i}-data")})
            procs.append(WorkerProcess(wcfg, out_dir / f"worker-{i}.log").start())
        yield procs
    finally:
        for p in procs:
            p.stop()


def run_scenario(opts: RunOptions, on_stage: Callable[[str], None] = lambda s: None,
                 on_progress: Callable[[int], None] | None = None) -> RunReport:
    started = time.monotonic()
    out_dir = opts.out_dir or default_out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    on_stage("building the world and the visits")
    world = build_world(opts.world)
    visits = list(generate_visits(world, opts.visits))
    on_stage("settling the visit log with the oracle")
    expected = list(Oracle(world.ref).settle_log(visits))
    on_stage("starting the broker and the platform")
    with broker(out_dir / "broker.log") as bootstrap, \
            platform(bootstrap, opts.world, opts.partitions, out_dir):
        fleet = HospitalFleet(bootstrap, opts.answer_timeout_s)
        try:
            setup_s = time.monotonic() - started
            on_stage("waiting for the platform to answer the hospitals' sign-in")
            sign_in_s = fleet.sign_in(world.ref.hospitals.values(), visits[0].begntime)
            on_stage(f"{len(visits):,} visits at {opts.rate:g}/s")
            result = fleet.run(visits, opts.rate, on_progress)
        finally:
            fleet.close()
        on_stage("stopping the platform and the broker")
    comparison = compare(result.sessions, expected)
    return RunReport(opts, result, comparison, out_dir, bootstrap, setup_s, sign_in_s,
                     time.monotonic() - started)
