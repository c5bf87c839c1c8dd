"""Faust settings that matter on a Kafka-protocol broker such as Tansu, and idempotent
producers where the broker offers them (Apache Kafka; Tansu does not).

Faust hard-codes `fetch_max_wait_ms=1500` for its worker consumer. Tansu (like Kafka) holds an
empty fetch that long, which adds up to 1.5 s per hop on a quiet partition (Kafka answers as
soon as data arrives; Tansu does not: streams/config.py). aiokafka reads the attribute only when
the consumer starts, so setting it on the freshly built consumer is enough.
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.config import FETCH_WAIT_MS

_original = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
_fetch_max_wait_ms = FETCH_WAIT_MS


def _create_worker_consumer(self, transport):  # type: ignore[no-untyped-def]
    consumer = _original(self, transport)
    consumer._fetch_max_wait_ms = _fetch_max_wait_ms
    return consumer


def set_worker_fetch_max_wait(ms: int) -> None:
    global _fetch_max_wait_ms
    _fetch_max_wait_ms = ms
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer


_original_extra = faust_aiokafka.Producer._settings_extra


def _idempotent_extra(self):  # type: ignore[no-untyped-def]
    return {**_original_extra(self), "acks": "all", "enable_idempotence": True}


def set_idempotent_producer(enabled: bool) -> None:
    """Faust enables idempotence only inside transactions (exactly_once); we want it for
    at-least-once too, so a producer retry never writes a message twice."""
    faust_aiokafka.Producer._settings_extra = _idempotent_extra if enabled else _original_extra
