"""Faust's ways of losing a message, mended (streams/faust_offsets.py), on the real broker: a
Faust echo worker on huimin's settings (tests/workers/echo.py) echoes every message sent, where
the same worker on Faust as released loses some."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.broker import EmbeddedBroker, free_port, stop_process_group
from streams.topics import changelog_topics, ensure_topics
from tests.conftest import REPO
from tests.workers.echo import PARTITIONS

pytestmark = pytest.mark.e2e

RATE = 100.0  # messages per second while a worker runs


class Echoes:
    """The broker's `out` topic, read from the start: how many echoes each sequence number
    got. Sends go to `in`."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      fetch_max_wait_ms=50)
        tps = [TopicPartition("out", p) for p in range(PARTITIONS)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        self.counts: dict[int, int] = {}
        self.probes = 0

    def send(self, seqs: range, rate: float | None = RATE) -> None:
        start = time.monotonic()
        for i, seq in enumerate(seqs):
            self.producer.send("in", key=f"k{seq % 31}".encode(), value=f"seq-{seq}".encode())
            if rate:
                time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
        self.producer.flush()

    def wait_ready(self) -> None:
        """Send a probe and wait for its echo: the worker has its partitions."""
        probes = self.probes
        self.producer.send("in", key=b"probe", value=b"probe")
        deadline = time.monotonic() + 60
        while self.probes == probes:
            assert time.monotonic() < deadline, "the echo worker did not start"
            self.poll()

    def wait_for(self, seqs: range, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not all(s in self.counts for s in seqs):
            self.poll()

    def poll(self) -> None:
        for records in self.consumer.poll(timeout_ms=500).values():
            for record in records:
                if record.value.startswith(b"probe"):
                    self.probes += 1
                    continue
                seq = int(record.value.split(b"|")[0].removeprefix(b"seq-"))
                self.counts[seq] = self.counts.get(seq, 0) + 1

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()


@contextmanager
def echo_broker(tmp_path: Path) -> Iterator[tuple[str, Echoes]]:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        ensure_topics(broker.bootstrap, ["in", "out", *changelog_topics("echo", ("seen",))],
                      partitions=PARTITIONS)
        echoes = Echoes(broker.bootstrap)
        try:
            yield broker.bootstrap, echoes
        finally:
            echoes.close()


@contextmanager
def echo_worker(bootstrap: str, log: Path, *flags: str) -> Iterator[None]:
    """The echo worker, stopped cleanly (its offsets committed) at the end."""
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "tests.workers.echo", bootstrap, str(free_port()),
             str(log.parent / "data"), *flags],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield
    finally:
        stop_process_group(worker, 15)


def skipping_run(tmp_path: Path, wait_s: float, *flags: str) -> tuple[dict[int, int], str]:
    """400 messages through a worker whose stream skips some once each (as Faust's takeover
    race does): each partition gets 100, so each skips offset 7 at least."""
    log = tmp_path / "worker.log"
    with echo_broker(tmp_path) as (bootstrap, echoes), \
            echo_worker(bootstrap, log, "--skip-some", *flags):
        echoes.wait_ready()
        echoes.send(range(400))
        echoes.wait_for(range(400), wait_s)
    return echoes.counts, log.read_text()


def restart_run(tmp_path: Path, wait_s: float, *flags: str) -> dict[int, int]:
    """100 messages through a worker; it stops; 600 more wait for it; it starts again, with a
    slow stream (as on a loaded machine), and recovers its table first."""
    log = tmp_path / "worker.log"
    with echo_broker(tmp_path) as (bootstrap, echoes):
        with echo_worker(bootstrap, log, *flags):
            echoes.wait_ready()
            echoes.send(range(100))
            echoes.wait_for(range(100), 20)
        echoes.send(range(100, 700), rate=None)  # the backlog
        with echo_worker(bootstrap, log, "--slow-start", *flags):
            echoes.wait_for(range(700), wait_s)
    return echoes.counts


def test_messages_a_stream_skipped_are_fetched_again_and_processed(tmp_path: Path):
    echoes, log = skipping_run(tmp_path, 30)  # fetched again at the next commit (~3 s)
    assert sorted(echoes) == list(range(400))
    assert "the message there was skipped, not processed" in log
    assert sum(echoes.values()) > 400  # what came after a skipped one came twice


def test_faust_as_released_loses_the_skipped_messages(tmp_path: Path):
    echoes, _ = skipping_run(tmp_path, 10, "--unmended")
    assert len(echoes) < 400  # so the test above can fail


def test_a_backlog_queued_as_recovery_ends_is_processed(tmp_path: Path):
    echoes = restart_run(tmp_path, 45)
    assert sorted(echoes) == list(range(700))


def test_faust_as_released_drops_a_backlog_queued_as_recovery_ends(tmp_path: Path):
    """The loss hangs on where the seek lands against the fetch, and one run in a few (one
    of six runs of the suite on 12-02) kept every message: so up to three runs, one of which
    must lose some. A run that loses none ends as soon as all are echoed."""
    for attempt in range(3):
        (tmp_path / str(attempt)).mkdir()
        echoes = restart_run(tmp_path / str(attempt), 20, "--unmended")
        if len(echoes) < 700:
            break
    assert len(echoes) < 700  # so the test above can fail
