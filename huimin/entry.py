"""The `huimin` command's entry point. The command line imports the whole platform first
(about a second), and a Ctrl-C in that second printed a Python traceback of the imports; it
now stops quietly (exit 130), as a Ctrl-C before anything has started does."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from huimin.cli import app
    except KeyboardInterrupt:
        sys.exit(130)
    app()
