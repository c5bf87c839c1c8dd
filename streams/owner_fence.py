"""A fence against late writes of a worker that lost its partitions, in the tables' changelogs.

A worker starved of CPU can miss its heartbeats and be removed from the consumer group while
it is still processing. Its offset commits are then refused (the group fences those), but its
table writes are plain produce requests: they can reach a changelog after the partition's new
owner has written newer rows for the same people. Nothing reads them at once (a worker never
reads back the changelog of a partition it serves), but the next recovery of that partition
(a restart, a rebalance, a standby) would apply the old owner's stale row over the newer one:
a settlement's effect on a balance lost, money that could be spent twice.

Each changelog write therefore carries the writer's consumer-group generation in a header,
and a record is applied only if no record earlier in its changelog partition came from a
newer generation. Generations only grow, and a worker that leaves a rebalance in good order
flushes its writes and commits before the group moves on (streams/faust_offsets.py), so a
record of an older generation after a newer one can only be a removed owner's late write. Its
event was not committed (the group refused the commit), so the new owner processes it again
and writes its own row: refusing the stale copy loses nothing.

Records without the header (written before it existed) are applied as before. The highest
generation of a partition is known from what this worker read or wrote since it started; a
RocksDB table that resumes its recovery from the offset it remembers reads the record at that
offset again to learn it (docs/streams.md, "Workers that lost their partitions").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from faust.tables.base import Collection

from streams import metrics

log = logging.getLogger("huimin.streams.fence")

OWNER_HEADER = "huimin-owner-generation"


class ChangelogFence:
    """Which records of one table's changelog to apply: per partition, the highest writer
    generation seen so far, in the order the records were written. Pure bookkeeping."""

    def __init__(self) -> None:
        self._highest: dict[int, int] = {}
        self._last_offset: dict[int, int] = {}

    def wrote(self, partition: int, generation: int) -> None:
        """This worker wrote to `partition` in `generation` (it does not read its own writes
        back while it serves the partition)."""
        self._highest[partition] = max(generation, self._highest.get(partition, generation))

    def admit(self, partition: int, offset: int, generation: int | None) -> bool:
        """Whether to apply the record at `offset`. Reading a partition again from an earlier
        offset (a later recovery from the start) starts its bookkeeping over."""
        if offset <= self._last_offset.get(partition, -1):
            self._highest.pop(partition, None)
        self._last_offset[partition] = offset
        if generation is None:
            return True
        highest = self._highest.get(partition)
        if highest is not None and generation < highest:
            return False
        self._highest[partition] = generation
        return True


def writer_generation(headers: Sequence[tuple[str, bytes]] | dict[str, bytes] | None
                      ) -> int | None:
    """The generation a changelog record was written in, if it says."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if key == OWNER_HEADER:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


_fences: dict[str, ChangelogFence] = {}
_headers_of_generation: dict[int, list[tuple[str, bytes]]] = {}
_original_apply_changelog_batch = Collection.apply_changelog_batch
_original_persisted_offset = Collection.persisted_offset


def _fence_of(table: Any) -> ChangelogFence:
    fence = _fences.get(table.name)
    if fence is None:
        fence = _fences[table.name] = ChangelogFence()
    return fence


def _send_changelog(self: Any, partition: int | None, key: Any, value: Any,
                    key_serializer: Any = None, value_serializer: Any = None) -> Any:
    """Faust's changelog write, with the writer's generation in a header."""
    generation = self.app.consumer_generation_id
    headers = _headers_of_generation.get(generation)
    if headers is None:
        headers = _headers_of_generation[generation] = [
            (OWNER_HEADER, str(generation).encode())]
    if partition is not None:
        _fence_of(self).wrote(partition, generation)
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
        generation = writer_generation(message.headers)
        if fence.admit(message.partition, message.offset, generation):
            admitted.append(event)
            continue
        metrics.FENCED_RECORDS.labels(self.name).inc()
        log.warning("refused a late write to %s[%d] (offset %d) of generation %s, after a "
                    "write of a newer one", message.topic, message.partition, message.offset,
                    generation)
    _original_apply_changelog_batch(self, admitted)


def _persisted_offset(self: Any, tp: Any) -> int | None:
    """Where a RocksDB table resumes its recovery: one record before the last it applied
    (re-applying it changes nothing), so that the fence learns that record's generation and
    refuses an older owner's late write that follows it. Faust reads on from the record after
    the offset returned; a memory table has none and reads its changelog whole."""
    offset = _original_persisted_offset(self, tp)
    return None if offset is None else offset - 1


def guard_changelogs() -> None:
    """Install the fence on every table of this process. Idempotent."""
    Collection.send_changelog = _send_changelog  # type: ignore[method-assign]
    Collection.apply_changelog_batch = _apply_changelog_batch  # type: ignore[method-assign]
    Collection.persisted_offset = _persisted_offset  # type: ignore[method-assign]
