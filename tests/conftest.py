"""Shared fixtures. End-to-end tests start their own embedded broker (or use
KAFKA_BOOTSTRAP_SERVERS) and need no setup by hand."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Copies of ../shared/data/fhir (HL7 examples CC0-1.0, Synthea bundles Apache-2.0; see its
#: SOURCES.md), kept in the repository so that a clean checkout anywhere can run the tests.
FHIR_DATA = REPO / "tests" / "data" / "fhir"


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def huimin_command() -> str:
    """The `huimin` console script of this checkout's .venv (else the one on PATH)."""
    path = REPO / ".venv" / "bin" / "huimin"
    return str(path) if path.exists() else "huimin"


def run_huimin(args: list[str], timeout: float, **kwargs: object
               ) -> subprocess.CompletedProcess[str]:
    """`huimin *args`, output captured as text. On time-out it gets SIGTERM first, so that it
    stops the broker and workers it started (`subprocess.run` would SIGKILL it and leave them
    running), and SIGKILL only if it has not ended 30 s later; the time-out is then raised."""
    with subprocess.Popen([huimin_command(), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kwargs) as proc:  # type: ignore[call-overload]
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
