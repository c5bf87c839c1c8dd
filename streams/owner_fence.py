"""A fence against late writes of a worker that lost its partitions, in the tables' changelogs.

A worker starved of CPU can miss its heartbeats and be removed from the consumer group while
it is still processing. Its offset commits are then refused (the group fences those), but its
table writes are plain produce requests: they can reach a changelog after the partition's new
owner has written newer rows for the same people. Nothing reads them at once (a worker never
reads back the changelog of a partition it serves), but the next recovery of that partition
(a restart, a rebalance, a standby) would apply the old owner's stale row over the newer one:
a settlement's effect on a balance lost, money that could be spent twice.

Each changelog write therefore says who wrote it, in a header: the writer's consumer-group
generation, and when this process began writing in that generation. A record is applied
unless a record earlier in its changelog partition (or a write of this worker to it) came
from a newer owner. Within a group's life generations only grow, and a worker that leaves a
rebalance in good order flushes its writes and commits before the group moves on
(streams/faust_offsets.py), so an older generation after a newer one can only be a removed
owner's late write. Its message was not committed (the group refused the commit), so the new
owner processes it again and writes its own row: refusing the stale copy loses nothing.

A group can also begin again at generation 1: Kafka forgets a group left empty for the offsets'
retention (7 days by default), and operators delete groups to reset offsets. Writes of the new
group's workers are then of a lower generation but began later, and are applied: a record is
refused only if its generation is older *and* it began no later. Across hosts that compares
clocks; a skew larger than the time between two owners' assignments lets a late write through
(as before the fence), it never refuses a current one.

Records without the header (written before it existed) are applied as before. What a
partition's newest owner was is known from what this worker read or wrote since it started; a
RocksDB table that resumes its recovery from the offset it remembers reads the record at that
offset again to learn it (docs/streams.md, "Workers that lost their partitions").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from faust.tables.base import Collection

from streams import metrics

log = logging.getLogger("huimin.streams.fence")

OWNER_HEADER = "huimin-owner"


@dataclass(frozen=True, slots=True)
class Writer:
    """Who wrote a changelog record: the consumer-group generation, and when (ms since the
    epoch) the writing process first wrote in it."""

    generation: int
    since_ms: int

    def superseded_by(self, newer: Writer) -> bool:
        """Whether `newer` took the partition over from this writer: a later generation of
        the same group's life (a new life starts at a low generation, but later)."""
        return self.generation < newer.generation and self.since_ms <= newer.since_ms

    def header(self) -> tuple[str, bytes]:
        return OWNER_HEADER, f"{self.generation}:{self.since_ms}".encode()


def writer_of(headers: Sequence[tuple[str, bytes]] | dict[str, bytes] | None) -> Writer | None:
    """Who wrote a changelog record, if it says."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if key == OWNER_HEADER:
            try:
                generation, since_ms = value.decode().split(":")
                return Writer(int(generation), int(since_ms))
            except (AttributeError, UnicodeDecodeError, ValueError):
                return None
    return None


class ChangelogFence:
    """Which records of one table's changelog to apply: per partition, its newest owner seen
    so far, in the order the records were written. Pure bookkeeping."""

    def __init__(self) -> None:
        self._newest: dict[int, Writer] = {}
        self._last_offset: dict[int, int] = {}

    def wrote(self, partition: int, writer: Writer) -> None:
        """This worker wrote to `partition` (it does not read its own writes back while it
        serves the partition)."""
        newest = self._newest.get(partition)
        if newest is None or not writer.superseded_by(newest):
            self._newest[partition] = writer

    def admit(self, partition: int, offset: int, writer: Writer | None) -> bool:
        """Whether to apply the record at `offset`. Reading a partition again from an earlier
        offset (a later recovery from the start) starts its bookkeeping over."""
        if offset <= self._last_offset.get(partition, -1):
            self._newest.pop(partition, None)
        self._last_offset[partition] = offset
        if writer is None:
            return True
        newest = self._newest.get(partition)
        if newest is not None and writer.superseded_by(newest):
            return False
        self._newest[partition] = writer
        return True


_fences: dict[str, ChangelogFence] = {}
_writing: list[Any] = [None, None]  # this process's current Writer and its headers
_original_apply_changelog_batch = Collection.apply_changelog_batch
_original_persisted_offset = Collection.persisted_offset


def _fence_of(table: Any) -> ChangelogFence:
    fence = _fences.get(table.name)
    if fence is None:
        fence = _fences[table.name] = ChangelogFence()
    return fence


def _send_changelog(self: Any, partition: int | None, key: Any, value: Any,
                    key_serializer: Any = None, value_serializer: Any = None) -> Any:
    """Faust's changelog write, saying who wrote it in a header."""
    writer, headers = _writing
    if writer is None or writer.generation != self.app.consumer_generation_id:
        writer = Writer(self.app.consumer_generation_id, int(time.time() * 1000))
        headers = [writer.header()]
        _writing[:] = [writer, headers]
    if partition is not None:
        _fence_of(self).wrote(partition, writer)
    return self.changelog_topic.send_soon(
        key=key, value=value, partition=partition, headers=headers,
        key_serializer=key_serializer or self.key_serializer,
        value_serializer=value_serializer or self.value_serializer,
        callback=self._on_changelog_sent, eager_partitioning=True)


def _apply_changelog_batch(self: Any, batch: Iterable[Any]) -> None:
    """Faust's recovery and standby step, without the records the fence refuses."""
    fence = _fence_of(self)
    admitted = []
    for event in batch:
        message = event.message
        writer = writer_of(message.headers)
        if fence.admit(message.partition, message.offset, writer):
            admitted.append(event)
            continue
        metrics.FENCED_RECORDS.labels(self.name).inc()
        log.warning("refused a late write to %s[%d] (offset %d) of generation %d, after a "
                    "newer owner's", message.topic, message.partition, message.offset,
                    writer.generation if writer else -1)
    _original_apply_changelog_batch(self, admitted)


def _persisted_offset(self: Any, tp: Any) -> int | None:
    """Where a RocksDB table resumes its recovery: one record before the last it applied
    (re-applying it changes nothing), so that the fence learns that record's writer and
    refuses an older owner's late write that follows it. Faust reads on from the record after
    the offset returned; a memory table has none and reads its changelog whole."""
    offset = _original_persisted_offset(self, tp)
    return None if offset is None else offset - 1


def guard_changelogs() -> None:
    """Install the fence on every table of this process. Idempotent."""
    Collection.send_changelog = _send_changelog  # type: ignore[method-assign]
    Collection.apply_changelog_batch = _apply_changelog_batch  # type: ignore[method-assign]
    Collection.persisted_offset = _persisted_offset  # type: ignore[method-assign]
