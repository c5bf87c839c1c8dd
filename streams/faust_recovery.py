"""Faust's table recovery, mended to read a changelog to its true end on Tansu.

On a rebalance Faust recovers each table partition it is given by reading its changelog up
to the partition's end, asked of the broker (ListOffsets), and only then resumes the streams.
Tansu answers that question wrongly: it gives the base offset of the partition's last record
batch plus one, not the offset after the batch's last record. The Kafka producer batches a
changelog's writes (a batch of 3 at offsets 0-2 gives an end of 1), so recovery stopped up to
a batch short of the end, and the streams resumed on rows that lacked their last writes.

The records past that false end still came, in the same fetch as the one recovery ended on,
and Faust kept them in the table's recovery buffer, which it applies only when 1,000 records
have gathered (standby records fill it within seconds) or at the next rebalance: then they
were written over rows the streams had changed since. A visit vanished that way from a
treatment row 0.13 s after a 2303 had found it (docs/streams.md), 1 run in 79 of the loaded
fault scenario.

A fetch's high watermark is right on Tansu, so here the end of each partition Faust asks
about is checked with a fetch from the offset before the end ListOffsets gave, which returns
the partition's last batch; the recovery then reads up to the true end. On Apache Kafka the
two agree and nothing changes. The check costs a consumer's start and one fetch per rebalance
(~20 ms on Tansu), and nothing when every changelog is empty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from faust.tables.base import Collection
from faust.tables.recovery import Recovery
from faust.types import TP
from kafka import KafkaConsumer, TopicPartition

log = logging.getLogger("huimin.streams.recovery")

#: How long to wait for the fetches that find the true ends (Faust allows the whole step
#: `broker_request_timeout`, 10 s here). A partition not answered in time keeps the end the
#: broker gave, with a warning.
TRUE_END_WAIT_S = 5.0

_original_build_highwaters = Recovery._build_highwaters
_original_on_changelog_event = Collection.on_changelog_event
_client: dict[str, Any] = {}  # kafka-python options of the worker's cluster (guard_recovery)


def true_ends(consumer: KafkaConsumer, ends: Mapping[TP, int],
              wait_s: float = TRUE_END_WAIT_S) -> dict[TP, int]:
    """The end of each partition in `ends` (the offset after its last record), from the high
    watermark of a fetch from just before the end the broker reported. `consumer` is not in a
    group; its assignment is replaced."""
    out = dict(ends)
    probe = {TopicPartition(tp.topic, tp.partition): tp for tp, end in ends.items() if end > 0}
    if not probe:
        return out
    consumer.assign(list(probe))
    for tp, faust_tp in probe.items():
        consumer.seek(tp, ends[faust_tp] - 1)
    answered: set[TopicPartition] = set()
    deadline = time.monotonic() + wait_s
    while len(answered) < len(probe) and (left := deadline - time.monotonic()) > 0:
        answered.update(consumer.poll(timeout_ms=int(left * 1000)).keys())
    for tp, faust_tp in probe.items():
        watermark = consumer.highwater(tp)
        if tp not in answered or watermark is None:
            log.warning("could not check the end of %s[%d]; recovery trusts the broker's",
                        tp.topic, tp.partition)
        elif watermark > ends[faust_tp]:
            out[faust_tp] = watermark
    return out


def _checked_ends(reported: Mapping[TP, int]) -> dict[TP, int]:
    """`true_ends` with a consumer of our own (Faust's may not be moved off the positions it
    recovers from). kafka-python, in a thread: an aiokafka consumer on the worker's loop,
    started and stopped within Faust's recovery step, did not return from its stop."""
    consumer = KafkaConsumer(enable_auto_commit=False, fetch_max_wait_ms=100, **_client)
    try:
        return true_ends(consumer, reported)
    finally:
        consumer.close()


async def _build_highwaters(self: Recovery, consumer: Any, tps: Any, destination: Any,
                            title: str) -> None:
    """Faust's step, then each highwater (the last offset to read) moved to the true end."""
    await _original_build_highwaters(self, consumer, tps, destination, title)
    reported = {tp: last + 1 for tp, last in destination.items() if last is not None}
    if not any(reported.values()):
        return
    ends = await asyncio.to_thread(_checked_ends, reported)
    moved = {tp: end for tp, end in ends.items() if end != reported[tp]}
    for tp, end in moved.items():
        destination[tp] = end - 1
    if moved:
        log.info("%s changelog partitions end past what the broker reported: %s", title,
                 ", ".join(f"{tp.topic}[{tp.partition}] {reported[tp]} -> {end}"
                           for tp, end in sorted(moved.items())))


async def _on_changelog_event(self: Any, event: Any) -> None:
    """A changelog record of a partition this worker serves, after its recovery ended, would
    wait in the recovery buffer and be applied later over live rows. With the true ends it
    should not happen; if it does, say so (topic, partition and offset only)."""
    recovery = self.app.tables.recovery
    tp = event.message.tp
    if tp in recovery.active_tps and not recovery.in_recovery:
        log.warning("a record of %s[%d] (offset %d) came after the partition was recovered, "
                    "to the end at %s", tp.topic, tp.partition, event.message.offset,
                    recovery.active_highwaters.get(tp))
    await _original_on_changelog_event(self, event)


def guard_recovery(bootstrap: str, client_options: Mapping[str, Any]) -> None:
    """Install the mended steps; the ends are checked on `bootstrap` with these kafka-python
    options (security). Idempotent."""
    _client.clear()
    _client.update(client_options, bootstrap_servers=bootstrap)
    Recovery._build_highwaters = _build_highwaters  # type: ignore[method-assign]
    Collection.on_changelog_event = _on_changelog_event  # type: ignore[method-assign]

