"""Shared fixtures. End-to-end tests start their own embedded broker (or use
KAFKA_BOOTSTRAP_SERVERS) and need no setup by hand."""

from __future__ import annotations

import os
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
