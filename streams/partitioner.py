"""Kafka's default partitioning, without hashing the same key over and over.

Every client here places a keyed message as the Java client does: murmur2 of the key bytes,
modulo the topic's partitions, so that a person's requests, answers and rows share a
partition whichever client wrote them (the hospitals' librdkafka producer by its
`murmur2_random`). aiokafka hashes in pure Python, on every send, even into a topic of one
partition (`huimin bench`'s default, and the clearing topics always). The keys repeat: a
person's id on each request, answer and row, a hospital's code on each answer. So the hash
is skipped for a one-partition topic and kept per key otherwise, with the same result as
the default partitioner's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import lru_cache

from kafka.partitioner.default import murmur2

#: Keys whose hash is kept (the most recently used): `huimin bench`'s 20,000 persons and 186
#: hospitals with room to spare, ~9 MiB when full (a million persons' would take ~280 MiB).
HASHES_KEPT = 1 << 15

_hash = lru_cache(maxsize=HASHES_KEPT)(murmur2)


def key_partition(key: bytes | bytearray, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` among `partitions`."""
    if partitions == 1:
        return 0
    return (_hash(key if type(key) is bytes else bytes(key)) & 0x7FFFFFFF) % partitions


def choose(key: bytes | None, all_partitions: Sequence[int],
           available: Sequence[int]) -> int:
    """aiokafka's (and Faust's) partitioner call: the partition of `key`, or any available
    one for a message without a key."""
    if len(all_partitions) == 1:
        return all_partitions[0]
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[key_partition(key, len(all_partitions))]
