"""The hop trace a request carries: it starts where the request reached Kafka (so the
platform's latency includes the wait in hosp.requests), and hop times are never negative."""

from __future__ import annotations

import time

from messages.trace import TRT_IN, TRT_QUEUED, hop_durations_ms
from streams.hop_stamps import received


def test_a_request_is_timed_from_its_record_in_hosp_requests():
    before = time.time_ns()
    trace = received(before // 1_000_000 - 250)  # produced 250 ms ago
    waited_ms = (time.time_ns() - before) / 1e6  # however slow the machine
    assert [hop for hop, _ in trace] == [TRT_QUEUED, TRT_IN]
    assert 250 <= hop_durations_ms(trace)["trt.queued->trt.in"] <= 251 + waited_ms


def test_a_record_without_a_timestamp_is_timed_from_its_handling():
    assert [hop for hop, _ in received(None)] == [TRT_IN]
    assert [hop for hop, _ in received(-1)] == [TRT_IN]  # Kafka's "no timestamp"


def test_a_timestamp_from_a_clock_ahead_counts_as_now():
    trace = received(time.time_ns() // 1_000_000 + 60_000)
    assert trace[0][1] <= trace[1][1]
    assert hop_durations_ms(trace)["trt.queued->trt.in"] == 0.0


def test_hop_times_below_zero_are_shown_as_zero():
    # a hospital's ns stamp just after its record's whole-ms Kafka timestamp
    trace = [["hosp.send", 1_000_000_700_000], ["trt.queued", 1_000_000_000_000],
             ["trt.in", 1_000_003_000_000]]
    assert hop_durations_ms(trace) == {"hosp.send->trt.queued": 0.0,
                                       "trt.queued->trt.in": 3.0}
