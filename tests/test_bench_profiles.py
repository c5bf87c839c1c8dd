"""`huimin bench --profile`: py-spy's stacks of each component become shares of its samples by
thread, by function and by what a function was under, with each thread's trunk (the module,
the event loop's run, the hospitals' loop) left out so that the list says where time goes."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.profiles import Profiles, can_attach, py_spy, read_stacks, summarise
from benchmarks.report import profile_lines
from tests.conftest import TOOLS_REQUIRED

ROOT = "<module> (streams/worker.py:53);run_worker (streams/worker.py:39);run (mode/worker.py:9)"
MAIN = f"thread (1): MainThread;{ROOT}"


def stacks(lines: dict[str, int]) -> Counter[str]:
    return Counter(lines)


def test_a_threads_trunk_is_left_out_and_the_branches_below_it_are_counted():
    found = stacks({
        f"{MAIN};agent (streams/app.py:190);decode (messages/codec.py:20)": 35,
        f"{MAIN};agent (streams/app.py:195);send (aiokafka/producer.py:7)": 30,
        f"{MAIN};on_message (faust/transport/conductor.py:5)": 25,
        MAIN: 5,  # in the event loop's native code
        "thread (1): MainThread;decode (messages/codec.py:21)": 2,  # a stack read cut short
        "thread (2): Thread-1;_bootstrap (threading.py:1);poll (aiokafka/conn.py:3)": 3,
    })
    summary = summarise(found)
    assert summary["samples"] == 100
    assert summary["threads"] == [["MainThread", 0.97], ["Thread-1", 0.03]]
    assert summary["self"][:3] == [["decode (messages/codec.py)", 0.37],
                                   ["send (aiokafka/producer.py)", 0.3],
                                   ["on_message (faust/transport/conductor.py)", 0.25]]
    inclusive = dict(map(tuple, summary["inclusive"]))
    assert inclusive["agent (streams/app.py)"] == 0.65  # its lines 190 and 195 pooled
    assert inclusive["decode (messages/codec.py)"] == 0.37  # the cut-short stack counts too
    assert "run_worker (streams/worker.py)" not in inclusive  # the trunk, down to the loop
    assert "run (mode/worker.py)" not in inclusive
    assert inclusive["poll (aiokafka/conn.py)"] == 0.03  # a frame samples end in: not trunk


def test_the_report_lists_each_components_functions_and_threads():
    summary = summarise(stacks({f"{MAIN};agent (streams/app.py:1)": 3,
                                "thread (2): Thread-1;poll (aiokafka/conn.py:3)": 1}))
    assert summary["inclusive"] == [["agent (streams/app.py)", 0.75],
                                    ["poll (aiokafka/conn.py)", 0.25]]
    text = "\n".join(profile_lines({"points": [{"offered_visits_per_s": 60.0,
                                                "profile": {"workers": summary}}]}))
    assert "## Where the time goes (py-spy" in text
    assert "### 60 visits/s: workers (4 samples)" in text
    assert "| agent (streams/app.py) | 75.0 % | agent (streams/app.py) | 75.0 % |" in text
    assert "Threads: MainThread 75.0 %, Thread-1 25.0 %." in text
    assert profile_lines({"points": [{"offered_visits_per_s": 60.0}]}) == []


def _spin(until: float) -> None:
    while time.monotonic() < until:
        sum(range(1000))


def test_py_spy_samples_this_process_and_finds_the_busy_thread(tmp_path: Path):
    reason = can_attach()
    if reason is not None and not TOOLS_REQUIRED:
        pytest.skip(f"py-spy cannot read this process's stacks here: {reason}")
    busy = threading.Thread(target=_spin, args=(time.monotonic() + 4,), name="spinner")
    busy.start()
    with Profiles({"hospitals": [os.getpid()]}, tmp_path) as profiles:
        busy.join()
    files = list(tmp_path.glob("hospitals-*.txt"))
    assert len(files) == 1 and read_stacks(files[0])
    summary = profiles.summaries()["hospitals"]
    assert summary["samples"] > 50
    assert summary["threads"][0][0] == "spinner"
    assert summary["self"][0][0].startswith("_spin (")  # its loop; the trunk of its thread


def test_a_process_py_spy_cannot_read_is_left_out_and_the_benchmark_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    if py_spy() is None and not TOOLS_REQUIRED:
        pytest.skip("py-spy is not installed")
    gone = 2**22 + 12345  # above the default pid_max: no such process
    with Profiles({"workers": [gone]}, tmp_path) as profiles:
        time.sleep(0.5)
    assert profiles.summaries() == {}
    assert f"no profile of workers-{gone}" in caplog.text
