"""Per-hop timestamps carried by every message, so latency can be broken down by hop.

A trace is a list of `[hop, epoch_ns]` pairs appended as the message moves.
"""

from __future__ import annotations

import itertools
import time
from typing import Final

HOSP_SEND: Final = "hosp.send"
TRT_IN: Final = "trt.in"
NAT_IN: Final = "nat.in"
INS_IN: Final = "ins.in"
NAT_BACK: Final = "nat.back"
TRT_BACK: Final = "trt.back"
HOSP_RECV: Final = "hosp.recv"

Trace = list[list]


def stamp(trace: Trace, hop: str) -> Trace:
    """Append the current wall-clock time for `hop` and return the trace."""
    trace.append([hop, time.time_ns()])
    return trace


def hop_durations_ms(trace: Trace) -> dict[str, float]:
    """Milliseconds spent between consecutive hops, named `from->to`."""
    out: dict[str, float] = {}
    for (a, ta), (b, tb) in itertools.pairwise(trace):
        out[f"{a}->{b}"] = (tb - ta) / 1e6
    return out
