"""The end-to-end run on a real Apache Kafka broker (KRaft, from its Maven Central jars), with
idempotent producers, the faults a visit log carries (duplicates, reversals first, lost
answers, malformed requests) and a worker killed mid-run, over days a policy changes in:
every answer equals the oracle's, as on the embedded Tansu broker. Needs `java` (17+) and
`mvn`, as CI has."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from streams.broker import BOOTSTRAP_ENV
from tests.conftest import huimin_command, needs_java_and_maven, run_huimin

pytestmark = [
    pytest.mark.e2e,
    needs_java_and_maven,
]

POLICY_CHANGE = Path(__file__).parent / "data" / "policy_change.yaml"
# A worker killed mid-run as well: docs/streams.md ("Platform faults on Apache Kafka").
FAULTS = "duplicate=0.05,reorder=0.05,lose-answer=0.05,malformed=0.01,kill-worker=1"


def test_a_faulty_run_on_apache_kafka_equals_the_oracle(tmp_path: Path):
    out = tmp_path / "run"
    proc = run_huimin(["run", "--broker", "kafka", "--persons", "800", "--visits", "300",
                       "--days", "7", "--start", "2027-01-28",  # into February: two months
                       "--policy", str(POLICY_CHANGE),  # changed on 1 February
                       "--rate", "30", "--seed", "29", "--faults", FAULTS,
                       "--answer-timeout", "90",  # the killed worker's partitions wait for it
                       "--out", str(out)], timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = orjson.loads((out / "summary.json").read_bytes())
    assert s["ok"] and s["oracle"]["mismatches"] == []
    assert s["worker_kills"] == 1 and s["platform"]["broker"] == (
        "cluster" if os.environ.get(BOOTSTRAP_ENV) else "kafka")
    assert s["oracle"]["settlements_equal"] == s["oracle"]["settlements_expected"] > 200
    assert s["accounting"]["unaccounted"] == 0
    assert s["clearing"] == {"months": 2, "equal_to_oracle": True}
    assert [c["month"] for c in orjson.loads((out / "clearing.json").read_bytes())] == [
        "2027-01", "2027-02"]  # settled on the days --start gave, over the broker
    # the employees' outpatient deductible, dropped from 1 February: every worker changed
    # policy on the day (and the oracle with them: no mismatch above)
    paid: dict[bool, set[int]] = {True: set(), False: set()}
    for line in (out / "results.jsonl").read_bytes().splitlines():
        setl = orjson.loads(line)["setlinfo"]
        if setl is not None and setl["insutype"] == "310" and setl["med_type"].startswith("1"):
            paid[setl["setl_time"] >= "2027-02-01"].add(setl["act_pay_dedc"])
    assert paid[True] == {0} and max(paid[False]) > 0
    assert s["daily_reconciliation"]["unbalanced"] == []
    assert s["ehr"]["audit_events"] == s["ehr"]["audit_events_expected"]
    assert (out / "broker.log").stat().st_size > 0  # Apache Kafka's own log


def test_huimin_broker_kind_kafka_serves_until_stopped():
    proc = subprocess.Popen([huimin_command(), "broker", "--kind", "kafka"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and "listening on" not in line:
            line = proc.stdout.readline() if proc.stdout else ""
            if proc.poll() is not None:
                break
        assert "Apache Kafka" in line and "listening on" in line, line
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "Broker stopped." in out
