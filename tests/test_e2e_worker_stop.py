"""A worker stopped after its cluster went away: what its log says. Its Kafka consumer thread
is cancelled in the middle of a retry; that is one line, not a library traceback written out
a WARNING line per line (streams/thread_exits.py), and nothing worse follows it until the
worker is gone."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker, free_port
from streams.config import WorkerConfig
from streams.process import WorkerProcess
from streams.topics import create_platform_topics
from streams.worker import STOP_GRACE_S

pytestmark = pytest.mark.e2e


def wait_for_line(log: Path, text: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = log.read_text(errors="replace") if log.exists() else ""
        if text in seen:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} in the worker's log within {timeout_s:.0f} s:\n"
                         + (log.read_text(errors="replace")[-3000:] if log.exists() else ""))


def test_a_worker_stopped_with_its_cluster_gone_says_so_in_a_line_not_a_traceback(
        tmp_path: Path):
    log = tmp_path / "worker.log"
    embedded = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    worker = None
    try:
        create_platform_topics(embedded.bootstrap, partitions=1)
        worker = WorkerProcess(WorkerConfig(bootstrap=embedded.bootstrap, partitions=1,
                                            web_port=free_port()), log).start()
        wait_for_line(log, "rebalanced: serving", 90)
        embedded.stop()
        wait_for_line(log, "Unable connect to node", 30)  # its fetcher is retrying now
        time.sleep(1)
        assert worker.process is not None
        worker.process.terminate()  # SIGTERM, and the worker left to stop in its own time
        # (not `stop()`, which kills it if it has not exited within its timeout)
        wait_for_line(log, "(AIOKafkaConsumerThread) was cancelled while it stopped", 20)
        # what it says until it is gone: with no cluster to commit to, it gives up after its
        # grace (exit 1, streams/worker.py)
        assert worker.process.wait(STOP_GRACE_S + 20) == 1
        seen = log.read_text(errors="replace")
    finally:
        if worker is not None:
            worker.kill()
        embedded.stop()
    assert f"still stopping after {STOP_GRACE_S:.0f} s (is the cluster reachable?)" in seen
    assert "Traceback" not in seen
    assert "SIGTERM: stopping (committing what was processed" in seen  # said as it began
    assert "CancelledError" not in seen
    assert not [line for line in seen.splitlines() if 'File "' in line]
