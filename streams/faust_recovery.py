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

Here the end of each partition Faust asks about is checked with a fetch
(`streams/partition_ends.py`), and the recovery reads up to the true end. On Apache Kafka the
two agree and nothing changes. The check costs a consumer's start and one fetch per rebalance
(~20 ms on Tansu), and nothing when every changelog is empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from faust.tables.base import Collection
from faust.tables.recovery import Recovery
from faust.types import TP
from kafka import KafkaConsumer

from streams.partition_ends import true_ends

log = logging.getLogger("huimin.streams.recovery")

_original_build_highwaters = Recovery._build_highwaters
_original_on_changelog_event = Collection.on_changelog_event
_client: dict[str, Any] = {}  # kafka-python options of the worker's cluster (guard_recovery)


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
