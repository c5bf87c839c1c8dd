"""A worker refuses to start on topics that are missing or have other partition counts than
the platform needs, and `huimin topics` says which ones it cannot use, over the real broker.
Without the check, a worker started before `huimin topics` had the broker create the topics
with its own default counts, ran on, and answered nothing (Faust refused every event)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.broker import broker, free_port
from streams.topics import ensure_topics, platform_topics
from tests.conftest import run_huimin

pytestmark = pytest.mark.e2e


def test_a_worker_refuses_missing_topics_and_topics_refuses_other_partition_counts(
        tmp_path: Path):
    with broker(tmp_path / "broker.log") as bootstrap:
        worker = run_huimin(["worker", "--bootstrap", bootstrap, "--persons", "50",
                             "--web-port", str(free_port())], timeout=120)
        assert worker.returncode == 2, worker.stdout + worker.stderr
        assert "missing: hosp.requests" in worker.stderr
        assert "huimin topics --bootstrap" in worker.stderr and "Traceback" not in worker.stderr
        assert "another count" not in worker.stderr  # none was made: only what to do now

        ensure_topics(bootstrap, ["hosp.requests", "money.events", "dead.letters"], partitions=4)
        topics = run_huimin(["topics", "--bootstrap", bootstrap, "--partitions", "8"],
                            timeout=120)
        assert topics.returncode == 2, topics.stdout + topics.stderr
        assert "hosp.requests has 4 partitions, not 8" in topics.stderr
        assert "money.events has 4 partitions, not 1" in topics.stderr
        assert "dead.letters" not in topics.stderr  # read whole: any count serves

        worker = run_huimin(["worker", "--bootstrap", bootstrap, "--persons", "50",
                             "--web-port", str(free_port())], timeout=120)
        assert worker.returncode == 2
        assert "hosp.requests has 4 partitions, not 8" in worker.stderr
        assert "start the worker with --partitions of that count" in " ".join(
            worker.stderr.split())  # a `huimin topics` of 8 would be refused on these
        assert "missing" not in worker.stderr  # `huimin topics` made the others
        assert "create them first" not in worker.stderr.lower()
        assert len(platform_topics(8)) > 10
