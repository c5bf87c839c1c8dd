"""The hospitals read their answers with librdkafka (simulators/rdkafka_tail.py): it shows a
record as kafka-python does, and takes a secured cluster's settings under its own names."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer, TopicPartition

from simulators import rdkafka_tail
from simulators.rdkafka_tail import RdkafkaTail, TailRecord, librdkafka_settings, log_line_kind
from streams.broker import broker, free_port
from streams.log_repeats import RepeatsHeldBack
from streams.security import PASSWORD_ENV, ClusterSecurity
from streams.topics import ensure_topics


def test_a_secured_clusters_settings_are_given_in_librdkafkas_names(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    security = ClusterSecurity("SASL_SSL", "SCRAM-SHA-256", "hospitals", "/etc/ca.pem")
    assert librdkafka_settings({**security.kafka_python(), "client_id": "h",
                                "fetch_max_wait_ms": 50}) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "hospitals", "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ca.pem", "client.id": "h", "fetch.wait.max.ms": 50}
    assert librdkafka_settings(ClusterSecurity().kafka_python()) == {}


def test_a_setting_with_no_librdkafka_name_is_refused_not_dropped():
    with pytest.raises(ValueError, match="no librdkafka setting for ssl_certfile"):
        librdkafka_settings({"security_protocol": "SSL", "ssl_certfile": "/etc/me.pem"})


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
    for held in rdkafka_tail.log.filters:
        held._seen.clear()  # type: ignore[attr-defined]
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


def test_repeats_are_told_apart_by_what_failed_not_by_port_or_time():
    """A refused connection retried is one kind; a failed TLS handshake behind it is another,
    and shows. A lone dict argument (logging's `%(name)s` form) does not break the filter."""
    def line(text: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord(rdkafka_tail.log.name, logging.ERROR, __file__, 1, text,
                                 args, None)

    held = RepeatsHeldBack(kind=log_line_kind)
    refused = "[thrd:127.0.0.1:{0}/bootstrap]: Connect to ipv4#127.0.0.1:{0} failed (after {1}ms)"
    template = "%s [%s] %s"
    assert held.filter(line(template, "FAIL", "c#consumer-1", refused.format(9092, 0)))
    assert not held.filter(line(template, "FAIL", "c#consumer-1", refused.format(9092, 12)))
    assert held.filter(line(template, "FAIL", "c#consumer-1",
                            "[thrd:b:9093/bootstrap]: SSL handshake failed"))
    assert held.filter(line("%(what)s", {"what": "a dict argument"}))
