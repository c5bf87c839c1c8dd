"""A worker removed from the consumer group while still processing can write rows late, after
the partition's new owner wrote newer ones: those late writes must never come back when a
table is recovered (streams/owner_fence.py). The bookkeeping on its own, then a real worker
on the real broker recovering a changelog that holds such a late write."""

from __future__ import annotations

import urllib.request
from dataclasses import asdict
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from huimin.local_platform import platform
from messages.codec import decode, encode
from messages.topics import MONEY_EVENTS
from settlement.ledger import SettlementEvent
from simulators.world import WorldSpec
from streams.broker import broker
from streams.config import CLEARING_TABLE
from streams.owner_fence import OWNER_HEADER, ChangelogFence, Writer, writer_of
from tests.scraping import scrape, total
from tests.waiting import eventually


def w(generation: int, since_ms: int | None = None) -> Writer:
    """A writer whose generation began at `since_ms` (by default, later generations later)."""
    return Writer(generation, generation * 1000 if since_ms is None else since_ms)


def test_a_record_of_an_older_generation_after_a_newer_one_is_refused():
    fence = ChangelogFence()
    assert fence.admit(0, 0, w(3)) and fence.admit(0, 1, w(4))
    assert not fence.admit(0, 2, w(3))  # the removed owner of generation 3, writing late
    assert fence.admit(0, 3, w(4)) and fence.admit(0, 4, w(5))


def test_generations_are_kept_per_partition():
    fence = ChangelogFence()
    assert fence.admit(0, 0, w(5))
    assert fence.admit(1, 0, w(2))  # partition 1 never saw generation 5
    assert not fence.admit(0, 1, w(2))


def test_this_workers_own_writes_count_though_it_never_reads_them_back():
    fence = ChangelogFence()
    assert fence.admit(2, 10, w(6))  # recovered up to offset 10, written in generation 6
    fence.wrote(2, w(7))  # then served the partition in generation 7
    assert not fence.admit(2, 12, w(6))  # a late write of 6 that came in behind


def test_a_group_that_began_again_at_a_low_generation_is_not_taken_for_a_late_writer():
    """Kafka forgets a group left empty for a week; an operator may delete one to reset its
    offsets. The new group's workers write generation 1 again, but began later."""
    fence = ChangelogFence()
    assert fence.admit(0, 0, w(57, since_ms=1_000))
    assert fence.admit(0, 1, w(1, since_ms=9_000))  # the group's new life
    assert fence.admit(0, 2, w(2, since_ms=9_500))
    assert not fence.admit(0, 3, w(1, since_ms=9_000))  # and its own late writers are fenced
    fence.wrote(1, w(57, since_ms=1_000))
    fence.wrote(1, w(1, since_ms=9_000))  # this worker, in the group's new life
    assert fence.admit(1, 0, w(1, since_ms=9_000))
    # A late write from the group's previous life: its generation says newer, its time says
    # older. The fence refuses only when both say older, so it lets this one through, as
    # everything went before the fence (no member of an empty group is left to write late).
    assert fence.admit(1, 1, w(56, since_ms=500))


def test_reading_a_partition_again_from_its_start_starts_the_bookkeeping_over():
    fence = ChangelogFence()
    assert fence.admit(0, 0, w(3)) and fence.admit(0, 1, w(4))
    assert fence.admit(0, 0, w(3))  # a later recovery from offset 0 applies the same records
    assert fence.admit(0, 1, w(4))
    assert not fence.admit(0, 2, w(3))


def test_records_without_the_header_are_applied_as_before():
    fence = ChangelogFence()
    assert fence.admit(0, 0, w(4))
    assert fence.admit(0, 1, None)
    assert writer_of(None) is None
    assert writer_of([("other", b"1")]) is None
    assert writer_of([(OWNER_HEADER, b"not a number")]) is None
    assert writer_of([(OWNER_HEADER, b"\xff")]) is None
    assert writer_of([("other", b"1"), w(12).header()]) == w(12)
    assert writer_of(dict([w(3, since_ms=7).header()])) == Writer(3, 7)


SPEC = WorldSpec(seed=9, persons=300)
CHANGELOG = f"huimin-{CLEARING_TABLE}-changelog"


def cross_province_settlement(n: int) -> SettlementEvent:
    return SettlementEvent(setl_id=f"110100{n:016X}", event="settle",
                           time=f"2026-12-0{n + 1} 10:00:00", fixmedins_code="H31010000001",
                           insuplc_admdvs="110100", mdtrtarea_admvs="310100",
                           hifp_pay=10_000 + n, medfee_sumamt=20_000 + n,
                           fund_pay_sumamt=10_000 + n, acct_pay=0)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return orjson.loads(r.read())


def read_changelog(bootstrap: str) -> list:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    tp = TopicPartition(CHANGELOG, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    try:
        return list(consumer)
    finally:
        consumer.close()


@pytest.mark.e2e
@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_late_write_of_a_removed_worker_is_not_applied_when_the_table_is_recovered(
        tmp_path: Path, store: str):
    """In memory the table is rebuilt from its whole changelog; in RocksDB it resumes after
    the last record it applied, which is the current owner's own last write."""
    with broker(tmp_path / "broker.log") as bootstrap, \
            platform(bootstrap, SPEC, 2, tmp_path, store=store) as p:
        p.wait_until_serving()
        worker = p.workers[0]
        web = f"http://127.0.0.1:{worker.cfg.web_port}"
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        try:
            for n in range(3):  # as the insured side sends them to the national clearing
                e = cross_province_settlement(n)
                producer.send(MONEY_EVENTS, key=e.setl_id.encode(), value=encode(asdict(e)))
            producer.flush()
            before = eventually("the three events cleared", lambda: get_json(f"{web}/clearing/"),
                                lambda v: v["events"] == 3, every_s=0.3)
            written = eventually("the three events in the changelog",
                                 lambda: read_changelog(bootstrap), lambda r: len(r) == 3,
                                 every_s=0.3)
            writers = {writer_of(r.headers) for r in written}
            assert len(writers) == 1 and None not in writers
            (current,) = writers
            assert current is not None

            # The worker of the previous generation, removed but still running, writes its
            # stale copy of the first event after the current owner's writes.
            stale = {**decode(written[0].value), "hifp_pay": 99_999_999}
            removed = Writer(current.generation - 1, current.since_ms - 5_000)
            producer.send(CHANGELOG, key=written[0].key, value=encode(stale), partition=0,
                          headers=[removed.header()])
            producer.flush()
            assert len(read_changelog(bootstrap)) == 4
        finally:
            producer.close()

        worker.stop()  # a clean stop: a RocksDB table remembers the last offset it applied
        worker.start()  # and the table is recovered from its changelog
        p.wait_until_serving()
        after = eventually("the three events cleared again", lambda: get_json(f"{web}/clearing/"),
                           lambda v: v["events"] == 3, every_s=0.3)
        assert after == before
        assert b"99999999" not in orjson.dumps(after)
        assert total(scrape(f"{web}/metrics"), "huimin_changelog_records_fenced_total",
                     table=CLEARING_TABLE) == 1
