"""The hospitals read every answer on `hosp.responses`: a tailing reader never steps over a
batch the broker shows late (streams/offset_gaps.py), as two workers writing one partition at
once can make Tansu do, and an answer that does not decode is named, not dropped silently."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from messages.codec import encode
from messages.topics import HOSP_RESPONSES
from simulators.hospital import HospitalFleet
from simulators.rdkafka_tail import RdkafkaTail
from streams.broker import broker
from streams.offset_gaps import REFETCH_EVERY_S, GapGuard
from streams.topics import create_platform_topics, ensure_topics

TP = TopicPartition("hosp.responses", 3)


def kafka_python_from(bootstrap: str, tp: TopicPartition, offset: int) -> Any:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=50)
    consumer.assign([tp])
    consumer.seek(tp, offset)
    return consumer


def librdkafka_from(bootstrap: str, tp: TopicPartition, offset: int) -> Any:
    """The hospitals' answer reader (simulators/rdkafka_tail.py)."""
    return RdkafkaTail(bootstrap, {tp: offset}, {"fetch_max_wait_ms": 50})


@pytest.mark.e2e
@pytest.mark.parametrize("reader_from", [kafka_python_from, librdkafka_from])
def test_records_shown_past_a_missing_batch_are_read_again_with_it(
        tmp_path: Path, reader_from: Callable[[str, TopicPartition, int], Any]):
    """On Tansu: the consumer is shown offsets 4-8 while the guard still awaits 0 (as a fetch
    shows a batch stored before the one below it); it fetches again from 0 and hands over
    0-8 once each, in order, by either client the hospitals read with."""
    topic = f"gaps-{uuid.uuid4().hex[:8]}"
    with broker(tmp_path / "broker.log") as bootstrap:
        ensure_topics(bootstrap, [topic], partitions=1)
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
        for batch in (range(0, 3), range(3, 4), range(4, 9)):
            for i in batch:
                producer.send(topic, f"answer {i}".encode(), partition=0)
            producer.flush()
        producer.close()
        tp = TopicPartition(topic, 0)
        consumer = reader_from(bootstrap, tp, 4)
        try:
            guard = GapGuard(consumer)
            guard.start(tp, 0)
            offsets: list[int] = []
            for _ in range(50):
                offsets += [r.offset for r in guard.poll(100)]
                if len(offsets) >= 9:
                    break
            offsets += [r.offset for r in guard.poll(300)]  # nothing more, nothing twice
        finally:
            consumer.close()
    assert offsets == list(range(9))
    assert (guard.counts.closed, guard.counts.holes) == (1, 0)


@dataclass
class Rec:
    offset: int
    value: bytes = b""


class ScriptedConsumer:
    """Stands in for a kafka-python consumer assigned one partition of a log with a gap at
    offsets 2-3 that the broker fills (`fill`) or never does: each poll returns what is
    stored from the position on, as Tansu's fetch does, unless the partition is paused."""

    def __init__(self) -> None:
        self.stored = {0: Rec(0), 1: Rec(1), 4: Rec(4), 5: Rec(5)}
        self.pos = 0
        self.paused = False
        self.polls = 0
        self.seeks: list[int] = []

    def fill(self) -> None:
        self.stored |= {2: Rec(2), 3: Rec(3)}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def position(self, tp: TopicPartition) -> int:
        return self.pos

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append(offset)
        self.pos = offset

    def pause(self, tp: TopicPartition) -> None:
        self.paused = True

    def resume(self, tp: TopicPartition) -> None:
        self.paused = False

    def poll(self, timeout_ms: int, max_records: Any = None) -> dict[TopicPartition, list[Rec]]:
        self.polls += 1
        if self.paused:
            return {}
        recs = [r for o, r in sorted(self.stored.items()) if o >= self.pos]
        if recs:
            self.pos = recs[-1].offset + 1
        return {TP: recs} if recs else {}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_gap_is_waited_for_and_closed_once_its_batch_is_stored():
    consumer, clock = ScriptedConsumer(), Clock()
    told: list[str] = []
    guard = GapGuard(consumer, wait_s=2.0, clock=clock,
                     on_gap=told.append)
    assert [r.offset for r in guard.poll(0)] == [0, 1]  # 4-5 shown past the gap: held back
    assert consumer.seeks == [2]
    assert guard.poll(0) == []  # still missing: fetched again, then paused
    assert consumer.paused
    clock.now += REFETCH_EVERY_S / 2
    assert guard.poll(0) == [] and consumer.paused  # not fetched again in a busy loop
    consumer.fill()
    clock.now += REFETCH_EVERY_S
    assert [r.offset for r in guard.poll(0)] == [2, 3, 4, 5]
    assert (guard.counts.closed, guard.counts.holes, guard.counts.holes_at) == (1, 0, [])
    assert told == ["fetched_again"]


def test_a_gap_that_lasts_is_stepped_over_as_a_hole_and_named():
    consumer, clock = ScriptedConsumer(), Clock()
    told: list[str] = []
    guard = GapGuard(consumer, wait_s=2.0, clock=clock,
                     on_gap=told.append)
    handed: list[int] = []
    while clock.now < 103.0:
        handed += [r.offset for r in guard.poll(0)]
        clock.now += 0.1
    assert handed == [0, 1, 4, 5]  # each once, in order, the hole's neighbours included
    assert (guard.counts.closed, guard.counts.holes) == (0, 1)
    assert told == ["stepped_over"]
    assert guard.counts.holes_at == ["hosp.responses[3]@2"]
    assert consumer.polls < 60  # paused between fetches, not one fetch a poll


@pytest.mark.e2e
def test_the_hospitals_skip_an_answer_that_does_not_decode_or_is_no_answer_saying_where(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """Not silently: the log names the record's place, never its bytes; the answers around it
    are read. So is JSON not shaped as an answer (a run stopped on `{"ans": "oops"}`)."""
    with broker(tmp_path / "broker.log") as bootstrap:
        create_platform_topics(bootstrap)
        fleet = HospitalFleet(bootstrap)
        try:
            producer = KafkaProducer(bootstrap_servers=bootstrap)
            for value in (encode({"ans": {"inf_refmsgid": "M1"}}), b'{"ans": 110105197',
                          encode({"ans": "oops"}), encode({"ans": {"inf_refmsgid": ["x"]}}),
                          encode({"ans": None}), encode({"ans": {"inf_refmsgid": "M2"}})):
                producer.send(HOSP_RESPONSES, value, partition=0)
            producer.flush()
            producer.close()
            got: list[dict[str, Any]] = []
            with caplog.at_level("WARNING", logger="huimin.hospitals"):
                for _ in range(50):
                    got += fleet._poll(100)
                    if len(got) >= 2:
                        break
        finally:
            fleet.close()
    assert [m["ans"]["inf_refmsgid"] for m in got] == ["M1", "M2"]
    assert f"an answer on {HOSP_RESPONSES}[0]@1 does not decode" in caplog.text
    for offset in (2, 3, 4):  # JSON, not shaped as an answer: a run stopped on each
        assert f"an answer on {HOSP_RESPONSES}[0]@{offset} is not one a platform writes" \
            in caplog.text
    assert "110105197" not in caplog.text
