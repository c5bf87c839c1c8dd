"""A long rate over time: when the platform fell behind, not only whether it did.

A rate's figures are one number each over all of its arrivals. Over an hour and a million
visits (the memory target) that hides the course: a platform that kept up for 50 minutes
and then fell behind reads the same as one behind from the start. So a rate whose visits
arrive over two minutes or more is also cut into at most twelve slices of whole minutes,
each with the settlements sent in it (by their send time), the share answered, their p50
and p99 (a settlement never answered, or never sent as its visit was cut short, ranks
above every answer, as in the rate's own figures), the visits dropped unstarted and each
component's resident memory at the slice's end.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from benchmarks.latency import percentiles

if TYPE_CHECKING:
    from benchmarks.load import RateTally

#: Slices are whole minutes, and a rate needs two of them to show a course.
SLICE_UNIT_S = 60.0
#: At most this many slices (rows of the report) however long the rate.
MOST_SLICES = 12


def slice_seconds(period_s: float) -> float | None:
    """How long each slice of a rate whose visits arrive over `period_s` lasts; None for a
    rate too short to show a course."""
    if period_s < 2 * SLICE_UNIT_S:
        return None
    return SLICE_UNIT_S * math.ceil(period_s / MOST_SLICES / SLICE_UNIT_S)


def rate_timeline(tally: RateTally, start_ns: int, period_s: float,
                  dropped_at_s: Sequence[float],
                  memory: Sequence[tuple[float, dict[str, int]]]) -> list[dict[str, Any]]:
    """The slices of a rate whose visits arrived over `period_s` from `start_ns` (wall-clock
    ns, as the tally's send times): `dropped_at_s`, when each dropped visit arrived, and
    `memory`, (seconds, bytes by component) samples, both in seconds from the start. What
    comes after the last arrival counts in the last slice: a settlement sent then (a visit's
    later step, or a visit started late behind a backlog), and the memory as the rate ended.
    Empty for a rate too short (`slice_seconds`)."""
    step = slice_seconds(period_s)
    if step is None:
        return []
    n = math.ceil(period_s / step)

    def slice_of(seconds: float) -> int:
        return min(n - 1, max(0, int(seconds // step)))

    def counts(seconds: Iterable[float]) -> list[int]:
        out = [0] * n
        for t in seconds:
            out[slice_of(t)] += 1
        return out

    def since_start(times_ns: array) -> Iterator[float]:
        return ((t - start_ns) / 1e9 for t in times_ns)

    sent, cut, answered = (counts(since_start(times)) for times in (
        tally.settlements_sent, tally.settlements_cut, tally.settlements_answered))
    dropped = counts(dropped_at_s)
    latencies: list[list[float]] = [[] for _ in range(n)]
    for times, values in tally.by_route.values():
        for t, ms in zip(since_start(times), values, strict=True):
            latencies[slice_of(t)].append(ms)
    slices = []
    for i in range(n):
        end = min((i + 1) * step, period_s)
        offered = sent[i] + cut[i]
        lat = percentiles(latencies[i], unanswered=max(0, offered - answered[i]))
        until = end if i < n - 1 else math.inf
        rss = next((s for t, s in reversed(memory) if t <= until), memory[0][1] if memory
                   else {})
        slices.append({"from_s": i * step, "to_s": end, "settlements": offered,
                       "answered_share": round(answered[i] / offered, 4) if offered else None,
                       "unanswered": lat.get("unanswered", 0),
                       "p50_ms": lat.get("p50"), "p99_ms": lat.get("p99"),
                       "dropped_visits": dropped[i],
                       "rss_mib": {name: round(v / 2**20) for name, v in rss.items()}})
    return slices
