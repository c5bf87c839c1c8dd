"""The hospitals read their answers with librdkafka (simulators/rdkafka_tail.py): it shows a
record as kafka-python does, as soon as it comes, and says a cluster down once in a while."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer, TopicPartition

from simulators import rdkafka_tail
from simulators.rdkafka_tail import RdkafkaTail, TailRecord
from streams.broker import broker, free_port
from streams.log_repeats import RepeatsHeldBack
from streams.topics import ensure_topics


@pytest.mark.e2e
def test_records_are_read_from_the_positions_given_as_kafka_python_shows_them(tmp_path: Path):
    topic = f"tail-{uuid.uuid4().hex[:8]}"
    with broker(tmp_path / "broker.log") as bootstrap:
        ensure_topics(bootstrap, [topic], partitions=2)
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        for i in range(4):
            producer.send(topic, f"answer {i}".encode(), key=b"H1", partition=1,
                          headers=[("world", b"w1"), ("empty", b"")], timestamp_ms=1_000 + i)
        producer.send(topic, b"other partition", partition=0)
        producer.flush()
        producer.close()
        tail = RdkafkaTail(bootstrap, {TopicPartition(topic, 1): 2, TopicPartition(topic, 0): 1},
                           {"fetch_max_wait_ms": 25, "client_id": "test-tail"})
        try:
            assert tail.assignment() == {TopicPartition(topic, 0), TopicPartition(topic, 1)}
            got: dict[TopicPartition, list[TailRecord]] = {}
            for _ in range(100):
                for tp, records in tail.poll(100).items():
                    got.setdefault(tp, []).extend(records)
                if sum(map(len, got.values())) >= 2:
                    break
            assert tail.poll(300) == {}  # nothing more, nothing twice
        finally:
            tail.close()
    # partition 0 was read from offset 1, past its only record; partition 1 from 2
    assert got == {TopicPartition(topic, 1): [
        TailRecord(topic, 1, offset, 1_000 + offset, b"H1", f"answer {offset}".encode(),
                   [("world", b"w1"), ("empty", b"")]) for offset in (2, 3)]}


def test_a_cluster_down_is_said_once_in_a_while_not_at_every_retry(
        caplog: pytest.LogCaptureFixture):
    """librdkafka logs each failed connection, ~20 a second: one line shows, and the next
    one let through says how many were left out."""
    held = [f for f in rdkafka_tail.log.filters if isinstance(f, RepeatsHeldBack)]
    assert len(held) == 1
    held[0]._seen.clear()
    tail = RdkafkaTail(f"127.0.0.1:{free_port()}", {TopicPartition("hosp.responses", 0): 0},
                       {"fetch_max_wait_ms": 25})
    try:
        with caplog.at_level(logging.WARNING, logger=rdkafka_tail.log.name):
            for _ in range(15):
                assert tail.poll(100) == {}
    finally:
        tail.close()
    failed = [r for r in caplog.records if "Connect to" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR, caplog.text


@pytest.mark.e2e
def test_a_poll_returns_as_soon_as_a_record_arrives_not_at_its_time_out(tmp_path: Path):
    """librdkafka's `consume` would hold what came until the whole wait was up: every answer
    timed up to a poll's wait late."""
    topic = f"tail-{uuid.uuid4().hex[:8]}"
    with broker(tmp_path / "broker.log") as bootstrap:
        ensure_topics(bootstrap, [topic], partitions=1)
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        producer.send(topic, b"warm-up", partition=0).get(timeout=30)
        tail = RdkafkaTail(bootstrap, {TopicPartition(topic, 0): 1}, {"fetch_max_wait_ms": 25})
        try:
            assert tail.poll(1000) == {}  # the partition fetched, nothing past offset 1
            sender = threading.Timer(0.3, lambda: producer.send(topic, b"answer", partition=0)
                                     .get(timeout=30))
            sender.start()
            began = time.monotonic()
            got = tail.poll(10_000, max_records=2000)
            waited = time.monotonic() - began
            sender.join()
        finally:
            tail.close()
            producer.close()
    assert [r.value for records in got.values() for r in records] == [b"answer"]
    assert waited < 5.0  # sent 0.3 s in; the poll would have waited 10 s
