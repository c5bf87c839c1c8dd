"""A worker given no partitions stays in the group as a spare and takes the partitions over
when the others stop. aiokafka takes a consumer that has not fetched for `max_poll_interval`
out of the group for good, and Faust fetches nothing for a worker with no partitions: the
spare left five minutes after it joined (streams/spare.py). Here the interval is 8 s."""

from __future__ import annotations

import json
import time
import urllib.request
from functools import partial
from pathlib import Path

import pytest

from streams.broker import EmbeddedBroker, free_port
from streams.config import WorkerConfig
from streams.process import WorkerProcess
from streams.topics import create_platform_topics
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

INTERVAL_S = 8


def assignment(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/assignment/", timeout=5) as r:
        return json.loads(r.read())


def test_a_worker_with_no_partitions_stays_a_spare_and_takes_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HUIMIN_MAX_POLL_INTERVAL_S", str(INTERVAL_S))
    embedded = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    workers: list[tuple[WorkerProcess, int]] = []
    try:
        create_platform_topics(embedded.bootstrap, partitions=1)
        for i in range(3):  # one partition: the first serves it, the second keeps a
            # standby copy of its tables (and so fetches), the third has nothing at all
            port = free_port()
            workers.append((WorkerProcess(WorkerConfig(
                bootstrap=embedded.bootstrap, partitions=1, web_port=port),
                tmp_path / f"worker-{i}.log").start(), port))
            eventually(f"worker {i} settled in its group", partial(assignment, port),
                       lambda a: a["partitions"] is not None and not a["rebalancing"]
                       and a["generation"] is not None, 120)
        spare = workers[2][1]
        eventually("the partition served, the third worker a spare", lambda: (
            sorted(assignment(p)["partitions"] for _, p in workers) == [[], [], [0]]
            and assignment(spare)["partitions"] == [] and not assignment(spare)["rebalancing"]),
            timeout_s=60)
        time.sleep(3 * INTERVAL_S)  # idle past the interval, several times over
        for worker, _ in workers[:2]:  # the others stop: the spare takes the partition
            worker.stop()
        eventually("the spare serving the partition", lambda: (
            assignment(spare)["partitions"] == [0] and not assignment(spare)["rebalancing"]),
            timeout_s=60)
    finally:
        for worker, _ in workers:
            worker.kill()
        embedded.stop()
    log = (tmp_path / "worker-2.log").read_text(errors="replace")
    assert "rebalanced: serving partitions [0]" in log
