"""Each client places a keyed message where Kafka's default partitioner would: a person's
requests, answers and rows must share a partition whoever wrote them."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner as AiokafkaDefault
from kafka.partitioner import DefaultPartitioner as KafkaPythonDefault

from streams.partitioner import choose, key_partition

KEYS = [b"", b"a", b"ab", b"abc", b"H11010600001", b"P110101198001011234",
        *(f"4403{i:014d}".encode() for i in range(200))]


class Metadata:
    """The three questions a kafka-python partitioner asks of the producer's metadata."""

    def __init__(self, topic: str = "", partitions: int = 0) -> None:
        self._partitions = {topic: set(range(partitions))} if topic else {}

    def topics(self) -> set[str]:
        return set(self._partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self._partitions.get(topic)

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions.get(topic, set())


@pytest.mark.parametrize("partitions", [1, 2, 3, 8, 12])
def test_keys_land_where_aiokafkas_default_puts_them(partitions: int) -> None:
    all_partitions = list(range(partitions))
    for key in KEYS:
        assert choose(key, all_partitions, all_partitions) == \
            AiokafkaDefault()(key, all_partitions, all_partitions)


@pytest.mark.parametrize("partitions", [1, 2, 3, 8, 12])
def test_keys_land_where_kafka_pythons_default_puts_them(partitions: int) -> None:
    cluster, theirs = Metadata("hosp.requests", partitions), KafkaPythonDefault()
    for key in KEYS:  # Kafka's default as kafka-python states it
        assert key_partition(key, partitions) == \
            theirs.partition("hosp.requests", None, key, None, None, cluster)


#: murmur2 of these keys as the Java client computes it (Kafka's UtilsTest.testMurmur2): known
#: values, independent of the Python clients (and of the hash kept per key here).
JAVA_MURMUR2 = {b"21": -973932308, b"foobar": -790332482,
                b"a-little-bit-long-string": -985981536,
                b"a-little-bit-longer-string": -1486304829,
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
                b"abc": 479470107}


@pytest.mark.parametrize("partitions", [2, 3, 8, 12, 100])
def test_keys_land_where_the_java_clients_murmur2_puts_them_each_time(partitions: int) -> None:
    for key, java_hash in JAVA_MURMUR2.items():
        expected = (java_hash & 0x7FFFFFFF) % partitions  # Utils.toPositive(murmur2) % n
        # the first time hashes, the repeats come from the kept hash: the same partition
        assert [key_partition(key, partitions) for _ in range(3)] == [expected] * 3, key


def test_a_key_given_as_a_bytearray_lands_with_its_bytes() -> None:
    assert key_partition(bytearray(b"P110101198001011234"), 8) == \
        key_partition(b"P110101198001011234", 8)


def test_a_message_without_a_key_goes_to_an_available_partition() -> None:
    random.seed(7)
    assert {choose(None, [0, 1, 2, 3], [1, 3]) for _ in range(50)} == {1, 3}
    assert {choose(None, [0, 1], []) for _ in range(50)} == {0, 1}

