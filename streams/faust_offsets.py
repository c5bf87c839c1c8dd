"""Faust's offset bookkeeping, mended so that a commit never passes a message no one processed.

faust-streaming 0.15 commits, per partition, the end of the first run of consecutive acked
offsets. Three things let that run start past an unprocessed message around a rebalance:

- **A message skipped as a partition is taken over.** A worker given partitions seeks them
  to their committed offsets and only then resumes its flow. A message fetched in between
  (the fetcher runs while the seek is awaited) reaches the stream while the flow is still
  suspended; the stream skips it, neither processing nor acking it, and nothing fetches it
  again. Caught on a joining worker: `hosp.requests[6]` committed at 59, message 59 fetched
  1 ms after the seek and never processed, 60 onwards processed and acked.
- **An off-by-one.** `Consumer._new_offset` refuses to commit across a gap only when the
  first acked offset is *more than one* past the committed offset; the committed offset is
  the next to read, so a first acked offset of `committed + 1` commits past `committed`,
  which is exactly the skipped message above.
- **Acks of skipped events** in the pure-Python stream iterator (Faust's Cython one, which
  normally runs, does not ack them): an event taken while the flow is suspended or from an
  older consumer generation is acked unprocessed, and a revocation commits past it.

Two more turn a message dropped on its way to the stream into one committed past:

- **Queues cleared by a resume of a running flow.** At the end of a recovery Faust resumes
  the stream partitions, seeks them to their committed offsets and then resumes the flow,
  which clears the streams' queues. But the flow already runs (recovery resumed it to read
  the changelogs), so the fetcher fetched, and the streams queued, messages of the current
  assignment while the seek was awaited; the clear drops those not yet processed. Caught
  with extra logging on a worker restarted after a kill, on Apache Kafka, with a slow stream:
  257 queued requests cleared, 37 never answered. Here a resume clears the queues only if
  the flow was suspended (what is queued may then be of the old assignment).
- **Jumps taken for holes.** Faust takes a jump between the offsets it hands out as offsets
  that hold no message, and counts them as acked. The seek above resets its read offset to
  the committed one while a batch fetched before it is still being handed out, so the next
  offset looks like a jump, and what was dropped in between was committed past. Our topics
  have no holes (no transactions, no compacted sources), so here a jump is not counted: a
  missing offset is fetched again like a skipped one.

- **A seek to committed offsets where nothing above 0 was committed.** Faust drops what it
  fetched while its flow was not running (a worker starting, a recovery ending) and seeks the
  partitions back to their committed offsets, counting on the seek to fetch it again. But
  aiokafka's `seek_to_committed` seeks only where an offset above 0 was committed: a
  partition with no commit (a new group; a worker whose predecessor stopped before its
  first commit) or a commit of 0 kept its position, past the dropped messages. Caught on
  Apache Kafka, one run in three with another test beside it: a worker stopped by a refused
  write before its first commit, started again, fetched the waiting request during its
  recovery, dropped it, and never answered it. Here such a partition of a stream is sought
  to 0, or, with no commit, to its start (as `auto_offset_reset=earliest`, Faust's, reads
  it), and that offset is kept as its committed one, so that the commit guard below holds
  there too (Faust keeps a committed 0 as None, which no guard holds at); the tables'
  changelog partitions are left to the recovery, which places them.

Together they lose a message (docs/streams.md: requests unanswered after a worker joined or
was killed). Here a commit waits for the message at the committed offset; when later offsets
are acked and that message is not being processed, it was skipped, and the partition is
fetched again from the committed offset. An ack counts only while the flow runs and only for
an event of the current generation. What is fetched again is processed again: a duplicate,
which the per-person rows absorb (docs/design.md), never a loss.

A fourth hole is in the producer, not the consumer. A table write is a changelog message put
in Faust's producer buffer (`send_soon`: a table is set synchronously), which a task hands
to the Kafka producer one by one. Before committing, Faust flushes that buffer, but its flush
gives up as soon as no message was handed over within 0.1 s, leaving the rest queued. On a
loaded machine, or while the Kafka producer waits for room in its batches, that happens,
and the offsets are committed ahead of table writes that a crash then loses: the answer went
out, the row that remembers it did not. Here the flush waits until every message put before
it has been handed over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer
from aiokafka.consumer.fetcher import OffsetResetStrategy
from aiokafka.structs import TopicPartition
from faust.transport.consumer import Consumer, ensure_TP
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from faust.types.tuples import FutureMessage, Message, ack_lock
from mode.utils.queues import FlowControlEvent

from streams.cluster_contact import ASK_EVERY_S, answered_within
from streams.lost_writes import stop_for_lost_write, stop_for_stalled_writes

log = logging.getLogger("huimin.streams.offsets")

#: A refetch can fail: a batch of the partition fetched before the seek and delivered after
#: it makes Faust drop the refetched message as already read. The next commit (every ~3 s)
#: then tries again, unless one was tried within this many seconds.
REFETCH_INTERVAL_S = 1.0
#: After this many refetches (~30 s) the offset is taken to hold no message at all (a
#: transaction marker, say), and the commit passes it.
MAX_REFETCHES = 10
_refetched: dict[tuple[TP, int], tuple[float, int]] = {}  # -> (last time, attempts)
_seeks: set[asyncio.Future] = set()  # running seeks (the loop holds tasks only weakly)

_original_ack = Consumer.ack
_original_new_offset = Consumer._new_offset
_original_add_gap = Consumer._add_gap
_original_resume = FlowControlEvent.resume
_original_seek_to_committed = AIOKafkaConsumerThread.seek_to_committed
_original_perform_seek = Consumer.perform_seek


def _ack_if_processed(self: Consumer, message: Message) -> bool:
    generation = message.generation_id
    current = self.app.consumer_generation_id
    flowing = self.app.flow_control.is_active()
    if not flowing or (generation is not None and generation != current):
        with ack_lock:
            message.acked = True  # done with here; it will be fetched again
            self._unacked_messages.discard(message)  # a rebalance waits for unacked ones
        log.info("not counting the ack of %s[%d]@%d (generation %s, now %s; flow %s)",
                 message.topic, message.partition, message.offset, generation, current,
                 "running" if flowing else "suspended")
        return False
    return _original_ack(self, message)


def _new_offset_from_committed(self: Consumer, tp: TP) -> int | None:
    committed = self._committed_offset[tp]
    if committed is not None:
        acked = self._acked[tp]
        # offsets known not to exist (Faust's gaps) count as acked, as in the original
        if acked and min(acked) > committed and not self._gap[tp].overlaps(committed) and \
                _fetch_again_if_skipped(self, tp, committed):
            return None
    return _original_new_offset(self, tp)


def _fetch_again_if_skipped(consumer: Consumer, tp: TP, offset: int) -> bool:
    """Later offsets of `tp` are acked but `offset` is not: unless it is being processed
    right now, the stream skipped it, and only a seek brings it back. False once it has
    been fetched again MAX_REFETCHES times in vain: there is no message there."""
    last, attempts = _refetched.get((tp, offset), (0.0, 0))
    if attempts >= MAX_REFETCHES:
        if attempts == MAX_REFETCHES:
            _refetched[(tp, offset)] = last, attempts + 1  # say so once
            log.warning("%s[%d]: no message came at offset %d in %d fetches; committing "
                        "past it", tp.topic, tp.partition, offset, MAX_REFETCHES)
            consumer._gap[tp].addi(offset, offset + 1)  # a hole after all: Faust passes it
        return False
    if any(m.tp == tp and m.offset == offset for m in list(consumer._unacked_messages)):
        return True
    now = time.monotonic()
    if (attempts and now - last < REFETCH_INTERVAL_S) or tp not in consumer.assignment():
        return True
    _refetched[(tp, offset)] = now, attempts + 1
    log.warning("fetching %s[%d] again from offset %d: the message there was skipped, "
                "not processed", tp.topic, tp.partition, offset)
    seek = asyncio.ensure_future(consumer.seek(tp, offset))
    _seeks.add(seek)
    seek.add_done_callback(_seek_done)
    return True


def _seek_done(seek: asyncio.Future) -> None:
    _seeks.discard(seek)
    if not seek.cancelled() and seek.exception() is not None:  # e.g. revoked meanwhile
        log.warning("could not fetch again (%s); the next commit tries again",
                    type(seek.exception()).__name__)


async def _no_gap(self: Consumer, tp: TP, offset_from: int, offset_to: int) -> None:
    """A jump in the offsets handed out is not a hole here (module docstring): the offsets
    it spans are fetched again unless they are acked."""
    log.debug("%s[%d]: offsets %d to %d were not handed out in order; not counting them as "
              "done", tp.topic, tp.partition, offset_from, offset_to - 1)


def _resume_keeping_queued(self: FlowControlEvent) -> None:
    """Clear the streams' queues only on a resume after a suspension (module docstring)."""
    if self.is_active():
        return  # already running: what is queued was fetched for the current assignment
    _original_resume(self)


