"""A failed metadata update waits out the client's retry backoff before it is reported.

With its cluster gone, a worker that had writes in hand took a whole core for as long as the
cluster stayed away (an operations review: 14 s of CPU in 15 s after Apache Kafka was stopped
cleanly, ~9,000 failed connections a second in its log). aiokafka's producer, holding
batches for partitions whose leader it no longer knows, asks for a metadata update and
waits for it, and asks again as soon as it is told; with the broker's port refusing
connections, each update fails at once, so the loop never waits. The Java client backs off
between metadata refreshes (`retry.backoff.ms`); with `install()`, aiokafka's client does too:
an update that reached no broker returns after `retry_backoff_ms` (100 ms), so the producer
asks ~10 times a second, and a cluster that comes back is found within that.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.client import AIOKafkaClient

_original_update = AIOKafkaClient._metadata_update


async def _metadata_update_backing_off(self: AIOKafkaClient, cluster_metadata: Any,
                                       topics: Any) -> bool:
    updated: bool = await _original_update(self, cluster_metadata, topics)
    if not updated:
        await asyncio.sleep(self._retry_backoff)
    return updated


def install() -> None:
    AIOKafkaClient._metadata_update = _metadata_update_backing_off
