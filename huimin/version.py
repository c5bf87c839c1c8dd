"""Which code this is: the git commit of a checkout, for `huimin --version` and the
benchmark's record of what it measured."""

from __future__ import annotations

import subprocess
from pathlib import Path


def huimin_commit() -> str:
    """The git commit of the code measured (`-dirty` with changes not committed), or "?"
    outside a checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