async def _seek_to_committed_or_start(self: AIOKafkaConsumerThread) -> Mapping[TP, int]:
    """aiokafka's seek, and where it does not seek a stream's partition (nothing committed,
    or 0), a seek to 0 or to the partition's start (module docstring): the returned offset
    is then where it was sought to. The tables' changelog partitions are left to the
    recovery, which places them itself."""
    return await self.call_thread(_seek_back, self._ensure_consumer(),
                                  frozenset(self.app.tables.changelog_topics))


async def _seek_back(consumer: AIOKafkaConsumer,
                     changelogs: frozenset[str]) -> dict[TopicPartition, int | None]:
    committed = await consumer.seek_to_committed()
    fetcher = consumer._fetcher
    back = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
    if not back:
        return committed
    if fetcher._default_reset_strategy != OffsetResetStrategy.EARLIEST:
        return committed  # where reading starts with nothing committed is not the start
    starts = await consumer.beginning_offsets(back)
    assigned = consumer.assignment()  # a rebalance may have taken some meanwhile
    out = dict(committed)
    for tp in back:
        if tp in assigned:
            out[tp] = starts[tp]  # 0, unless the partition's first records were deleted
            fetcher.seek_to(tp, out[tp])
    return out


async def _perform_seek_keeping_0(self: Consumer) -> None:
    """Faust's `perform_seek`, but an offset of 0 sought to is kept as the partition's
    committed offset: Faust writes it as None, and with None a commit is not held at a
    skipped message (`_new_offset_from_committed`), so a message dropped again after the
    seek above could be committed past."""
    committed = await self.seek_to_committed()
    self._read_offset.update({tp: offset if offset is not None and offset >= 0 else None
                              for tp, offset in committed.items()})
    self._committed_offset.update({ensure_TP(tp): offset for tp, offset in committed.items()
                                   if offset is not None})


