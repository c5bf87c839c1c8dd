"""`huimin run` end to end, as a user runs it: the CLI starts the embedded broker and the
platform, hospitals settle visits over Kafka, and every answer is checked against the oracle."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import orjson
import pytest

from messages.transactions import SetlInfo
from simulators.world import WorldSpec, build_world
from tests.conftest import huimin_command, processes_mentioning

pytestmark = pytest.mark.e2e

SCENARIO = ["--persons", "800", "--visits", "300", "--cross-share", "0.3", "--seed", "11",
            "--rate", "60"]


Run = tuple[Path, subprocess.CompletedProcess[str]]


def run_cli(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([huimin_command(), "run", *SCENARIO, "--out", str(out)],
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    """The same scenario run twice through the CLI, each with its own embedded broker."""
    return [(out, run_cli(out)) for out in (tmp_path_factory.mktemp(n) for n in ("a", "b"))]


def test_every_settlement_equals_the_oracle_and_every_request_is_answered_once(two_runs):
    out, proc = two_runs[0]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = orjson.loads((out / "summary.json").read_bytes())
    oracle = summary["oracle"]
    assert oracle["settlements_expected"] == 300
    assert oracle["settlements_equal"] == 300
    assert oracle["answers_compared"] == oracle["answers_equal"] == 4 * 300
    assert summary["unanswered"] == 0
    assert summary["duplicate_answers"] == 0
    assert summary["unexpected_answers"] == 0
    assert sum(summary["answers_by_outcome"].values()) == 4 * 300
    assert summary["settlements_by_route"]["local"] > 0
    assert summary["settlements_by_route"]["cross"] > 0
    assert "PASS 300 of 300 settlements equal to the oracle" in proc.stdout


def test_the_summary_shows_money_latency_by_route_and_hops(two_runs):
    out, proc = two_runs[0]
    summary = orjson.loads((out / "summary.json").read_bytes())
    money = summary["money_fen"]
    assert money["medfee_sumamt"] >= money["hifp_pay"] + money["acct_pay"] > 0
    for route in ("local", "cross"):
        lat = summary["settlement_latency_ms"][route]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert any(h.startswith("cross nat.in->ins.in") for h in summary["hop_latency_ms_p50"])
    for heading in ("Answers by transaction and outcome", "settlement round trip", "Paid"):
        assert heading in proc.stdout


def test_the_same_seed_gives_byte_identical_settlement_results(two_runs):
    (out1, p1), (out2, p2) = two_runs
    assert p1.returncode == p2.returncode == 0
    first = (out1 / "results.jsonl").read_bytes()
    assert first == (out2 / "results.jsonl").read_bytes()
    assert first.count(b"\n") == 300
    for line in first.splitlines():
        SetlInfo.model_validate(orjson.loads(line)["setlinfo"])


def test_a_run_leaves_no_process_or_port_behind(two_runs):
    for out, _ in two_runs:
        summary = orjson.loads((out / "summary.json").read_bytes())
        host, port = summary["bootstrap"].rsplit(":", 1)
        with socket.socket() as s:
            s.settimeout(0.5)
            assert s.connect_ex((host, int(port))) != 0, "the broker is still listening"
        assert processes_mentioning(str(out)) == []


def test_no_personal_data_in_logs(two_runs):
    world = build_world(WorldSpec(seed=11, persons=800))
    for out, proc in two_runs:
        texts = [proc.stdout, proc.stderr] + [p.read_text(errors="replace")
                                              for p in out.glob("*.log")]
        blob = "\n".join(texts)
        leaked = [c for c in world.ref.enrollments if c in blob]
        assert leaked == []
