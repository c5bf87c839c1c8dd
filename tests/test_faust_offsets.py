"""A commit never passes a message nobody processed: Faust's offset bookkeeping as mended by
streams/faust_offsets.py, on a real (unconnected) Faust consumer."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, cast

import faust
import pytest
from faust.types import TP
from faust.types.tuples import FutureMessage, Message

from streams import faust_offsets
from streams.faust_offsets import guard_commits

if TYPE_CHECKING:
    from faust.transport.producer import ProducerBuffer

TOPIC = "hosp.requests"
TP0 = TP(TOPIC, 0)


@pytest.fixture
def consumer():
    guard_commits()
    app = faust.App("offsets-test", broker="kafka://localhost:1")
    app.topic(TOPIC)  # a stream's topic: acks count for it
    app.topics.acks_enabled_for = lambda topic: True
    app.consumer_generation_id = 7
    app.flow_control.resume()  # the flow runs, as between rebalances
    return app.consumer


def fetched(offset: int, generation: int = 7) -> Message:
    return Message(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, generation_id=generation)


@pytest.fixture
def seeks(consumer, monkeypatch) -> list[tuple[TP, int]]:
    """Where the consumer was asked to fetch from again (the seek itself is aiokafka's)."""
    done: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        done.append((tp, offset))
    monkeypatch.setattr(consumer, "seek", seek)
    monkeypatch.setattr(consumer, "assignment", lambda: {TP0})
    monkeypatch.setattr(faust_offsets, "_refetched", {})
    return done


def new_offset_then_let_seeks_run(consumer, tp: TP) -> int | None:
    async def go() -> int | None:
        offset = consumer._new_offset(tp)
        await asyncio.sleep(0)
        return offset
    return asyncio.run(go())


def test_a_commit_waits_for_the_message_at_the_committed_offset(consumer, seeks):
    consumer._committed_offset[TP0] = 100  # the next offset to read
    assert consumer.ack(fetched(101))
    assert new_offset_then_let_seeks_run(consumer, TP0) is None  # Faust alone: 102
    assert consumer.ack(fetched(100))
    assert consumer._new_offset(TP0) == 102


def test_a_partition_sought_back_to_0_holds_its_commit_at_a_skipped_message(consumer, seeks,
                                                                           monkeypatch):
    """Faust keeps a committed 0 as None, and a commit from None passes anything skipped:
    acking 3 alone would commit 4. A partition sought to its start (nothing committed, or 0:
    streams/faust_offsets.py's `_seek_back`) keeps 0, and the guard holds there."""
    async def sought_to_start() -> dict[TP, int]:
        return {TP0: 0}
    monkeypatch.setattr(consumer, "seek_to_committed", sought_to_start)
    asyncio.run(consumer.perform_seek())
    assert consumer._committed_offset[TP0] == 0
    assert consumer.ack(fetched(3))
    assert new_offset_then_let_seeks_run(consumer, TP0) is None
    assert seeks == [(TP0, 0)]


def test_faust_as_released_commits_past_what_came_before_the_first_ack(consumer, seeks,
                                                                      monkeypatch):
    async def sought_to_start() -> dict[TP, int]:
        return {TP0: 0}
    monkeypatch.setattr(consumer, "seek_to_committed", sought_to_start)
    asyncio.run(faust_offsets._original_perform_seek(consumer))
    assert consumer._committed_offset[TP0] is None
    assert consumer.ack(fetched(3))
    assert consumer._new_offset(TP0) == 4  # so the test above can fail


def test_a_skipped_message_is_fetched_again_once_a_later_one_is_acked(consumer, seeks):
    consumer._committed_offset[TP0] = 59
    for offset in (60, 61):
        consumer.ack(fetched(offset))
    assert new_offset_then_let_seeks_run(consumer, TP0) is None
    assert seeks == [(TP0, 59)]
    assert new_offset_then_let_seeks_run(consumer, TP0) is None
    assert seeks == [(TP0, 59)]  # not again at once: the first seek is still taking effect


def test_a_message_still_being_processed_is_not_fetched_again(consumer, seeks):
    consumer._committed_offset[TP0] = 59
    consumer._unacked_messages.add(slow := fetched(59))  # taken by the stream, not done yet
    consumer.ack(fetched(60))
    assert new_offset_then_let_seeks_run(consumer, TP0) is None
    assert seeks == []
    assert consumer.ack(slow)
    assert consumer._new_offset(TP0) == 61


def test_acks_of_an_older_generation_do_not_count(consumer, seeks):
    consumer._committed_offset[TP0] = 100
    stale = fetched(100, generation=6)  # fetched before the rebalance, skipped by the stream
    consumer._unacked_messages.add(stale)
    assert consumer.ack(stale) is False
    assert stale.acked and stale not in consumer._unacked_messages
    assert consumer._new_offset(TP0) is None
    assert consumer.ack(fetched(100))  # the same offset, fetched again and processed
    assert consumer._new_offset(TP0) == 101


def test_consecutive_acks_from_the_committed_offset_commit_as_before(consumer):
    consumer._committed_offset[TP0] = 10
    for offset in (12, 10, 11):
        consumer.ack(fetched(offset))
    assert consumer._new_offset(TP0) == 13


def test_acks_during_a_rebalance_do_not_count(consumer, seeks):
    consumer._committed_offset[TP0] = 100
    consumer.app.flow_control.suspend()  # a revocation is under way: the stream skips events
    taken = fetched(100)
    assert consumer.ack(taken) is False
    assert consumer._new_offset(TP0) is None  # so the revocation's commit stays at 100
    consumer.app.flow_control.resume()
    assert consumer.ack(fetched(100))
    assert consumer._new_offset(TP0) == 101


def test_an_offset_that_never_comes_is_given_up_after_the_last_refetch(consumer, seeks,
                                                                          monkeypatch):
    monkeypatch.setattr(faust_offsets, "REFETCH_INTERVAL_S", 0.0)
    consumer._committed_offset[TP0] = 59  # 59 holds no message (a transaction marker, say)
    for offset in (60, 61):
        consumer.ack(fetched(offset))
    for _ in range(faust_offsets.MAX_REFETCHES):
        assert new_offset_then_let_seeks_run(consumer, TP0) is None
    assert seeks == [(TP0, 59)] * faust_offsets.MAX_REFETCHES
    assert consumer._new_offset(TP0) == 62  # Faust's own rule: one past is let through


def test_a_jump_in_the_offsets_handed_out_is_not_counted_as_done(consumer, seeks):
    """A seek to the committed offset while a batch fetched before it was still being handed
    out: the jump from 30 to 78 is no hole, and 31 to 77 may not have been processed."""
    consumer._committed_offset[TP0] = 30
    consumer.ack(fetched(30))
    asyncio.run(consumer._add_gap(TP0, 31, 77))
    for offset in range(78, 81):
        consumer.ack(fetched(offset))
    assert consumer._new_offset(TP0) == 31  # Faust alone: 81
    consumer._committed_offset[TP0] = 31  # committed
    assert new_offset_then_let_seeks_run(consumer, TP0) is None
    assert seeks == [(TP0, 31)]  # fetched again from the first offset not done


def test_a_resume_of_a_running_flow_keeps_what_the_streams_have_queued(consumer):
    flow = consumer.app.flow_control
    queue = consumer.app.FlowControlQueue(maxsize=10, clear_on_resume=True)
    queue.put_nowait("fetched for the current assignment")
    flow.resume()  # the flow already runs: the end of a recovery that resumed it earlier
    assert queue.qsize() == 1
    flow.suspend()  # a rebalance: what is queued may be of the old assignment
    flow.resume()
    assert queue.qsize() == 0


class SlowHandOver:
    """A changelog message whose hand-over to the Kafka producer takes `seconds` (the
    producer waiting for room in its batches, or a starved event loop)."""

    def __init__(self, handed: list[int], n: int, seconds: float) -> None:
        async def publish_message(fut: object, wait: bool = False) -> None:
            await asyncio.sleep(seconds)
            handed.append(n)
        self.message = type("M", (), {"channel": type("C", (), {
            "publish_message": staticmethod(publish_message)})()})()


def handed_before_flush_returns(flush_name: str) -> list[int]:
    """Put three slow messages in a running Faust producer buffer and flush it with `flush`
    (the mended one, or Faust's own): which of them were handed over by then."""
    from faust.transport.producer import ProducerBuffer
    guard_commits()
    flush = {"mended": ProducerBuffer.flush, "faust": faust_offsets._original_flush}[flush_name]

    async def go() -> list[int]:
        buffer = ProducerBuffer()
        buffer.app = faust.App("buffer-test", broker="kafka://localhost:1")
        await buffer.start()
        handed: list[int] = []
        for n in range(3):
            buffer.put(cast(FutureMessage, SlowHandOver(handed, n, 0.15)))
        await flush(buffer)
        done = list(handed)
        await asyncio.sleep(0.5)  # let the rest go before stopping
        await buffer.stop()
        return done
    return asyncio.run(go())


def test_a_commit_waits_until_every_table_write_is_handed_to_the_producer():
    assert handed_before_flush_returns("mended") == [0, 1, 2]


def test_faust_s_own_flush_gives_up_on_a_slow_hand_over():
    """Why the mend: Faust's flush returns after 0.1 s without a hand-over, writes queued."""
    assert len(handed_before_flush_returns("faust")) < 3


class StalledBuffer:
    """A running producer buffer with `waiting` table writes put and never handed over."""

    def __init__(self, waiting: int) -> None:
        self.app, self.state = None, "running"
        self.huimin_put, self.huimin_handed = waiting, 0
        self.message_sent = asyncio.Event()


@pytest.fixture
def stops(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The exit statuses the worker would have stopped with (the flush's waits shortened)."""
    from streams import lost_writes

    stopped: list[int] = []

    def exit_(code: int) -> None:
        stopped.append(code)
        raise asyncio.CancelledError  # the process would end here

    monkeypatch.setattr(lost_writes.os, "_exit", exit_)
    monkeypatch.setattr(faust_offsets, "FLUSH_PATIENCE_S", 0.01)
    monkeypatch.setattr(faust_offsets, "FLUSH_GIVE_UP_S", 0.05)
    return stopped


async def _flush_for(buffer: StalledBuffer, seconds: float) -> None:
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(faust_offsets._flush_all(cast("ProducerBuffer", buffer)), seconds)


def test_a_flush_the_producer_never_takes_while_the_cluster_answers_stops_the_worker(
        stops: list[int], monkeypatch: pytest.MonkeyPatch):
    """Table writes waiting for minutes with the cluster answering will not be handed over: a
    review saw a worker's rebalance wait on them for good after the broker and the other
    worker were killed together. It stops (exit 75) for its supervisor to start it again."""
    from streams import cluster_contact
    from streams.lost_writes import LOST_WRITE_EXIT

    monkeypatch.setattr(cluster_contact, "_last_answer", [cluster_contact.time.monotonic()])
    monkeypatch.setattr(cluster_contact, "ASK_EVERY_S", 60.0)
    monkeypatch.setattr(faust_offsets, "ASK_EVERY_S", 60.0)
    asyncio.run(_flush_for(StalledBuffer(15), 2.0))
    assert stops == [LOST_WRITE_EXIT]


def test_a_flush_waiting_on_a_silent_cluster_waits_for_it(
        stops: list[int], monkeypatch: pytest.MonkeyPatch):
    """A cluster down: the worker carries on when it is back, as the README says."""
    from streams import cluster_contact

    monkeypatch.setattr(cluster_contact, "_last_answer", [None])
    asyncio.run(_flush_for(StalledBuffer(15), 0.3))
    assert stops == []


def test_a_flush_whose_writes_are_handed_over_slowly_is_not_given_up(
        stops: list[int], monkeypatch: pytest.MonkeyPatch):
    """Progress, however slow (a burst of writes on a busy machine), is no stall."""
    from streams import cluster_contact

    monkeypatch.setattr(cluster_contact, "_last_answer", [cluster_contact.time.monotonic()])
    monkeypatch.setattr(faust_offsets, "ASK_EVERY_S", 60.0)
    buffer = StalledBuffer(12)

    async def hand_over_slowly() -> None:
        while buffer.huimin_handed < buffer.huimin_put:
            await asyncio.sleep(0.03)  # slower than the patience, faster than the give-up
            buffer.huimin_handed += 1
            buffer.message_sent.set()

    async def both() -> None:
        await asyncio.gather(hand_over_slowly(), _flush_for(buffer, 2.0))

    asyncio.run(both())
    assert stops == [] and buffer.huimin_handed == 12


def test_a_flush_is_given_up_only_after_the_cluster_has_answered_for_the_whole_wait(
        stops: list[int], monkeypatch: pytest.MonkeyPatch):
    """The time a cluster was silent is the cluster's: once it answers again, the producer
    gets the whole wait to resume (a review: it stopped 7 s after an outage ended)."""
    silent = [True]
    monkeypatch.setattr(faust_offsets, "answered_within", lambda _s: not silent[0])
    monkeypatch.setattr(faust_offsets, "FLUSH_GIVE_UP_S", 0.5)
    buffer = StalledBuffer(15)

    async def outage_then_slow_recovery() -> None:
        await asyncio.sleep(1.0)  # silent for two give-ups' worth
        silent[0] = False
        await asyncio.sleep(0.15)  # answering again, the producer not yet resumed
        buffer.huimin_handed = 15  # it resumes well within the give-up
        buffer.message_sent.set()

    async def both() -> None:
        await asyncio.gather(outage_then_slow_recovery(), _flush_for(buffer, 3.0))

    asyncio.run(both())
    assert stops == [] and buffer.huimin_handed == 15
