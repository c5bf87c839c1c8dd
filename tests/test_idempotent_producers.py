"""Producers are idempotent where the broker offers it (Apache Kafka), not on Tansu."""

from __future__ import annotations

from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.faust_tuning import set_idempotent_producer


class _App:
    in_transaction = False


class _Producer:
    app = _App()


def test_faust_producers_are_idempotent_only_when_asked():
    try:
        set_idempotent_producer(True)
        extra = faust_aiokafka.Producer._settings_extra(_Producer())
        assert extra == {"acks": "all", "enable_idempotence": True}
        set_idempotent_producer(False)
        assert faust_aiokafka.Producer._settings_extra(_Producer()) == {}
    finally:
        set_idempotent_producer(False)
