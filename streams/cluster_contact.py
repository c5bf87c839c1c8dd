"""Whether a worker reaches its Kafka cluster, asked every few seconds.

A worker whose broker is gone or frozen still answers its scrapes: its lag stays at the last
it saw, nothing is in flight, its answer counters stand still. The dashboard read idle and
healthy, and no alert fired unless the hospital simulator was scraped (an operator's review,
2026-12-06: a broker frozen for 25 s). So each worker asks the cluster for the metadata of
`hosp.requests` alone (a request of a few bytes) through its producer's connections, the way
every answer leaves, and says in `huimin_cluster_reachable` and in its log whether it got an
answer."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from aiokafka.protocol.metadata import MetadataRequest

from messages import topics
from streams import metrics

log = logging.getLogger("huimin.streams")

#: How often a worker asks.
ASK_EVERY_S = 5.0
#: How long an answer may take: a broker answers a metadata request in milliseconds, even
#: saturated (its produce and fetch requests go on connections of their own).
ANSWER_WITHIN_S = 4.0
#: While the cluster stays silent, the log says so again this often.
REMIND_EVERY_S = 60.0


class ClusterContact:
    """The cluster's last answer to this worker, kept in the gauge and told in the log once
    when it stops answering, every `REMIND_EVERY_S` while it stays silent, and once when it
    answers again (with how long it was gone)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.silent_since: float | None = None  # monotonic, while unanswered
        self._reminded = 0.0
        metrics.CLUSTER_REACHABLE.set(1)  # a worker starts only once it has reached it

    async def ask(self, client: Any) -> bool:
        """Ask the cluster through `client` (an aiokafka client; None before the producer has
        started: nothing is asked) and record the outcome; whether it answered."""
        if client is None:
            return True
        try:
            await asyncio.wait_for(_any_broker_answers(client), ANSWER_WITHIN_S)
        except Exception as exc:  # a timeout, a refused connection, no broker known
            self.silent(type(exc).__name__)
            return False
        self.answered()
        return True

    def silent(self, why: str) -> None:
        now = time.monotonic()
        metrics.CLUSTER_REACHABLE.set(0)
        if self.silent_since is None:
            self.silent_since = self._reminded = now
            log.error("the Kafka cluster at %s does not answer this worker (%s within %.0f s): "
                      "requests wait on it and nothing is answered until it does",
                      self.bootstrap, why, ANSWER_WITHIN_S)
        elif now - self._reminded >= REMIND_EVERY_S:
            self._reminded = now
            log.error("the Kafka cluster at %s has not answered this worker for %.0f s",
                      self.bootstrap, now - self.silent_since)

    def answered(self) -> None:
        metrics.CLUSTER_REACHABLE.set(1)
        if self.silent_since is not None:
            log.warning("the Kafka cluster at %s answers this worker again, after %.0f s "
                        "without", self.bootstrap, time.monotonic() - self.silent_since)
            self.silent_since = None


async def _any_broker_answers(client: Any) -> None:
    """Returns once one of the brokers the client knows answers a metadata request; raises
    if none can be asked (the caller bounds the time: a frozen broker never answers)."""
    nodes = [b.nodeId for b in client.cluster.brokers()]
    if not nodes:
        raise ConnectionError("no broker known")
    random.shuffle(nodes)
    problem: Exception = ConnectionError("no broker answered")
    for node in nodes:
        try:
            await client.send(node, MetadataRequest([topics.HOSP_REQUESTS],
                                                     allow_auto_topic_creation=False))
            return
        except Exception as exc:  # this broker is down: another may answer
            problem = exc
    raise problem
