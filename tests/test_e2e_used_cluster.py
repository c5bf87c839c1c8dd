"""`huimin run` and `huimin bench` on a cluster an earlier run used (KAFKA_BOOTSTRAP_SERVERS)
stop at once with a clear message, instead of running against that run's rows and failing
with differences; so do they on topics made with another partition count than theirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaProducer
from typer.testing import CliRunner

from huimin import cli
from messages.topics import HOSP_REQUESTS
from streams.broker import BOOTSTRAP_ENV, broker
from streams.topics import create_platform_topics, records_in

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


def test_a_bench_on_topics_of_another_count_or_on_a_used_cluster_is_refused_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`huimin topics --partitions 8` then a bench of one partition a topic: the worker could
    never serve, and the bench waited 90 s for it, then ended in a traceback."""
    bench = ["bench", "--rates", "1", "--duration", "2", "--warmup", "0", "--no-ceiling",
             "--persons", "300"]
    with broker(tmp_path / "broker.log") as bootstrap:
        create_platform_topics(bootstrap, 8)
        monkeypatch.setenv(BOOTSTRAP_ENV, bootstrap)
        unfit = CliRunner().invoke(cli.app, [*bench, "--out", str(tmp_path / "unfit")])
        unfit_run = CliRunner().invoke(cli.app, ["run", "--persons", "300", "--visits", "5",
                                                 "--partitions", "4", "--out",
                                                 str(tmp_path / "unfit-run")])
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        producer.send(HOSP_REQUESTS, key=b"k", value=b"{}").get(timeout=30)
        producer.close()
        used = CliRunner().invoke(cli.app, [*bench, "--partitions", "8", "--out",
                                            str(tmp_path / "used")])
    said = " ".join(unfit.output.split())
    assert unfit.exit_code == 2, unfit.output
    assert (f"the platform's topics on {bootstrap} do not fit a platform of 1 partitions a "
            "topic") in said
    assert "hosp.requests has 8 partitions, not 1" in said and "Traceback" not in said
    assert not (tmp_path / "unfit").exists()  # refused before it made its rate's folder
    assert unfit_run.exit_code == 2, unfit_run.output
    assert "hosp.requests has 8 partitions, not 4" in " ".join(unfit_run.output.split())
    assert not (tmp_path / "unfit-run").exists()  # nor a visit log it would never carry out
    assert used.exit_code == 2, used.output
    assert "already holds 1 hospital requests of an earlier run" in " ".join(
        used.output.split())
    assert not (tmp_path / "used").exists()  # refused before anything was built or written