_original_put = ProducerBuffer.put
_original_send_pending = ProducerBuffer._send_pending
_original_flush = ProducerBuffer.flush
#: How long a flush waits for the next hand-over before it says that it is still waiting.
FLUSH_PATIENCE_S = 10.0
#: How long a flush waits with no hand-over at all while the cluster answers, before the
#: worker stops (streams/lost_writes.py) rather than wait out Faust's 20-minute producer
#: time-out: a review saw one wait 4+ minutes after the broker and the other worker were
#: killed together, its rebalance held, its partitions idle.
FLUSH_GIVE_UP_S = 180.0


def _counted_put(self: ProducerBuffer, fut: FutureMessage) -> None:
    self.huimin_put = getattr(self, "huimin_put", 0) + 1  # type: ignore[attr-defined]
    _original_put(self, fut)


async def _counted_send_pending(self: ProducerBuffer, fut: FutureMessage) -> None:
    try:
        await _original_send_pending(self, fut)
    except Exception as exc:  # a table write that cannot be handed over is lost: stop before
        # Faust's crash handling commits past its event (streams/lost_writes.py)
        channel = getattr(getattr(fut, "message", None), "channel", None)
        stop_for_lost_write(getattr(channel, "get_topic_name", lambda: "a changelog")(), exc)
    finally:  # handed over: no longer waiting in the buffer
        self.huimin_handed = getattr(self, "huimin_handed", 0) + 1  # type: ignore[attr-defined]


async def _flush_all(self: ProducerBuffer) -> None:
    """Wait until every message put so far has been handed to the Kafka producer (whose own
    flush, next in Faust's commit, then waits for the broker)."""
    if (self.app is not None and self.app.conf.producer_threaded) or self.state != "running":
        await _original_flush(self)  # not the queue counted here; or stopping (Faust's rule)
        return
    target = getattr(self, "huimin_put", 0)
    seen, handed_at = getattr(self, "huimin_handed", 0), time.monotonic()
    stalled_since = handed_at  # the last hand-over, or the last look at a silent cluster
    while (handed := getattr(self, "huimin_handed", 0)) < target:
        if handed != seen:  # a hand-over since the last look: no stall
            seen = handed
            handed_at = stalled_since = time.monotonic()
        self.message_sent.clear()  # set by the sending task right after each hand-over
        if getattr(self, "huimin_handed", 0) >= target:
            break
        try:
            await asyncio.wait_for(self.message_sent.wait(), timeout=FLUSH_PATIENCE_S)
        except TimeoutError:
            if self.state != "running":
                raise RuntimeError("Cannot flush: Producer not Running") from None
            if getattr(self, "huimin_handed", 0) != seen:
                continue  # handed over as the wait ended
            now = time.monotonic()
            if not answered_within(3 * ASK_EVERY_S):
                stalled_since = now  # the cluster's silence, not a stall: counted from its end
            elif now - stalled_since >= FLUSH_GIVE_UP_S:
                stop_for_stalled_writes(target - seen, now - stalled_since)
            log.warning("a commit has waited %.0f s for %d table writes to be handed to "
                        "the producer", now - handed_at, target - seen)


def guard_commits() -> None:
    """Install the mends (idempotent; the worker calls it before building its app)."""
    ProducerBuffer.put = _counted_put  # type: ignore[method-assign]
    ProducerBuffer._send_pending = _counted_send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush_all  # type: ignore[method-assign]
    Consumer.ack = _ack_if_processed  # type: ignore[method-assign]
    Consumer._new_offset = _new_offset_from_committed  # type: ignore[method-assign]
    Consumer._add_gap = _no_gap  # type: ignore[method-assign]
    FlowControlEvent.resume = _resume_keeping_queued  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_or_start  # type: ignore[method-assign]
    Consumer.perform_seek = _perform_seek_keeping_0  # type: ignore[method-assign]
