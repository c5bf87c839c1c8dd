"""A write the cluster did not take stops the worker before it can commit past it.

The roles send their answers, forwards and dead letters without waiting for each to be
acknowledged (streams/role.py: an event costs no round trip), and Faust writes the tables'
changelogs the same way. aiokafka reports a write that finally failed (a record the broker
refuses, say over a topic's `max.message.bytes`; a denied topic; a partition without a leader
past the producer's time-out) only to that write's future, which nobody waits on. Faust
flushes the producer before it commits, but a flush waits for the batches to end, not for
them to succeed: the offsets were committed all the same, and the request was neither
answered nor dead-lettered, with no redelivery to bring it back. Likewise a send that raised
(no room in the producer's buffer, no metadata for the topic, for as long as the producer's
time-out) crashed the role's agent after it had taken the event.

With `install()`, the first failed batch ends the worker at once, before any later commit,
as does a send that raises in a role's agent (streams/role.py) or while Faust's buffer hands
a table write to the producer (streams/faust_offsets.py): exit status 75 (EX_TEMPFAIL), and
one log line naming the topic and the error's type, never a record. Its supervisor
(Compose's `restart: unless-stopped`, or an operator's) starts it again; the events since
the last commit are redelivered, and the per-person rows absorb what they repeat
(docs/streams.md), so nothing is lost and nothing is charged twice.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NoReturn

from aiokafka.producer.message_accumulator import MessageBatch

#: The worker's exit status after a write the cluster did not take (sysexits' EX_TEMPFAIL):
#: start it again once the cluster takes writes.
LOST_WRITE_EXIT = 75

log = logging.getLogger("huimin.streams")

_original_failure = MessageBatch.failure


def stop_for_lost_write(topic: str, exc: BaseException) -> NoReturn:
    """End the process now: no clean stop, since a clean stop commits offsets."""
    log.critical("a write to %s failed (%s): stopping before any further commit, so that "
                 "the events it served are taken again after a restart (exit %d)",
                 topic, type(exc).__name__, LOST_WRITE_EXIT)
    logging.shutdown()
    os._exit(LOST_WRITE_EXIT)


def stop_for_stalled_writes(waiting: int, waited_s: float) -> NoReturn:
    """End the process now, as for a lost write: table writes that the producer has not
    taken for minutes while the cluster answers are not likely to be (a rebalance waits on
    them, and the worker would hold its partitions idle until the producer's own time-out,
    Faust's 20 minutes, ended it the same way)."""
    log.critical("a commit has waited %.0f s for %d table writes the producer never took, "
                 "while the cluster answers: stopping before any further commit, so that the "
                 "events they served are taken again after a restart (exit %d)",
                 waited_s, waiting, LOST_WRITE_EXIT)
    logging.shutdown()
    os._exit(LOST_WRITE_EXIT)


def _failure_stops_the_worker(self: MessageBatch, exception: Any) -> None:
    _original_failure(self, exception)
    stop_for_lost_write(self._tp.topic, exception)


def install() -> None:
    """For this process's aiokafka producers (a worker's): every failed batch stops it."""
    MessageBatch.failure = _failure_stops_the_worker
