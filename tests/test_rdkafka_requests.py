"""The hospitals send their requests with librdkafka (simulators/rdkafka_requests.py): a
person's request lands where every other client here puts that person's messages (Kafka's
default partitioner, streams/partitioner.py), signed headers and all."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from simulators.rdkafka_requests import RequestsProducer
from streams.broker import broker
from streams.partitioner import key_partition
from streams.topics import ensure_topics

pytestmark = pytest.mark.e2e


def test_requests_land_in_their_keys_partition_with_their_headers(tmp_path: Path):
    topic = f"requests-{uuid.uuid4().hex[:8]}"
    keys = [f"1101011990030700{n:02d}".encode() for n in range(40)]
    undelivered: list[tuple[str, str]] = []
    with broker(tmp_path / "broker.log") as bootstrap:
        ensure_topics(bootstrap, [topic], partitions=4)
        producer = RequestsProducer(bootstrap, {"client_id": "test-requests"},
                                    lambda *failed: undelivered.append(failed))
        for key in keys:
            producer.send(topic, key, b"request of " + key, [("hmac", b"sig-" + key)])
        producer.send(topic, keys[0], b"placed by hand", partition=3)
        assert producer.flush(30) == 0
        assert producer.close(5) == 0
        reader = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        reader.assign([TopicPartition(topic, p) for p in range(4)])
        reader.seek_to_beginning()
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 30
        while len(records) < len(keys) + 1 and time.monotonic() < deadline:
            records += [r for batch in reader.poll(500).values() for r in batch]
        reader.close()
    assert undelivered == []
    placed = {r.key: r.partition for r in records if r.value.startswith(b"request of ")}
    assert placed == {key: key_partition(key, 4) for key in keys}
    assert len(set(placed.values())) == 4  # the keys spread: the test can tell a partition
    assert all(r.headers == [("hmac", b"sig-" + r.key)] for r in records
               if r.value.startswith(b"request of "))
    [by_hand] = [r for r in records if r.value == b"placed by hand"]
    assert by_hand.partition == 3
