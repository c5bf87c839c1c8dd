"""A real Apache Kafka broker (KRaft, from Maven Central jars) starts on free loopback ports,
takes idempotent writes, serves a consumer group, and stops cleanly."""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from benchmarks.memory import broker_pids
from messages.topics import EHR_AUDIT, HOSP_REQUESTS
from streams import kafka_broker
from streams.broker import BrokerError, kafka_protocol_ready
from streams.kafka_broker import ApacheKafkaBroker, kafka_classpath
from streams.topics import ensure_topics, platform_topics, settings_drift, topic_config
from tests.conftest import needs_java_and_maven, run_huimin

pytestmark = [
    pytest.mark.e2e,
    needs_java_and_maven,
]


def test_apache_kafka_takes_idempotent_writes_and_frees_its_ports_when_stopped(tmp_path):
    b = ApacheKafkaBroker(log_path=tmp_path / "kafka.log").start()
    try:
        assert kafka_protocol_ready("127.0.0.1", b.port)
        # `huimin bench` finds this broker's JVM, and only it, to measure its CPU
        assert broker_pids(b.bootstrap, "kafka") == [b.process.pid]
        assert broker_pids(f"127.0.0.1:{b.controller_port}", "kafka") == []
        ensure_topics(b.bootstrap, ["t.one"], partitions=3)
        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            [topic] = admin.describe_topics(["t.one"])
        finally:
            admin.close()
        assert topic["name"] == "t.one" and len(topic["partitions"]) == 3

        value = uuid.uuid4().hex.encode()
        producer = KafkaProducer(bootstrap_servers=b.bootstrap, enable_idempotence=True,
                                 acks="all")
        try:
            sent = producer.send("t.one", key=b"person-1", value=value).get(timeout=30)
        finally:
            producer.close()
        consumer = KafkaConsumer("t.one", bootstrap_servers=b.bootstrap, group_id="t-group",
                                 auto_offset_reset="earliest", consumer_timeout_ms=30_000)
        try:
            got = next(iter(consumer), None)
        finally:
            consumer.close()
        assert got is not None, "the consumer got nothing within 30 s"
        assert (got.partition, got.offset, got.key, got.value) == (
            sent.partition, sent.offset, b"person-1", value)

        # hosp.requests keeps the broker's time, not a hospital's clock (streams/topics.py)
        ensure_topics(b.bootstrap, [HOSP_REQUESTS], partitions=1)
        producer = KafkaProducer(bootstrap_servers=b.bootstrap)
        try:
            producer.send(HOSP_REQUESTS, value=b"{}", timestamp_ms=1_000).get(timeout=30)
        finally:
            producer.close()
        consumer = KafkaConsumer(HOSP_REQUESTS, bootstrap_servers=b.bootstrap,
                                 auto_offset_reset="earliest", consumer_timeout_ms=30_000)
        try:
            request = next(iter(consumer), None)
        finally:
            consumer.close()
        assert request is not None and request.timestamp_type == 1  # LogAppendTime
        assert abs(request.timestamp / 1000 - time.time()) < 120

        # a topic there before `huimin topics` (written to, so the broker made it with its
        # defaults) is said with how to set it; a changelog is kept whole (it was deleted
        # after Kafka's default 7 days, and the rows with it: an Apache Kafka review)
        producer = KafkaProducer(bootstrap_servers=b.bootstrap)
        try:
            producer.send(EHR_AUDIT, value=b"{}").get(timeout=30)
        finally:
            producer.close()
        made = run_huimin(["topics", "--bootstrap", b.bootstrap, "--partitions", "1"],
                          timeout=120)
        assert made.returncode == 0 and "Topics ready" in made.stdout, made.stderr
        assert f"ehr.audit has retention.ms=604800000, not -1 as huimin makes it: set it with " \
               f"kafka-configs.sh --bootstrap-server {b.bootstrap} --alter --entity-type " \
               "topics --entity-name ehr.audit --add-config retention.ms=-1" in made.stderr
        assert "hosp.requests" not in made.stderr  # made by ensure_topics above, as asked
        changelogs = [n for n in platform_topics(1) if n.endswith("-changelog")]
        assert changelogs and all(topic_config(n) == {"retention.ms": "-1", "cleanup.policy":
                                                       "delete"} for n in changelogs)
        assert settings_drift(b.bootstrap, changelogs) == []  # made so
    finally:
        pid = b.process.pid if b.process else None
        b.stop()
    for port in (b.port, b.controller_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_warm_cache_gives_the_classpath_without_maven(monkeypatch):
    first = kafka_classpath()
    which = shutil.which
    monkeypatch.setattr(kafka_broker.shutil, "which",
                        lambda name: None if name == "mvn" else which(name))
    assert kafka_classpath() == first  # `mvn` hidden: had it been needed, BrokerError
    assert f"kafka_2.13-{kafka_broker.KAFKA_VERSION}.jar" in first


def test_apache_kafka_started_again_on_its_data_folder_resumes_on_the_same_ports(tmp_path):
    """An ops team rehearsing a broker's restart (`huimin broker --kind kafka --data-dir`):
    the second start listens where the first did, with its topics and messages (a review
    had to start the JVM by hand: the temporary folder was removed and the ports random)."""
    data = tmp_path / "kafka-data"
    first = ApacheKafkaBroker(data_dir=data).start()
    try:
        ensure_topics(first.bootstrap, ["t.kept"], partitions=1)
        producer = KafkaProducer(bootstrap_servers=first.bootstrap, acks="all")
        try:
            producer.send("t.kept", value=b"before the restart").get(timeout=30)
        finally:
            producer.close()
    finally:
        first.stop()
    assert (data / "logs" / "meta.properties").exists()  # kept, not removed
    again = ApacheKafkaBroker(data_dir=data).start()
    try:
        assert (again.port, again.controller_port) == (first.port, first.controller_port)
        consumer = KafkaConsumer("t.kept", bootstrap_servers=again.bootstrap,
                                 auto_offset_reset="earliest", consumer_timeout_ms=30_000)
        try:
            got = [m.value for m in consumer]
        finally:
            consumer.close()
        assert got == [b"before the restart"]
        # a second broker on the folder while this one runs is refused, not taken for ready
        with pytest.raises(BrokerError, match=r"port \d+ on 127.0.0.1 is in use \(kept in "):
            ApacheKafkaBroker(data_dir=data).start()
        with pytest.raises(BrokerError, match="is the controller's of the broker kept in"):
            ApacheKafkaBroker(port=again.controller_port, data_dir=data)
        assert again.process is not None and again.process.poll() is None
    finally:
        again.stop()
