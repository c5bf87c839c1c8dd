"""A worker killed by the kill-worker fault writes no last line of its own: the run says so in
its log, so an operator reading worker-0.log sees where one process ended and the next
began (it just started a second one)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from streams.process import WorkerProcess


def test_a_worker_killed_and_restarted_says_so_in_its_log(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    log = tmp_path / "worker-0.log"
    log.write_text("the worker's own lines\n")
    worker = WorkerProcess(cfg=None, log_path=log)  # type: ignore[arg-type]
    worker.process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    pid = worker.process.pid
    started: list[bool] = []

    def start() -> WorkerProcess:
        started.append(True)
        return worker

    monkeypatch.setattr(worker, "start", start)
    worker.restart_after_kill()
    assert worker.process.returncode == -9  # SIGKILL, as a crash
    lines = log.read_text().splitlines()
    assert lines[0] == "the worker's own lines"
    assert f"killed this worker (pid {pid}) with SIGKILL" in lines[1]
    assert started == [True]
