"""Where a partition ends, also on Tansu, whose ListOffsets answer stops at the first record
of the last batch (streams/partition_ends.py): table recovery reads a changelog to its last
record (streams/faust_recovery.py), the hospitals read no answer from before they began, and
a replay into a running platform says how many requests it holds already."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as AioTopicPartition
from faust.types import TP
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from simulators.hospital import response_consumer
from streams.broker import BOOTSTRAP_ENV, broker
from streams.faust_recovery import guard_recovery
from streams.partition_ends import true_ends
from streams.topics import ensure_topics, records_held

pytestmark = pytest.mark.e2e

BATCHES = (3, 1, 5)  # records per producer batch, written in this order to partition 0


@pytest.fixture
def changelog(tmp_path: Path) -> Any:
    """A broker with a new topic `changelog-…`: partition 0 holds the batches, partition 1 is
    empty. Yields (bootstrap servers, topic)."""
    topic = f"changelog-{uuid.uuid4().hex[:8]}"
    with broker(tmp_path / "broker.log") as bootstrap:
        ensure_topics(bootstrap, [topic], partitions=2)

        async def write() -> None:
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
            await producer.start()
            try:
                for n in BATCHES:  # n sends before the linger ends: one batch of n records
                    sent = [await producer.send(topic, b"row", partition=0)
                            for _ in range(n)]
                    await asyncio.gather(*sent)
            finally:
                await producer.stop()

        asyncio.run(write())
        yield bootstrap, topic


def test_true_ends_counts_every_record_of_the_last_batch(changelog):
    bootstrap, topic = changelog
    tps = [TP(topic, 0), TP(topic, 1)]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        reported = {TP(tp.topic, tp.partition): end for tp, end in consumer.end_offsets(
            [TopicPartition(tp.topic, tp.partition) for tp in tps]).items()}
        ends = true_ends(consumer, reported)
    finally:
        consumer.close()
    assert ends == {tps[0]: sum(BATCHES), tps[1]: 0}
    if not os.environ.get(BOOTSTRAP_ENV):  # Tansu, the case `true_ends` is for: its answer
        # stops at the last batch's first record (4), so it says 5; a cluster named by
        # KAFKA_BOOTSTRAP_SERVERS may well say 9, and `true_ends` must agree with it then
        assert reported[tps[0]] == sum(BATCHES[:-1]) + 1


def test_records_held_counts_every_record_of_the_last_batch_and_no_topic_as_none(changelog):
    """A replay into a running platform says how many requests it holds already: on Tansu the
    partitions' reported ends summed said 8 where ~186 were held."""
    bootstrap, topic = changelog
    assert records_held(bootstrap, (topic, "no-such-topic")) == {topic: sum(BATCHES),
                                                                 "no-such-topic": None}


class _FaustConsumer:
    """What Faust's recovery asks its consumer, answered as Faust's aiokafka driver does:
    ListOffsets (`AIOKafkaConsumerThread._highwaters`)."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer

    async def highwaters(self, *tps: Any) -> Any:
        return await self.consumer.end_offsets([AioTopicPartition(t.topic, t.partition)
                                                for t in tps])


def test_recovery_reads_a_changelog_up_to_its_last_record(changelog):
    bootstrap, topic = changelog
    guard_recovery(bootstrap, {})
    app = faust.App("recovery-test", broker=f"kafka://{bootstrap}")
    recovery = app.tables.recovery
    tps = {TP(topic, 0), TP(topic, 1)}
    highwaters: Counter = Counter()

    async def go() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await recovery._build_highwaters(_FaustConsumer(consumer), tps, highwaters,
                                             "active")
        finally:
            await consumer.stop()

    asyncio.run(go())
    # Faust's highwater is the offset of the last record to read; -1 for an empty partition.
    assert highwaters == {TP(topic, 0): sum(BATCHES) - 1, TP(topic, 1): -1}


def test_the_hospitals_read_only_answers_sent_after_they_began(changelog):
    bootstrap, topic = changelog
    consumer = response_consumer(bootstrap, topic=topic)
    try:
        assert consumer.poll(timeout_ms=500) == {}  # none of the batches written before
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        producer.send(topic, b"answer", partition=0)
        producer.close()
        got = [r.offset for records in consumer.poll(timeout_ms=3000).values()
               for r in records]
    finally:
        consumer.close()
    assert got == [sum(BATCHES)]
