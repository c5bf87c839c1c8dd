"""A failed metadata update waits out the client's retry backoff (streams/metadata_backoff.py):
without it a worker whose cluster had gone (its port refusing connections) took a whole core,
its producer asking for metadata again as soon as the last update failed."""

from __future__ import annotations

import asyncio
import time

from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata

from streams import metadata_backoff


def failed_update_takes_s(retry_backoff_ms: int) -> tuple[bool, float]:
    """How long an update that reaches no broker takes to report it (no broker known)."""
    async def update() -> tuple[bool, float]:
        client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9",
                                retry_backoff_ms=retry_backoff_ms)
        start = time.monotonic()
        updated = await client._metadata_update(ClusterMetadata(), set())
        return updated, time.monotonic() - start
    return asyncio.run(update())


def test_a_metadata_update_that_reached_no_broker_returns_after_the_retry_backoff():
    original = AIOKafkaClient._metadata_update
    try:
        assert failed_update_takes_s(300)[1] < 0.1  # aiokafka's own: at once
        metadata_backoff.install()
        updated, took_s = failed_update_takes_s(300)
        assert updated is False and took_s >= 0.3
    finally:
        AIOKafkaClient._metadata_update = original
