"""`huimin verify` and `huimin clearing` read a results file visit by visit (an ops team's
soak of hours wrote more results than a machine holds: read whole, ~46 KiB a visit), and
judge it as they judged it read whole: in the log's order, out of it, or from a pipe."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from huimin import cli
from huimin.logfiles import LogFormatError
from huimin.verify import ResultsFile
from tests.verifying import results_with_first_answers, verify


def test_the_results_are_held_as_places_and_each_read_once_taken(tmp_path: Path) -> None:
    _, results = results_with_first_answers(tmp_path, None)
    with ResultsFile(results) as held:
        assert len(held.places) == 20 and all(type(p) is int for p in held.places.values())
        first = held.take(0)  # visits are numbered from 0
        assert first is not None and first["visit_no"] == 0 and 0 not in held.places
        assert held.take(0) is None  # not held after: taken once
        last = held.take(19)  # out of order: read from its place
        assert last is not None and last["visit_no"] == 19 and len(held.places) == 18


def test_results_out_of_the_logs_order_get_the_same_verdict(tmp_path: Path) -> None:
    log, results = results_with_first_answers(tmp_path, {"infcode": -1, "err_msg": "no"})
    in_order = verify(log, results)
    lines = results.read_bytes().splitlines(keepends=True)
    random.Random(1).shuffle(lines)
    results.write_bytes(b"".join(lines))
    shuffled = verify(log, results)
    assert in_order[0] == shuffled[0] == 1  # the two altered answers fail it, either way
    assert in_order[2] == shuffled[2]


def test_results_from_a_pipe_are_read_once_and_held(tmp_path: Path) -> None:
    log, results = results_with_first_answers(tmp_path, None)
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    feeder = threading.Thread(target=lambda: fifo.write_bytes(results.read_bytes()))
    feeder.start()
    try:
        code, output, verdict = verify(log, fifo)
    finally:
        feeder.join(timeout=30)
    assert code == 0, output
    assert verdict["answers_compared"] == verdict["answers_equal"] > 100


@pytest.mark.parametrize("change", ["cut short", "rewritten in another order", "appended to"])
def test_results_changed_between_the_two_readings_are_refused_in_words(tmp_path: Path,
                                                                       change: str) -> None:
    """Not a traceback (exit 1 is verify's FAIL), nor another visit's record judged."""
    _, results = results_with_first_answers(tmp_path, None)
    lines = results.read_bytes().splitlines(keepends=True)
    with ResultsFile(results) as held:
        assert held.take(0) is not None
        with results.open("r+b") as f:  # in place: the handle read first sees it
            if change == "cut short":
                f.truncate(len(b"".join(lines[:3])) + 10)
            elif change == "rewritten in another order":
                f.write(b"".join(reversed(lines)))
            else:
                f.seek(0, os.SEEK_END)
                f.write(lines[0])
        with pytest.raises(LogFormatError, match="changed while it was read"):
            held.take(19 if change == "cut short" else 1)


def test_a_second_record_of_a_visit_is_refused_before_any_verdict(tmp_path: Path) -> None:
    _, results = results_with_first_answers(tmp_path, None)
    lines = results.read_bytes().splitlines(keepends=True)
    results.write_bytes(b"".join([*lines, lines[4]]))
    with pytest.raises(LogFormatError, match="line 21 is a second record of visit 4 "
                                             r"\(the first is line 5\)"):
        ResultsFile(results)


def test_clearing_reads_the_results_as_verify_does(tmp_path: Path) -> None:
    log, results = results_with_first_answers(tmp_path, None)
    statements = CliRunner().invoke(cli.app, ["clearing", str(log), str(results), "--json"])
    assert statements.exit_code == 0, statements.output
    lines = results.read_bytes().splitlines(keepends=True)
    results.write_bytes(b"".join(reversed(lines)))
    again = CliRunner().invoke(cli.app, ["clearing", str(log), str(results), "--json"])
    assert orjson.loads(again.stdout) == orjson.loads(statements.stdout)
    results.write_bytes(b"".join(lines[:-1]))  # the log's last visit has no result
    cut = CliRunner().invoke(cli.app, ["clearing", str(log), str(results), "--json"])
    assert cut.exit_code == 0 and "1 has no result" in " ".join(cut.output.split())
