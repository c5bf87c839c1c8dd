"""The wall-clock stamps a message's trace gets as a stream processor handles it (the hops
and their meaning: messages/trace.py, which reads no clock)."""

from __future__ import annotations

import time

from messages.trace import TRT_IN, TRT_QUEUED, Trace


def stamp(trace: Trace, hop: str) -> Trace:
    """Append the current wall-clock time for `hop` and return the trace."""
    trace.append([hop, time.time_ns()])
    return trace


def received(record_ms: int | None) -> Trace:
    """A request's trace as the treatment side takes it up: when its record reached
    hosp.requests (its Kafka timestamp, in ms; none if the record has none), then now. A
    timestamp ahead of now (another machine's clock) counts as now."""
    now = time.time_ns()
    if record_ms is None or record_ms <= 0:
        return [[TRT_IN, now]]
    return [[TRT_QUEUED, min(record_ms * 1_000_000, now)], [TRT_IN, now]]
