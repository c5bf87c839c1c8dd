"""Topic creation. Topics are created up front, with one partition count for every
person-keyed topic and for the tables' changelogs (Faust would declare only those it lacks,
with its defaults)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from messages.topics import ALL_TOPICS, DEAD_LETTERS, EHR_AUDIT, HOSP_REQUESTS, HOSP_RESPONSES
from streams.partition_ends import true_ends


def changelog_topics(app_id: str, tables: tuple[str, ...]) -> list[str]:
    return [f"{app_id}-{t}-changelog" for t in tables]


#: Topic settings beyond the partition count. A request's record in hosp.requests carries
#: the broker's time, not the sending hospital's clock: the platform's latency is timed from
#: it (messages/trace.py, `trt.queued`). Apache Kafka honours this; Tansu 0.6 takes the
#: setting and keeps the producer's time.
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    HOSP_REQUESTS: {"message.timestamp.type": "LogAppendTime"},
    # access logs are kept at least six months (网络安全法 art. 21): here, until an operator
    # decides otherwise
    EHR_AUDIT: {"retention.ms": "-1"},
}
#: A table's changelog is kept whole: a worker rebuilds its rows from it, and a person's
#: year-to-date sums and caps outlive Kafka's default 7 days (a worker restarted after a week
#: found its rows gone: an Apache Kafka review). Not compacted: compaction keeps a key's last
#: record, which may be a removed owner's late write that the fence refuses on recovery
#: (streams/owner_fence.py), leaving the row with none.
CHANGELOG_CONFIG = {"retention.ms": "-1", "cleanup.policy": "delete"}


def topic_config(name: str) -> dict[str, str]:
    """The settings huimin creates topic `name` with, beyond its partition count."""
    return CHANGELOG_CONFIG if name.endswith("-changelog") else TOPIC_CONFIGS.get(name, {})


class TopicsRefused(Exception):
    """The cluster would not create a topic as asked (a replication over its brokers, too
    many partitions): the message says which and why."""


def ensure_topics(bootstrap: str, names: list[str] | tuple[str, ...] = ALL_TOPICS,
                  partitions: int = 8, replication: int = 1, timeout: float = 30.0,
                  client_config: dict[str, Any] | None = None) -> None:
    """Create the topics that do not exist yet (with `topic_config`); wait until the broker
    lists all of them."""
    deadline = time.monotonic() + timeout
    admin = _admin(bootstrap, deadline, client_config)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        for name in missing:
            try:
                admin.create_topics([NewTopic(name, partitions, replication,
                                              topic_configs=topic_config(name))])
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:  # a setting the cluster cannot meet: said, not a trace
                raise TopicsRefused(
                    f"the cluster at {bootstrap} refused to create topic {name} "
                    f"(partitions {partitions}, replication {replication}): "
                    f"{getattr(exc, 'description', '') or exc}") from None
        while set(names) - set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics not created: {sorted(set(names) - existing)}")
            time.sleep(0.1)
    finally:
        admin.close()


def _admin(bootstrap: str, deadline: float,
           client_config: dict[str, Any] | None = None) -> KafkaAdminClient:
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="huimin-admin",
                                    request_timeout_ms=10_000, **(client_config or {}))
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


#: Topics read whole by whoever reads them (the hospitals, `huimin dead-letters`, an audit
#: reader): any partition count serves.
ANY_COUNT = frozenset({HOSP_RESPONSES, DEAD_LETTERS, EHR_AUDIT})


def platform_topics(partitions: int) -> dict[str, int]:
    """Every topic the platform uses, changelogs included, with its partition count: one for
    the clearing ones, `partitions` for the rest (a person's messages and rows share their
    partition number)."""
    from messages.topics import MONEY_EVENTS, RECON_REQUESTS
    from streams.config import CLEARING_TABLE, RECON_TABLE, TABLES, WorkerConfig

    app_id = WorkerConfig(bootstrap="").app_id
    single = [MONEY_EVENTS, RECON_REQUESTS,
              *changelog_topics(app_id, (CLEARING_TABLE, RECON_TABLE))]
    keyed = [*ALL_TOPICS, *changelog_topics(app_id, TABLES)]
    return {**dict.fromkeys(keyed, partitions), **dict.fromkeys(single, 1)}


def create_platform_topics(bootstrap: str, partitions: int = 8, replication: int = 1,
                           client_config: dict[str, Any] | None = None) -> list[str]:
    """Create the platform's topics that do not exist yet. Returns their names."""
    plan = platform_topics(partitions)
    for count in sorted(set(plan.values())):
        ensure_topics(bootstrap, [n for n, c in plan.items() if c == count], count,
                      replication, client_config=client_config)
    return list(plan)


