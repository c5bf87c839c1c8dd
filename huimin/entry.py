"""The `huimin` command's entry point. The command line imports the whole platform first
(about a second), and a Ctrl-C in that second printed a Python traceback of the imports; it
now stops quietly (exit 130), as a Ctrl-C before anything has started does. And the
libraries' own output (Typer's `--help`) whose reader went away, or whose device is full,
ends as huimin's does, and output closed from the start is refused as a full device is."""

from __future__ import annotations

import os
import sys


def main() -> None:
    if sys.stdout is None:  # started with its output closed (`huimin … >&-`): what it would
        if sys.stderr is not None:  # print would be lost, and a script read exit 0 as done
            sys.stderr.write("Error: standard output is closed: give it a file, or "
                             "/dev/null to keep nothing\n")
        sys.exit(2)
    try:
        from huimin.cli import app
    except KeyboardInterrupt:
        sys.exit(130)
    from huimin.cli_app import DEVICE_ERRORS, end_for_reader_gone
    stdout_was_null = _stdout_is_null()
    try:
        app()
    except SystemExit as end:
        if end.code == 1 and _a_library_ended_for_reader_gone(stdout_was_null):
            end_for_reader_gone()
        raise
    except OSError as exc:  # `--version` or `--help` onto a full device (/dev/full): the
        if exc.errno not in DEVICE_ERRORS:  # commands' own output says so itself
            raise
        sys.stderr.write(f"Error: {DEVICE_ERRORS[exc.errno]}\n")
        sys.exit(2)


def _a_library_ended_for_reader_gone(stdout_was_null: bool) -> bool:
    """Click and rich end a broken pipe of their own printing with exit 1, which huimin keeps
    for a FAIL: Click with its flush wrapper put on stdout, rich with stdout sent to
    /dev/null (`Console.on_broken_pipe`)."""
    clicks_wrapper = type(sys.stdout).__name__ == "PacifyFlushWrapper"  # Typer's own Click's too
    return clicks_wrapper or (_stdout_is_null() and not stdout_was_null)


def _stdout_is_null() -> bool:
    try:
        return os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(os.devnull))
    except (OSError, ValueError, AttributeError, NotImplementedError):
        return False  # no file descriptor: captured output, or mode's log proxy in a worker
