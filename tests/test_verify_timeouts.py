"""`huimin verify` names a visit the hospital gave up on (TIMEOUT) as timed out, with the
request it waited for and how many after it were never sent. Compared one by one, each read
"0 answers, expected 1", as if the platform had lost those answers (an operator's review:
a broker frozen for 25 s timed out 4 visits, and the verdict said nothing of time-outs)."""

from __future__ import annotations

from pathlib import Path

import orjson

from messages.codes import TIMED_OUT
from tests.test_verify_refused_replays import results_with_first_answers, verify


def timed_out_at(tmp_path: Path, step: int) -> tuple[Path, Path, int, list[str]]:
    """A log and its oracle's answers as results, but for the first visit of four requests
    or more: timed out waiting for its request `step` (0-based), those after it not sent.
    Also that visit's number and msgids."""
    log, results = results_with_first_answers(tmp_path, None)
    records = [orjson.loads(line) for line in results.read_bytes().splitlines()]
    record = next(r for r in records if len(r["answers"]) >= 4)
    msgids = list(record["answers"])
    record["answers"] = {m: record["answers"][m] for m in msgids[:step]} | {msgids[step]: []}
    record.update(outcome=TIMED_OUT, setlinfo=None)
    results.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return log, results, record["visit_no"], msgids


def test_a_timed_out_visit_is_named_with_the_request_it_waited_for_and_those_not_sent(
        tmp_path: Path) -> None:
    log, results, visit_no, msgids = timed_out_at(tmp_path, 1)
    code, output, verdict = verify(log, results)
    assert code == 1, output
    assert verdict["timed_out"] == 1
    [line] = [f for f in verdict["checks"]["answers equal the oracle"]["failures"]
              if f.startswith(f"visit {visit_no} ")]
    assert f"{msgids[1]}: timed out, no answer within the hospital's --answer-timeout" in line
    assert f"`huimin trail {msgids[1]}`" in line
    assert line.endswith(f"its {len(msgids) - 2} later requests were not sent"), line
    assert "0 answers, expected" not in output, output
    assert "1 visit timed out at the hospital (TIMEOUT)" in output, output
    # what was answered before the time-out is still compared, and equal
    assert verdict["answers_equal"] == verdict["answers_compared"] - (len(msgids) - 1)


def test_a_visit_timed_out_at_its_last_request_names_no_requests_not_sent(
        tmp_path: Path) -> None:
    log, results, visit_no, msgids = timed_out_at(tmp_path, 3)
    _, _, verdict = verify(log, results)
    failures = verdict["checks"]["answers equal the oracle"]["failures"]
    [line] = [f for f in failures if f.startswith(f"visit {visit_no} ")]
    if len(msgids) == 4:
        assert line.endswith("shows where it went)"), line
    else:
        assert "later request" in line, line


def test_a_wrong_answer_of_a_visit_that_did_not_time_out_is_no_time_out(tmp_path: Path) -> None:
    log, results = results_with_first_answers(tmp_path, {"infcode": -1, "err_code": "E4001"})
    code, output, verdict = verify(log, results)
    assert code == 1 and verdict["timed_out"] == 0 and "TIMEOUT" not in output, output
