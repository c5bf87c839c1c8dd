"""`huimin run` on a cluster an earlier run used (KAFKA_BOOTSTRAP_SERVERS) stops at once with
a clear message, instead of running against that run's rows and failing with differences."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaProducer
from typer.testing import CliRunner

from huimin import cli
from messages.topics import HOSP_REQUESTS
from streams.broker import BOOTSTRAP_ENV, broker
from streams.topics import records_in

pytestmark = pytest.mark.e2e


def test_a_run_on_a_cluster_holding_an_earlier_runs_requests_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with broker(tmp_path / "broker.log") as bootstrap:
        assert records_in(bootstrap, HOSP_REQUESTS) == 0  # no such topic yet: a fresh cluster
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        producer.send(HOSP_REQUESTS, key=b"k", value=b"{}").get(timeout=30)
        producer.close()
        assert records_in(bootstrap, HOSP_REQUESTS) == 1
        monkeypatch.setenv(BOOTSTRAP_ENV, bootstrap)
        result = CliRunner().invoke(cli.app, ["run", "--visits", "5", "--out",
                                              str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "run").exists()  # refused before anything was built or written
    assert "already holds 1 hospital requests of an earlier run" in " ".join(
        result.output.split())
