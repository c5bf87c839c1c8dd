"""A worker cut off from its Kafka cluster says so: with its broker frozen (SIGSTOP) it still
answers scrapes, and `huimin_cluster_reachable` goes to 0 with one ERROR line naming the
cluster's address; with the broker going on again, back to 1 with a line saying after how
long. Before, only the hospital simulator's time-outs could show it (an operator's review)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from huimin.run import platform
from streams.broker import EmbeddedBroker
from streams.cluster_contact import ANSWER_WITHIN_S, ASK_EVERY_S
from tests.test_e2e_operations import SPEC, scrape, total

pytestmark = pytest.mark.e2e


def reachable_becomes(port: int, want: float, timeout_s: float) -> float | None:
    """The gauge once it reads `want`, or the last value read when `timeout_s` is up."""
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        seen = total(scrape(f"http://127.0.0.1:{port}/metrics"), "huimin_cluster_reachable")
        if seen == want:
            return seen
        time.sleep(0.5)
    return seen


def test_a_worker_whose_broker_is_frozen_says_so_and_says_when_it_answers_again(
        tmp_path: Path):
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as tansu, \
            platform(tansu.bootstrap, SPEC, 1, tmp_path) as p:
        p.wait_until_serving()
        [worker] = p.workers
        port = worker.cfg.web_port
        assert reachable_becomes(port, 1.0, 10) == 1.0
        assert tansu.process is not None
        os.kill(tansu.process.pid, signal.SIGSTOP)
        try:
            # a scrape is answered all along: the worker's own asking is what tells
            assert reachable_becomes(port, 0.0, ASK_EVERY_S + ANSWER_WITHIN_S + 10) == 0.0
        finally:
            os.kill(tansu.process.pid, signal.SIGCONT)
        assert reachable_becomes(port, 1.0, ASK_EVERY_S + ANSWER_WITHIN_S + 10) == 1.0
        said = worker.log_path.read_text(errors="replace")
        address = tansu.bootstrap
        assert said.count(f"the Kafka cluster at {address} does not answer this worker") == 1, \
            said[-3000:]
        assert f"the Kafka cluster at {address} answers this worker again, after" in said
