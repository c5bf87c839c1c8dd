"""Whether a worker reaches its Kafka cluster, asked every few seconds.

A worker whose broker is gone or frozen still answers its scrapes: its lag stays at the last
it saw, nothing is in flight, its answer counters stand still. The dashboard read idle and
healthy, and no alert fired unless the hospital simulator was scraped (an operator's review,
2026-12-06: a broker frozen for 25 s). So each worker asks the cluster for the metadata of
`hosp.requests` alone (a request of a few bytes) through its producer's client, to the
brokers every answer goes to, and says in `huimin_cluster_reachable` and in its log whether
it got an answer.

It asks on the client's coordination connections, which a producer without transactions
never uses: its produce requests hold the default ones, and a broker answers a connection's
requests in order, so an ask queued behind a slow write read as silence (a review of 12-06:
writes held 5 s behind a proxy gave the ERROR on a cluster answering in milliseconds). It
asks every broker it knows at once, and one answer is enough: asked in turn, one frozen
broker of three used up the time and the gauge flapped. And it takes two asks in a row
unanswered to call the cluster silent: a worker's loop held up for seconds by its own work
(the time counts against the ask) is not a cluster gone."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka.client import ConnectionGroup
from aiokafka.protocol.metadata import MetadataRequest

from messages import topics
from streams import metrics

log = logging.getLogger("huimin.streams")

#: How often a worker asks.
ASK_EVERY_S = 5.0
#: How long an answer may take: a broker answers a metadata request in milliseconds, even
#: saturated (asked on a connection no produce or fetch request waits on).
ANSWER_WITHIN_S = 4.0
#: How many asks in a row must go unanswered before the cluster is called silent.
SILENT_AFTER = 2
#: While the cluster stays silent, the log says so again this often.
REMIND_EVERY_S = 60.0
#: When this process's contact last heard the cluster answer (monotonic; None: no contact).
_last_answer: list[float | None] = [None]


def answered_within(seconds: float) -> bool:
    """Whether the cluster answered this worker's asks lately: a wait on it that goes on
    meanwhile is the worker's own, not the cluster's (streams/faust_offsets.py)."""
    last = _last_answer[0]
    return last is not None and time.monotonic() - last <= seconds


class ClusterContact:
    """The cluster's answers to this worker, kept in the gauge and told in the log once when
    `SILENT_AFTER` asks in a row went unanswered, every `REMIND_EVERY_S` while it stays
    silent, and once when it answers again (with how long it was gone)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.silent_since: float | None = None  # monotonic, while called silent
        #: when it last answered (monotonic): what a silence is counted from, asks taking
        #: up to ANSWER_WITHIN_S and two going unanswered before it is called one
        self.last_answer = _last_answer[0] = time.monotonic()
        self._reminded = 0.0
        self._unanswered = 0  # asks in a row
        metrics.CLUSTER_REACHABLE.set(1)  # a worker starts only once it has reached it

    async def ask(self, client: Any) -> bool:
        """Ask the cluster through `client` (an aiokafka client; None before the producer has
        started: nothing is asked) and record the outcome; whether it answered."""
        if client is None:
            return True
        try:
            await _any_broker_answers(client, ANSWER_WITHIN_S)
        except Exception as exc:  # a timeout, a refused connection, no broker known
            self.unanswered(type(exc).__name__)
            return False
        self.answered()
        return True

    def unanswered(self, why: str) -> None:
        self._unanswered += 1
        if self._unanswered < SILENT_AFTER:
            return
        now = time.monotonic()
        metrics.CLUSTER_REACHABLE.set(0)
        if self.silent_since is None:
            self.silent_since = self._reminded = now
            log.error("the Kafka cluster at %s does not answer this worker (%s, %d asks in a "
                      "row): requests wait on it and nothing is answered until it does",
                      self.bootstrap, why, self._unanswered)
        elif now - self._reminded >= REMIND_EVERY_S:
            self._reminded = now
            log.error("the Kafka cluster at %s has not answered this worker for %.0f s",
                      self.bootstrap, now - self.last_answer)

    def answered(self) -> None:
        self._unanswered = 0
        metrics.CLUSTER_REACHABLE.set(1)
        now = time.monotonic()
        if self.silent_since is not None:
            log.warning("the Kafka cluster at %s answers this worker again, after %.0f s "
                        "without", self.bootstrap, now - self.last_answer)
            self.silent_since = None
        self.last_answer = _last_answer[0] = now


async def _any_broker_answers(client: Any, within_s: float) -> None:
    """Returns once one of the brokers the client knows answers a metadata request, all of
    them asked at once; raises if none does within `within_s` (a TimeoutError) or each
    failed (its error)."""
    nodes = [b.nodeId for b in client.cluster.brokers()]
    if not nodes:
        raise ConnectionError("no broker known")
    request = MetadataRequest([topics.HOSP_REQUESTS], allow_auto_topic_creation=False)
    asks = {asyncio.ensure_future(client.send(node, request, group=ConnectionGroup.COORDINATION))
            for node in nodes}
    deadline = asyncio.get_running_loop().time() + within_s
    problem: BaseException = TimeoutError()
    try:
        while asks:
            left = deadline - asyncio.get_running_loop().time()
            done, asks = await asyncio.wait(asks, timeout=max(left, 0),
                                            return_when=asyncio.FIRST_COMPLETED)
            if not done:
                raise TimeoutError()
            failures = [ask.exception() for ask in done]  # each retrieved: none left unread
            if None in failures:
                return
            problem = failures[-1] or problem
        raise problem
    finally:
        for ask in asks:
            ask.cancel()
