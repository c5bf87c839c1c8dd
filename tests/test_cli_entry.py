"""The `huimin` command stops quietly on a Ctrl-C while it is still importing the platform
(about a second after it starts): it printed a traceback of the imports (a user's review).
And it starts without what only the worker needs, and ends as SIGPIPE ends a tool when its
output's reader goes away."""

from __future__ import annotations

import builtins
import os
import shlex
import signal
import subprocess
import sys
from typing import Any

import pytest

from huimin import entry
from tests.conftest import REPO, huimin_command


def test_a_ctrl_c_while_the_command_line_is_imported_exits_130(monkeypatch):
    real_import = builtins.__import__

    def pressed_meanwhile(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "huimin.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", pressed_meanwhile)
    with pytest.raises(SystemExit) as stopped:
        entry.main()
    assert stopped.value.code == 130


def test_the_command_pressed_ctrl_c_at_its_start_prints_no_traceback():
    """Pressed when it is provably importing the command line (Python's import-time lines say
    `typer`, which only huimin.cli imports), not after a guessed sleep: a signal before
    Python's own handler kills it quietly (-2) whatever the entry point does."""
    with subprocess.Popen([huimin_command(), "--version"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
                          ) as proc:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.rsplit("|", 1)[-1].strip() == "typer":
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=30)
    err = "".join(seen) + err
    assert "Traceback" not in err, err
    assert proc.returncode == 130, (proc.returncode, out, err[-2000:])


def test_the_command_line_loads_faust_only_for_the_worker():
    """Faust (with aiohttp) is ~0.2 s of every command's start, and only `huimin worker`
    runs it in its own process; the others start without it."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, huimin.cli; "
         "print(sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'mode', 'aiohttp'}))"],
        capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout


@pytest.mark.parametrize("json_lines", [False, True], ids=["rich-console", "print"])
def test_output_whose_reader_went_away_ends_as_sigpipe_ends_a_tool_not_as_a_fail(
        json_lines: bool):
    """`huimin check-fhir … | head -1`: the rest of the output has no reader. Click and rich
    exit 1 there, which huimin keeps for a FAIL; it exits 141 (128 + SIGPIPE), saying
    nothing."""
    files = sorted(str(p) for p in (REPO / "tests" / "data" / "fhir" / "hl7-r4").glob("*.json"))
    files *= 100  # more lines than a pipe holds (64 KiB): written after the reader has gone
    with subprocess.Popen([huimin_command(), "check-fhir", *(["--json"] if json_lines else []),
                           *files], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # as `head -1` does
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
    assert files[0].encode() in first
    assert proc.returncode == 128 + signal.SIGPIPE, (proc.returncode, err)
    assert err == ""


@pytest.mark.parametrize("args", [["--help"], ["clearing", "--help"], ["--version"]],
                         ids=["help-rich", "command-help", "version-print"])
def test_the_libraries_own_output_whose_reader_went_away_ends_as_sigpipe_ends_a_tool(
        args: list[str]):
    """`huimin --help | head -1`: Typer prints the help (rich's console, or Click's handling of
    a `print` in an option's callback), and both exit 1 when the pipe has no reader. The pipe
    here has none from the start, so the first write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        ended = subprocess.run([huimin_command(), *args], stdout=write_end,
                               stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert ended.returncode == 128 + signal.SIGPIPE, (ended.returncode, ended.stderr)
    assert ended.stderr == ""


def test_help_and_version_written_whole_still_end_0():
    for args in (["--help"], ["--version"]):
        ended = subprocess.run([huimin_command(), *args], capture_output=True, text=True,
                               timeout=60)
        assert ended.returncode == 0, (args, ended.stderr)
        assert "huimin" in ended.stdout


@pytest.mark.parametrize("args", [["--help"], ["generate", "--help"], ["--version"]],
                         ids=["help-rich", "command-help", "version-print"])
def test_help_and_version_onto_a_full_device_end_with_a_short_error_and_2(args: list[str]):
    """`huimin --version > /dev/full` ended in a traceback and exit 1 (a review), where the
    commands' own output says the device is full and exits 2."""
    with open("/dev/full", "w") as full:
        ended = subprocess.run([huimin_command(), *args], stdout=full,
                               stderr=subprocess.PIPE, text=True, timeout=60)
    assert ended.returncode == 2, ended.stderr
    assert ended.stderr == "Error: cannot write the output: no space left on its device\n"


def test_a_command_started_with_its_output_closed_says_so_and_exits_2():
    """`huimin check-fhir … >&-` printed nothing and exited 0, which a script reads as
    done (a scripting review); a full device already ended 2."""
    command = f"{shlex.quote(huimin_command())} check-fhir {shlex.quote(str(REPO))} >&-"
    ended = subprocess.run(command, shell=True, stderr=subprocess.PIPE, text=True, timeout=60)
    assert ended.returncode == 2, ended.stderr
    assert ended.stderr == ("Error: standard output is closed: give it a file, or /dev/null "
                            "to keep nothing\n")
