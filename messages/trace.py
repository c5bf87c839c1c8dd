"""Per-hop timestamps carried by every message, so latency can be broken down by hop.

A trace is a list of `[hop, epoch_ns]` pairs appended as the message moves; the stream
processors stamp them (streams/hop_stamps.py), so this module reads no clock.
"""

from __future__ import annotations

import itertools
from typing import Final

HOSP_SEND: Final = "hosp.send"
#: The request's record in hosp.requests, by its Kafka timestamp: LogAppendTime, the broker's
#: time of arrival, as `huimin topics` creates the topic on Apache Kafka; on Tansu, which
#: keeps the client's CreateTime, the moment the hospital handed it to kafka-python (its
#: `send()` stamps it), so there `hosp.send` to here is ~0 and the client's linger and the
#: send lie in `trt.queued` to `trt.in`. From here to `trt.in` the request waited in the
#: topic: the platform's backlog.
TRT_QUEUED: Final = "trt.queued"
TRT_IN: Final = "trt.in"
NAT_IN: Final = "nat.in"
INS_IN: Final = "ins.in"
NAT_BACK: Final = "nat.back"
TRT_BACK: Final = "trt.back"
HOSP_RECV: Final = "hosp.recv"
_POINTS = (HOSP_SEND, TRT_QUEUED, TRT_IN, NAT_IN, INS_IN, NAT_BACK, TRT_BACK, HOSP_RECV)
#: Every `from->to` a trace can name: a metric's hop label is one of these, whatever a
#: message carries.
HOPS: Final = frozenset(f"{a}->{b}" for a in _POINTS for b in _POINTS)

Trace = list[list]

#: Latency histograms' buckets, the platform's and the hospitals' alike (so the two views
#: compare bucket for bucket): 5 ms … 60 s. The NHSA answers an inpatient settlement in
#: ~0.8 s, and a worker's restart (8–23 s) or a hospital's 30-s time-out must still show as
#: what it is.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
                          30.0, 60.0)


def hop_durations_ms(trace: Trace) -> dict[str, float]:
    """Milliseconds spent between consecutive hops, named `from->to`; never below 0 (a
    Kafka timestamp has whole milliseconds, and machines' clocks may differ a little)."""
    out: dict[str, float] = {}
    for (a, ta), (b, tb) in itertools.pairwise(trace):
        out[f"{a}->{b}"] = max(0.0, (tb - ta) / 1e6)
    return out