def topic_problems(bootstrap: str, partitions: int,
                   client_config: dict[str, Any] | None = None,
                   wait_s: float = 5.0) -> list[str]:
    """What keeps the platform's topics from serving it, one line each: a topic missing, or
    one with another partition count than the platform needs. A broker that creates topics
    as they are asked for (Apache Kafka's default, and Tansu) gives a worker started before
    `huimin topics` its own default counts; Faust then refuses every event of a table whose
    changelog's count differs, and no request is answered."""
    plan = platform_topics(partitions)
    deadline = time.monotonic() + wait_s  # a broker other than the one that created them may
    admin = _admin(bootstrap, time.monotonic() + 30, client_config)  # learn of them late
    try:
        while True:
            held = {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}
            missing = [n for n in plan if n not in held]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        admin.close()
    problems = [f"missing: {', '.join(missing)}"] if missing else []
    return problems + [f"{name} has {held[name]} partitions, not {want}"
                       for name, want in plan.items() if name in held and held[name] != want
                       and name not in ANY_COUNT]


def settings_drift(bootstrap: str, names: Iterable[str],
                   client_config: dict[str, Any] | None = None
                   ) -> list[tuple[str, str, str, str]]:
    """Of topics `names`, the settings `topic_config` asks for that the cluster holds
    otherwise, as (topic, setting, its value, the value asked for): a topic made before
    huimin made it (a broker creating topics as they are written to), or by an older huimin.
    Empty where the broker does not say (Tansu keeps no such settings)."""
    wanted = {n: c for n in names if (c := topic_config(n))}
    try:
        admin = _admin(bootstrap, time.monotonic() + 10, client_config)
    except KafkaError:  # not judged: whoever asked has reached the cluster, or says it
        return []
    try:
        held = admin.describe_configs([ConfigResource("TOPIC", n, dict.fromkeys(c))
                                       for n, c in wanted.items()], config_filter="all")
    except (KafkaError, ValueError, KeyError, TypeError):  # a broker that cannot tell
        return []
    finally:
        admin.close()
    topics = held.get("topic", {}) if isinstance(held, dict) else {}
    drift = []
    for name, config in wanted.items():
        for key, want in config.items():
            have = (topics.get(name, {}).get(key) or {}).get("value")
            if have is not None and have != want:
                drift.append((name, key, have, want))
    return drift


def settings_advice(bootstrap: str, names: Iterable[str],
                    client_config: dict[str, Any] | None = None) -> list[str]:
    """`settings_drift` as lines for an operator: each setting, and the command that sets it
    (`kafka-configs.sh`, or `java -cp '<kafka>/lib/*' kafka.admin.ConfigCommand` with the
    same arguments: `huimin broker --kind kafka` keeps only the jars)."""
    return [f"{name} has {key}={have}, not {want} as huimin makes it: set it with "
            f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics "
            f"--entity-name {name} --add-config {key}={want}"
            for name, key, have, want in settings_drift(bootstrap, names, client_config)]


def unfit_topics(bootstrap: str, partitions: int, problems: list[str]) -> str:
    """What `topic_problems` found, as the first sentence of every refusal over it (`huimin
    topics`, `worker`, `run`, `bench`); each adds what to do in its own case."""
    return (f"the platform's topics on {bootstrap} do not fit a platform of {partitions} "
            f"partitions a topic: {'; '.join(problems)}.")


def records_in(bootstrap: str, topic: str, client_config: dict[str, Any] | None = None) -> int:
    """How many records `topic` holds (0 if it does not exist): a cluster an earlier run used
    still holds its requests."""
    return records_held(bootstrap, (topic,), client_config)[topic] or 0


def records_held(bootstrap: str, names: Iterable[str],
                 client_config: dict[str, Any] | None = None) -> dict[str, int | None]:
    """How many records each topic holds, None for one the cluster does not have: from each
    partition's start to its true end (Tansu reports an end short of its last batch's
    records: streams/partition_ends.py)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="huimin-admin",
                             enable_auto_commit=False, **(client_config or {}))
    try:
        partitions = {topic: consumer.partitions_for_topic(topic) for topic in names}
        tps = [TopicPartition(topic, p) for topic, ps in partitions.items() for p in ps or ()]
        ends = true_ends(consumer, consumer.end_offsets(tps)) if tps else {}
        starts = consumer.beginning_offsets(tps) if tps else {}
        return {topic: sum(ends[tp] - starts[tp] for tp in tps if tp.topic == topic)
                if ps else None for topic, ps in partitions.items()}
    finally:
        consumer.close()
