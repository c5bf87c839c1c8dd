"""A message a Faust stream skips is fetched again, not lost: on the real broker, a Faust echo
worker on huimin's settings whose stream skips some messages once each, as Faust's takeover
race does (streams/faust_offsets.py). Every message sent is echoed; Faust as released loses
the skipped ones."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.broker import EmbeddedBroker, free_port, stop_process_group
from streams.topics import changelog_topics, ensure_topics
from tests.conftest import REPO
from tests.workers.skipping_echo import PARTITIONS

pytestmark = pytest.mark.e2e

MESSAGES = 400
RATE = 100.0  # per second; 100 messages per partition, so each skips offset 7 at least


def echo_run(tmp_path: Path, wait_s: float, *flags: str) -> tuple[dict[int, int], str]:
    """Send MESSAGES sequenced messages through the skipping echo worker and wait up to
    `wait_s` for their echoes; return how many each sequence number got, and the log."""
    log = tmp_path / "worker.log"
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        ensure_topics(broker.bootstrap, ["in", "out", *changelog_topics("skipping-echo",
                                                                         ("seen",))],
                      partitions=PARTITIONS)
        with log.open("wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "tests.workers.skipping_echo", broker.bootstrap,
                 str(free_port()), str(tmp_path / "data"), *flags],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            echoes = send_and_collect(broker.bootstrap, wait_s)
        finally:
            stop_process_group(worker, 10)
    return echoes, log.read_text()


def send_and_collect(bootstrap: str, wait_s: float) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=50)
    tps = [TopicPartition("out", p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    producer.send("in", key=b"probe", value=b"probe")  # echoed once the worker is ready
    deadline = time.monotonic() + 60
    while not any(r.value.startswith(b"probe") for records in
                  consumer.poll(timeout_ms=500).values() for r in records):
        assert time.monotonic() < deadline, "the echo worker did not start"
    start = time.monotonic()
    for seq in range(MESSAGES):
        producer.send("in", key=f"k{seq % 31}".encode(), value=f"seq-{seq}".encode())
        time.sleep(max(0.0, start + (seq + 1) / RATE - time.monotonic()))
    producer.flush()
    producer.close()
    echoes: dict[int, int] = {}
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and len(echoes) < MESSAGES:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                if record.value.startswith(b"probe"):
                    continue
                seq = int(record.value.split(b"|")[0].removeprefix(b"seq-"))
                echoes[seq] = echoes.get(seq, 0) + 1
    consumer.close()
    return echoes


def test_messages_a_stream_skipped_are_fetched_again_and_processed(tmp_path: Path):
    echoes, log = echo_run(tmp_path, 30)  # fetched again at the next commit (~3 s)
    assert sorted(echoes) == list(range(MESSAGES))
    assert "the message there was skipped, not processed" in log
    assert sum(echoes.values()) > MESSAGES  # what came after a skipped one came twice


def test_faust_as_released_loses_the_skipped_messages(tmp_path: Path):
    echoes, _ = echo_run(tmp_path, 10, "--unmended")
    assert len(echoes) < MESSAGES  # so the test above can fail
