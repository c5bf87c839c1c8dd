"""Reading `dead.letters` from a cluster, for `huimin dead-letters`: every message kept
there from the topic's start, described by messages/dead_letters.py, and, when following,
those that arrive after."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from messages.dead_letters import DeadLetterEntry, describe_dead_letter, header_values
from messages.topics import DEAD_LETTERS
from streams.offset_gaps import GapGuard
from streams.partition_ends import true_ends

#: How long one poll waits for more when the topic's end has not been reached yet.
POLL_MS = 500
#: Following, how long the topic may stay quiet before the reader asks whether the cluster
#: is still there, and how long it waits for the answer: a killed or frozen broker left
#: `--follow` waiting in silence, as if no dead letter came (a user's review, 12-06).
ASK_WHEN_QUIET_S = 10.0
ANSWER_WITHIN_MS = 5_000


class TopicMissing(LookupError):
    """The cluster has no `dead.letters` topic: the platform's topics were never created."""


def read_dead_letters(bootstrap: str, follow: bool = False,
                      client_config: dict[str, Any] | None = None,
                      stopped: Callable[[], bool] = lambda: False,
                      timeout_s: float = 5.0,
                      on_contact: Callable[[bool], object] = lambda answered: None
                      ) -> Iterator[DeadLetterEntry]:
    """Every dead letter from the start of the topic to its end as it is now, partition by
    partition in offset order; with `follow`, then those that arrive, until `stopped()`,
    telling `on_contact` whether the cluster answered each time the topic has been quiet for
    `ASK_WHEN_QUIET_S`. Joins no consumer group and commits nothing: reading changes nothing
    on the cluster."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             metrics_enabled=False, client_id="huimin-dead-letters",
                             **(client_config or {}))
    try:
        deadline = time.monotonic() + timeout_s
        while not (parts := consumer.partitions_for_topic(DEAD_LETTERS)):  # asks the cluster
            if time.monotonic() > deadline:
                raise TopicMissing(f"the cluster at {bootstrap} has no topic {DEAD_LETTERS} "
                                   "(the platform's topics are made by `huimin topics`)")
            time.sleep(0.2)
        tps = [TopicPartition(DEAD_LETTERS, p) for p in sorted(parts)]
        # where each partition ends now; Tansu reports ends short (streams/partition_ends.py)
        # the starts first: `true_ends` assigns only the partitions with records, and
        # kafka-python then may leave an empty one out of `beginning_offsets` (a KeyError)
        starts = consumer.beginning_offsets(tps)  # past what retention deleted
        ends = true_ends(consumer, consumer.end_offsets(tps))
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        reader = GapGuard(consumer)  # every worker writes every partition (streams/offset_gaps.py)
        left = {tp for tp in tps if ends[tp] > starts[tp]}
        heard = time.monotonic()
        while (left or follow) and not stopped():
            for rec in reader.poll(POLL_MS):
                heard = time.monotonic()
                yield describe_dead_letter(rec.value, header_values(rec.headers),
                                           rec.partition, rec.offset, rec.timestamp)
            # read to the end, also where the last records were a control batch or deleted
            left = {tp for tp in left if consumer.position(tp) < ends[tp]}
            if follow and time.monotonic() - heard >= ASK_WHEN_QUIET_S:
                on_contact(cluster_answers(consumer, tps))
                heard = time.monotonic()
    finally:
        consumer.close()


def cluster_answers(consumer: KafkaConsumer, tps: list[TopicPartition]) -> bool:
    """Whether the cluster tells where the partitions end within `ANSWER_WITHIN_MS`."""
    try:
        consumer.end_offsets(tps, timeout_ms=ANSWER_WITHIN_MS)
    except KafkaError:
        return False
    return True
