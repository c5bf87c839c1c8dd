"""A run or replay whose broker dies under it, through the CLI and the embedded broker
(killed): the visits stop once it has refused every connection for
--stop-after-unreachable, not after each visit has waited out its answer time-out; what was
received is written and every request sent is accounted for (simulators/cluster_watch.py)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import interrupt_huimin, run_huimin

pytestmark = pytest.mark.e2e

#: The embedded broker's command line holds its storage URL.
BROKER = "memory://tansu/"
#: The visits' own time-out: without the stop, a visit awaiting an answer would take this.
ANSWER_TIMEOUT_S = 300


def killing_the_broker(args: list[str], marker: str, cwd: Path
                       ) -> tuple[subprocess.CompletedProcess[str], str, float]:
    """`huimin *args`, its broker killed (SIGKILL) 4 s after `marker`; what it said (its
    whitespace folded), and how long it took in all."""
    started = time.monotonic()
    proc, left = interrupt_huimin([*args, "--answer-timeout", str(ANSWER_TIMEOUT_S),
                                   "--stop-after-unreachable", "3"],
                                  marker=marker, after_s=4, timeout=ANSWER_TIMEOUT_S / 2,
                                  sig=signal.SIGKILL, victim=BROKER, cwd=cwd)
    took = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stdout, proc.stdout
    assert not left  # the workers it started are stopped too
    return proc, " ".join(proc.stdout.split()), took


LOST = (r"\(--stop-after-unreachable\): the cluster refused every connection for 3 s while "
        r"no answer came \(127\.0\.0\.1:\d+: connection refused\)")


def test_a_replay_whose_broker_dies_stops_soon_with_every_request_accounted_for(tmp_path):
    assert run_huimin(["generate", "--persons", "600", "--visits", "150", "--seed", "7",
                       "--cross-share", "0.3", "-o", "v.jsonl"], timeout=120,
                      cwd=tmp_path).returncode == 0
    proc, said, took = killing_the_broker(
        ["replay", "v.jsonl", "--rate", "8", "--results", "r.jsonl"], " 150 visits", tmp_path)
    assert took < ANSWER_TIMEOUT_S / 2
    arrived = re.search(f"Stopped {LOST}: ([\\d,]+) of 150 visits had arrived", said)
    assert arrived, proc.stdout
    sent, ok, error, dead, in_flight = (int(n.replace(",", "")) for n in re.search(
        r"Sent ([\d,]+) = answered OK ([\d,]+) \+ answered with an error ([\d,]+) \+ "
        r"dead-lettered ([\d,]+) \+ unanswered when stopped ([\d,]+)", said).groups())
    assert sent == ok + error + dead + in_flight and ok > 20 and in_flight > 0
    records = (tmp_path / "r.jsonl").read_bytes().splitlines()
    assert 10 < len(records) == int(arrived.group(1)) < 150


def test_a_run_whose_broker_dies_stops_soon_and_fails_saying_why(tmp_path):
    proc, said, took = killing_the_broker(
        ["run", "--persons", "300", "--visits", "300", "--rate", "20",
         "--no-ehr", "--out", "out"], " 300 visits", tmp_path)
    assert took < ANSWER_TIMEOUT_S / 2
    assert re.search(r"FAIL .* - the visits stopped after \d+ s, [\d,]+ of 300 arrived "
                     + LOST, said), proc.stdout
    assert "Reconciliation not done: the cluster could not be reached once the visits " \
           "stopped" in said
    # judged on what was sent and received: no request in flight, bad request or day
    # unanswered at the stop is a failure of its own, and no rerun is offered
    assert "0 answers, expected 1" not in said and "got answers []" not in said
    assert "no dead letter with that code" not in said and "no answer after" not in said
    assert "Reproduce with" not in said
    summary = orjson.loads((tmp_path / "out" / "summary.json").read_bytes())
    assert summary["ok"] is False and "connection refused" in summary["cluster_lost"]
    assert 0 < summary["visits"] < summary["visits_planned"] == 300
    oracle = summary["oracle"]  # every answer received is the oracle's
    assert oracle["answers_equal"] == oracle["answers_compared"] > 100
    assert not oracle["mismatches"] and not summary["bad_requests"]["problems"]
    acc = summary["accounting"]  # the bad requests not sent are not counted as sent
    assert acc["sent"] == acc["answered_ok"] + acc["answered_error"] + acc["dead_lettered"] \
        + acc["unaccounted"] and acc["answered_ok"] > 20
