"""Platform worker processes started and stopped by huimin (each in its own process group, so
nothing is left behind)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from streams.broker import stopped_with_parent
from streams.config import WorkerConfig

#: Set (to anything) in a worker's environment: the worker lets any process read its stacks
#: (`allow_profilers`), for `huimin bench --profile`.
PROFILABLE_ENV = "HUIMIN_PROFILABLE"
_PR_SET_PTRACER = 0x59616D61
_PR_SET_PTRACER_ANY = ctypes.c_ulong(-1)


def allow_profilers() -> None:
    """Let a sampling profiler that is not this process's parent (py-spy, started beside it)
    read its stacks where Yama's ptrace_scope is 1, Ubuntu's default, which otherwise allows
    only a parent to, or root; a no-op where there is no Yama or no Linux."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PTRACER, _PR_SET_PTRACER_ANY, 0, 0, 0)


#: A worker log's line that says why it stopped, and what a person can do about it.
_EXIT_HINTS = (
    ("InitProducerId", "the cluster refused an idempotent producer (InitProducerId), as "
     "Tansu does: give `--broker tansu` for a Tansu cluster (`--broker kafka` wants Apache "
     "Kafka)"),
)


def exit_reason(name: str, status: int, log_path: Path) -> str:
    """Why a worker that exited by itself did so, for a person: its status, the last error
    its log says (workers log no personal data) and, where one is known, what to do."""
    errors: list[str] = []
    with contextlib.suppress(OSError), open(log_path, encoding="utf-8", errors="replace") as log:
        errors = [line.strip() for line in log if "[ERROR]" in line or "Error:" in line]
    hint = next((h for mark, h in _EXIT_HINTS if any(mark in e for e in errors)), None)
    said = f"; its last error: {errors[-1][:300]}" if errors else ""
    return (f"{name} exited (status {status}) before the platform answered{said} (its log: "
            f"{log_path})" + (f": {hint}" if hint else ""))


class WorkerProcess:
    def __init__(self, cfg: WorkerConfig, log_path: Path, loglevel: str = "info") -> None:
        self.cfg = cfg
        self.log_path = log_path
        self.loglevel = loglevel
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        cmd = [sys.executable, "-m", "streams.worker", orjson.dumps(self.cfg.to_dict()).decode(),
               self.loglevel]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                            preexec_fn=stopped_with_parent())
        return self

    def exited(self) -> int | None:
        """The exit status if the worker has exited (by itself, or stopped), else None."""
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean shutdown, no final commit."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def restart_after_kill(self) -> None:
        """What an operator's supervisor does after a crash: start the same worker again,
        saying so in its log (a killed process writes no last line of its own)."""
        pid = self.process.pid if self.process is not None else None
        self.kill()
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} huimin: killed this worker "
                      f"(pid {pid}) with SIGKILL, as a crash would (the kill-worker fault), "
                      "and started it again\n")
        self.start()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if the worker has not exited within `timeout` seconds: a
        stop that always ends. (To watch a worker stop in its own time, send SIGTERM alone:
        `terminate()`.)"""
        self.terminate()
        self.wait_or_kill(timeout)

    def terminate(self) -> None:
        """SIGTERM: a clean shutdown, in the worker's own time."""
        self._signal(signal.SIGTERM)

    def wait_or_kill(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the worker to exit, then SIGKILL it."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
