"""Topic creation. Topics are created up front, with one partition count for every
person-keyed topic and for the tables' changelogs (Faust would declare only those it lacks,
with its defaults)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from messages.topics import ALL_TOPICS, HOSP_REQUESTS


def changelog_topics(app_id: str, tables: tuple[str, ...]) -> list[str]:
    return [f"{app_id}-{t}-changelog" for t in tables]


#: Topic settings beyond the partition count. A request's record in hosp.requests carries
#: the broker's time, not the sending hospital's clock: the platform's latency is timed from
#: it (messages/trace.py, `trt.queued`). Apache Kafka honours this; Tansu 0.6 takes the
#: setting and keeps the producer's time.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    HOSP_REQUESTS: {"message.timestamp.type": "LogAppendTime"},
}


def ensure_topics(bootstrap: str, names: list[str] | tuple[str, ...] = ALL_TOPICS,
                  partitions: int = 8, replication: int = 1, timeout: float = 30.0,
                  client_config: dict[str, Any] | None = None) -> None:
    """Create the topics that do not exist yet (with TOPIC_CONFIGS); wait until the broker
    lists all of them."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="huimin-admin",
                                     request_timeout_ms=10_000, **(client_config or {}))
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        for name in missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, replication,
                                              topic_configs=TOPIC_CONFIGS.get(name, {}))])
        while set(names) - set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not created: {sorted(set(names) - existing)}")
            time.sleep(0.1)
    finally:
        admin.close()


def create_platform_topics(bootstrap: str, partitions: int = 8, replication: int = 1,
                           client_config: dict[str, Any] | None = None) -> list[str]:
    """Every topic the platform uses, changelogs included; the clearing ones have one
    partition. Returns their names."""
    from messages.topics import MONEY_EVENTS, RECON_REQUESTS
    from streams.config import CLEARING_TABLE, TABLES, WorkerConfig

    app_id = WorkerConfig(bootstrap=bootstrap).app_id
    keyed = [*ALL_TOPICS, *changelog_topics(app_id, TABLES)]
    single = [MONEY_EVENTS, RECON_REQUESTS, *changelog_topics(app_id, (CLEARING_TABLE,))]
    ensure_topics(bootstrap, keyed, partitions, replication, client_config=client_config)
    ensure_topics(bootstrap, single, 1, replication, client_config=client_config)
    return keyed + single


def records_in(bootstrap: str, topic: str, client_config: dict[str, Any] | None = None) -> int:
    """How many records `topic` holds (its partitions' end offsets summed; 0 if it does not
    exist): a cluster an earlier run used still holds its requests."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="huimin-admin",
                             **(client_config or {}))
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return 0
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        consumer.close()
