"""The hospitals' answer reader on librdkafka (confluent-kafka), behind the few calls of
kafka-python's consumer that `GapGuard` makes (simulators/librdkafka.py says why librdkafka).

Only the answers are read this way: the dead-letter topic is read every 100 ms and few
messages come, and the setup (the partitions, their true ends on Tansu) stays with
kafka-python (`simulators.hospital.response_consumer`). The consumer names a group, as
librdkafka requires, but never joins it or commits: its partitions are assigned. librdkafka
still looks up the group's coordinator, so on a cluster with ACLs the hospitals' account
needs Describe on the group `huimin-hospitals-answers` (README, secured clusters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import confluent_kafka
from kafka import TopicPartition

from simulators.librdkafka import client_config, client_log

log = client_log("huimin.hospitals.answers")
#: The consumer group librdkafka requires a consumer to name (never joined: README, ACLs).
ANSWERS_GROUP = "huimin-hospitals-answers"


@dataclass(frozen=True, slots=True)
class TailRecord:
    """A record as kafka-python's `ConsumerRecord` shows it, as far as its readers look."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class RdkafkaTail:
    """Partitions read from given offsets on, by librdkafka; `poll` returns records by
    partition, as kafka-python's does."""

    def __init__(self, bootstrap: str, positions: dict[TopicPartition, int],
                 settings: dict[str, Any]) -> None:
        """`positions`: where each partition is read from; `settings`: kafka-python's
        (`simulators.librdkafka.client_config`)."""
        config = {**client_config(bootstrap, settings), "enable.auto.commit": False,
                  "enable.partition.eof": False,
                  # as kafka-python reads: every record, its CRC checked
                  "isolation.level": "read_uncommitted", "check.crcs": True}
        config["group.id"] = ANSWERS_GROUP  # required; never joined (assigned)
        self._consumer = confluent_kafka.Consumer(config, logger=log)
        self._positions = dict(positions)
        self._consumer.assign([confluent_kafka.TopicPartition(tp.topic, tp.partition, offset)
                               for tp, offset in positions.items()])

    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    def position(self, tp: TopicPartition) -> int:
        """Where `tp` was assigned from (all `GapGuard` asks, before its first poll)."""
        return self._positions[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Fetch `tp` again from `offset`. A partition librdkafka is not fetching yet refuses
        a seek; the gap is then seen, and the seek made, again at the next poll."""
        try:
            self._consumer.seek(confluent_kafka.TopicPartition(tp.topic, tp.partition, offset))
        except confluent_kafka.KafkaException as exc:
            log.info("%s[%d]: could not fetch again from %d yet (%s)", tp.topic, tp.partition,
                     offset, exc.args[0].str() if exc.args else exc)

    def pause(self, tp: TopicPartition) -> None:
        self._consumer.pause([confluent_kafka.TopicPartition(tp.topic, tp.partition)])

    def resume(self, tp: TopicPartition) -> None:
        self._consumer.resume([confluent_kafka.TopicPartition(tp.topic, tp.partition)])

    def poll(self, timeout_ms: int, max_records: int | None = None
             ) -> dict[TopicPartition, list[TailRecord]]:
        """The records there are, at most `max_records`, as soon as there is one, waiting
        `timeout_ms` at most for it. (librdkafka's `consume` waits for all it may return or
        for the whole time-out: an answer would be seen up to a poll's wait late.)"""
        first = self._consumer.poll(timeout_ms / 1000)
        if first is None:
            return {}
        more = (max_records or 500) - 1
        out: dict[TopicPartition, list[TailRecord]] = {}
        for m in [first, *(self._consumer.consume(more, timeout=0) if more else ())]:
            if (error := m.error()) is not None:
                log.warning("reading answers: %s", error.str())
                continue
            topic, partition = m.topic(), m.partition()
            out.setdefault(TopicPartition(topic, partition), []).append(
                TailRecord(topic, partition, m.offset(), m.timestamp()[1], m.key(),
                           m.value() or b"", m.headers() or []))
        return out

    def close(self) -> None:
        self._consumer.close()
