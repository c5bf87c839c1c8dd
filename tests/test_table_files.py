"""A worker trusts its RocksDB table files only after a clean stop (streams/table_files.py):
after a crash they may hold changes their changelogs never got, and the roles, which
recognise a redelivered message by what the table holds, would then never write them to the
changelog."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import pytest
import rocksdict
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from typer.testing import CliRunner

from huimin.local_platform import platform
from messages.codec import encode
from messages.topics import MONEY_EVENTS
from settlement.ledger import SettlementEvent
from simulators.world import WorldSpec
from streams.broker import EmbeddedBroker
from streams.config import CLEARING_TABLE, WorkerConfig
from streams.table_files import (
    CLEAN_STOP_MARK,
    discard_after_unclean_stop,
    hold_data_folder,
    mark_clean_stop,
)
from streams.topics import changelog_topics


def _table_files(tables: Path) -> None:
    for name in ("trt_persons-0.db", "clearing_events-0.db"):
        (tables / name).mkdir(parents=True)
        (tables / name / "CURRENT").write_text("MANIFEST-000001\n")
    (tables / "trt_persons-backups").mkdir()


def test_files_left_by_a_crash_are_deleted_and_the_next_crash_is_detected_too(tmp_path: Path):
    _table_files(tmp_path)
    assert discard_after_unclean_stop(tmp_path) == ["clearing_events-0.db", "trt_persons-0.db"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trt_persons-backups"]
    _table_files(tmp_path / "again")
    mark_clean_stop(tmp_path / "again")
    assert discard_after_unclean_stop(tmp_path / "again") == []  # a clean stop: kept
    assert not (tmp_path / "again" / CLEAN_STOP_MARK).exists()  # this run has not stopped yet
    assert discard_after_unclean_stop(tmp_path / "again") == ["clearing_events-0.db",
                                                              "trt_persons-0.db"]


def test_a_first_start_without_table_files_discards_nothing(tmp_path: Path):
    assert discard_after_unclean_stop(tmp_path / "tables") == []


@pytest.mark.e2e
def test_a_money_event_a_killed_worker_recorded_but_never_logged_reaches_the_changelog(
        tmp_path: Path):
    """The state a SIGKILL can leave (seen in a fault run): the clearing table's file holds
    the event, its changelog does not, the event is delivered again. The worker must record
    it in the changelog this time; trusting its file, it skipped it as a duplicate, and the
    next worker to take the partition over lost the settlement."""
    event = SettlementEvent(setl_id="110100T0000000000001", event="settle",
                            time="2026-12-01 10:00:00", fixmedins_code="H31010000001",
                            insuplc_admdvs="110100", mdtrtarea_admvs="310100", hifp_pay=7250)
    key, value = f"{event.setl_id}:settle".encode(), encode(asdict(event))
    tables = tmp_path / "worker-0-data" / "v1" / "tables"
    left_by_the_crash = rocksdict.Rdict(str(tables / f"{CLEARING_TABLE}-0.db"),
                                        options=rocksdict.Options(raw_mode=True))
    left_by_the_crash[key] = value
    left_by_the_crash.close()
    changelog = changelog_topics(WorkerConfig(bootstrap="").app_id, (CLEARING_TABLE,))[0]
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker, \
            platform(broker.bootstrap, WorldSpec(seed=7, persons=100), 8, tmp_path,
                     store="rocksdb", fresh_tables=False) as running:  # restarted over them
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        producer.send(MONEY_EVENTS, key=event.setl_id.encode(), value=value)
        producer.flush()
        producer.close()
        running.wait_until_serving()
        logged = _keys_within(broker.bootstrap, changelog, 60)
    assert logged == [key]
    log = (tmp_path / "worker-0.log").read_text()
    assert "did not stop cleanly: rebuilding its tables from their changelogs" in log
    assert (tables / CLEAN_STOP_MARK).exists()  # stopped by SIGTERM: its files are trusted next


def _keys_within(bootstrap: str, topic: str, wait_s: float) -> list[bytes]:
    """The keys on the one partition of `topic`, once there is at least one (or at the end)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=100)
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    keys: list[bytes] = []
    deadline = time.monotonic() + wait_s
    while not keys and time.monotonic() < deadline:
        keys += [r.key for records in consumer.poll(timeout_ms=500).values() for r in records]
    time.sleep(1)  # a second write of the key would come with the first
    keys += [r.key for records in consumer.poll(timeout_ms=500).values() for r in records]
    consumer.close()
    return keys


def test_a_new_platform_empties_only_worker_data_folders_huimin_made(tmp_path: Path):
    """A second `--store rocksdb` run into the same --out took up the first's tables and
    answered every request as a duplicate; emptying the folder must not delete what a user
    keeps under that name."""
    from huimin.local_platform import WORKER_DATA_MARK, fresh_data_dir

    ours = tmp_path / "worker-0-data"
    fresh_data_dir(ours)  # made, empty but for its mark
    assert [p.name for p in ours.iterdir()] == [WORKER_DATA_MARK]
    _table_files(ours / "v1" / "tables")
    fresh_data_dir(ours)
    assert [p.name for p in ours.iterdir()] == [WORKER_DATA_MARK]
    before_the_mark = tmp_path / "worker-1-data"  # Faust's layout, from before the mark
    _table_files(before_the_mark / "v1" / "tables")
    fresh_data_dir(before_the_mark)
    assert [p.name for p in before_the_mark.iterdir()] == [WORKER_DATA_MARK]
    theirs = tmp_path / "worker-2-data"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("mine")
    linked = tmp_path / "worker-3-data"
    linked.symlink_to(ours)
    for folder in (theirs, linked):
        with pytest.raises(FileExistsError, match="not a worker's data folder huimin made"):
            fresh_data_dir(folder)
    assert (theirs / "thesis.tex").read_text() == "mine" and (ours / WORKER_DATA_MARK).exists()
    held = hold_data_folder(ours)  # a running worker's, as another run into --out finds it
    try:
        with pytest.raises(FileExistsError, match="a running worker keeps its tables there"):
            fresh_data_dir(ours)
    finally:
        held.close()
    fresh_data_dir(ours)  # its worker gone


@pytest.mark.e2e  # were the check to fail, it would start a broker
def test_a_run_refuses_a_joining_workers_folder_before_it_starts_or_writes_anything(
        tmp_path: Path):
    """`--faults join-worker=1` starts worker-1 mid-run: a folder of that name huimin did not
    make was refused only then, with visits under way; and then only after the run had
    written its visit log over the one in --out (a review found it)."""
    from huimin.cli import app

    (tmp_path / "worker-1-data").mkdir()
    (tmp_path / "worker-1-data" / "mine.txt").write_text("mine")
    (tmp_path / "visits.jsonl").write_text("a log of mine")
    result = CliRunner().invoke(app, ["run", "--visits", "20", "--persons", "200", "--faults",
                                      "join-worker=1", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "worker-1-data: there is something there that is not a worker's data folder" \
        in result.output
    assert not (tmp_path / "broker.log").exists()  # refused before the broker started
    assert (tmp_path / "worker-1-data" / "mine.txt").read_text() == "mine"
    assert (tmp_path / "visits.jsonl").read_text() == "a log of mine"
    assert not (tmp_path / "visits.expected.jsonl").exists()
