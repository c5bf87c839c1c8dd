"""A worker refuses to start on topics that are missing or have other partition counts than
the platform needs, and `huimin topics` says which ones it cannot use, over the real broker.
Without the check, a worker started before `huimin topics` had the broker create the topics
with its own default counts, ran on, and answered nothing (Faust refused every event)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient

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
        # refused, it made none of the others: they would have had the count refused, and
        # its advice (the --partitions the topics have) would then fail (a review)
        assert "missing" not in topics.stderr
        held = topic_counts(bootstrap)
        assert held == {"hosp.requests": 4, "money.events": 4, "dead.letters": 4}, held

        worker = run_huimin(["worker", "--bootstrap", bootstrap, "--persons", "50",
                             "--web-port", str(free_port())], timeout=120)
        assert worker.returncode == 2
        assert "hosp.requests has 4 partitions, not 8" in worker.stderr
        assert "start the worker with --partitions of that count" in " ".join(
            worker.stderr.split())  # a `huimin topics` of 8 would be refused on these
        assert "missing: " in worker.stderr and "create them first" in worker.stderr.lower()

        delete_topics(bootstrap, ["money.events"])  # the one whose count is fixed
        topics = run_huimin(["topics", "--bootstrap", bootstrap, "--partitions", "4"],
                            timeout=120)
        assert topics.returncode == 0, topics.stdout + topics.stderr
        held = topic_counts(bootstrap)
        assert held == platform_topics(4), held
        assert len(platform_topics(8)) > 10


def topic_counts(bootstrap: str) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics()
                if not t["name"].startswith("_")}
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics(names)
    finally:
        admin.close()
