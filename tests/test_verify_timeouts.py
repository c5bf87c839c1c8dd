"""`huimin verify` names a visit the hospital gave up on (TIMEOUT) as timed out, with the
request it waited for and how many after it were never sent. Compared one by one, each read
"0 answers, expected 1", as if the platform had lost those answers (an operator's review:
a broker frozen for 25 s timed out 4 visits, and the verdict said nothing of time-outs)."""

from __future__ import annotations

from pathlib import Path

import orjson

from huimin.logfiles import outcome_record, read_visit_log
from messages.codes import TIMED_OUT
from messages.visitlog import VisitSession
from tests.verifying import results_with_first_answers, verify


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
    assert verdict["timed_out"] == 1 and verdict["timed_out_after_settling"] == 0
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
    log, results, visit_no, msgids = timed_out_at(tmp_path, -1)
    _, _, verdict = verify(log, results)
    failures = verdict["checks"]["answers equal the oracle"]["failures"]
    [line] = [f for f in failures if f.startswith(f"visit {visit_no} ")]
    assert f"{msgids[-1]}: timed out" in line, line
    assert line.endswith("shows where it went)") and "later request" not in line, line


def test_a_settled_visit_timed_out_at_a_later_request_is_named_by_the_msgid_kept(
        tmp_path: Path) -> None:
    """A visit whose publish (7001) after its settlement timed out keeps the outcome
    `settled`; its result's `timed_out` names the request (a review: it read "0 answers,
    expected 1" again). A request sent before it and unanswered is compared as ever."""
    log, results = results_with_first_answers(tmp_path, None)
    records = [orjson.loads(line) for line in results.read_bytes().splitlines()]
    record = next(r for r in records if len(r["answers"]) >= 4 and r["outcome"] == "settled")
    msgids = list(record["answers"])
    waited = msgids[-2]
    record["answers"] = {**{m: record["answers"][m] for m in msgids[:-2]}, waited: []}
    record["timed_out"] = waited
    results.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    code, output, verdict = verify(log, results)
    assert code == 1 and verdict["timed_out"] == 1, output
    [line] = [f for f in verdict["checks"]["answers equal the oracle"]["failures"]
              if f.startswith(f"visit {record['visit_no']} ")]
    assert f"{waited}: timed out" in line and line.endswith("its 1 later request was not sent")
    assert "0 answers, expected" not in output
    # counted apart, so that the line adds up with the results' TIMEOUT outcomes (a tester's
    # walk: 237 said, 228 TIMEOUT in the file)
    assert verdict["timed_out_after_settling"] == 1
    said = " ".join(output.split())
    assert "1 visit timed out at the hospital (0 ended TIMEOUT; 1 after their settlement" in said


def test_a_wrong_answer_of_a_visit_that_did_not_time_out_is_no_time_out(tmp_path: Path) -> None:
    log, results = results_with_first_answers(tmp_path, {"infcode": -1, "err_code": "E4001"})
    code, output, verdict = verify(log, results)
    assert code == 1 and verdict["timed_out"] == 0 and "TIMEOUT" not in output, output


def test_a_result_keeps_the_msgid_its_hospital_gave_up_on(tmp_path: Path):
    """Kept apart from the outcome, which a settlement learned before names `settled`."""
    log, _ = results_with_first_answers(tmp_path, None)
    _, visits = read_visit_log(log)
    session = VisitSession(next(iter(visits)))
    msgid = session.msgid_at(0)
    session.sent = [(msgid, session.visit.steps[0])]
    session.failed = {"infcode": -1, "inf_refmsgid": msgid, "err_code": TIMED_OUT,
                      "err_msg": "no answer within the timeout", "output": {}}
    record = outcome_record(session, "")
    assert record["outcome"] == TIMED_OUT and record["timed_out"] == msgid
    session.failed = None
    assert "timed_out" not in outcome_record(session, "")
