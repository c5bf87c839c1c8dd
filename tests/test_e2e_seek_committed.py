"""aiokafka's seek to the committed offsets as mended (streams/faust_offsets.py), on the real
broker: a partition where nothing above 0 was committed goes back to where the group starts
reading, so that what Faust fetched and dropped before the seek is fetched again. As
released, aiokafka left such a partition where it was: a worker stopped before its first
commit, started again, dropped the request waiting for it and never answered it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from kafka import KafkaProducer

from streams.broker import EmbeddedBroker
from streams.faust_offsets import _seek_back
from streams.topics import ensure_topics

pytestmark = pytest.mark.e2e

TP = TopicPartition("waiting", 0)
Seek = Callable[[AIOKafkaConsumer], Awaitable[object]]


async def position_after_seek(bootstrap: str, group: str, commit: int | None,
                              seek: Seek) -> int:
    """Where a consumer of `group` stands after reading the partition's 3 messages,
    committing `commit` (if not None) and seeking to the committed offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TP])
        read: list[int] = []
        for _ in range(50):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                read += [r.offset for r in records]
            if len(read) == 3:
                break
        assert read == [0, 1, 2]
        if commit is not None:
            await consumer.commit({TP: commit})
        await seek(consumer)
        return await consumer.position(TP)
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory):
    with EmbeddedBroker(log_path=Path(tmp_path_factory.mktemp("seek")) / "broker.log") as b:
        ensure_topics(b.bootstrap, [TP.topic], partitions=1)
        producer = KafkaProducer(bootstrap_servers=b.bootstrap)
        for i in range(3):
            producer.send(TP.topic, value=f"request {i}".encode())
        producer.flush()
        producer.close()
        yield b.bootstrap


@pytest.mark.parametrize("commit", [None, 0])
def test_a_partition_with_nothing_above_0_committed_is_read_again_from_its_start(
        bootstrap: str, commit: int | None):
    mended = asyncio.run(position_after_seek(bootstrap, f"mended-{commit}", commit,
                                             lambda c: _seek_back(c, frozenset())))
    assert mended == 0


@pytest.mark.parametrize("commit", [None, 0])
def test_aiokafka_as_released_leaves_it_past_what_was_dropped(bootstrap: str,
                                                              commit: int | None):
    released = asyncio.run(position_after_seek(bootstrap, f"released-{commit}", commit,
                                               AIOKafkaConsumer.seek_to_committed))
    assert released == 3  # so the test above can fail


def test_a_partition_with_a_commit_above_0_is_sought_to_it_as_before(bootstrap: str):
    assert asyncio.run(position_after_seek(bootstrap, "committed-2", 2,
                                           lambda c: _seek_back(c, frozenset()))) == 2


def test_a_table_s_changelog_partition_is_left_to_its_recovery(bootstrap: str):
    """Recovery places a changelog partition itself; sent back to its start after every
    recovery, a worker would read its tables' whole changelogs again."""
    assert asyncio.run(position_after_seek(bootstrap, "changelog", None,
                                           lambda c: _seek_back(c, frozenset({TP.topic})))) == 3
