"""`huimin verify` says so where the platform refused requests as replays (E6003) that the
oracle answers: the platform had seen them before, as when a log is replayed again into an
earlier replay's cluster. Without it, the failures that follow (the money checks among them,
when a settlement is refused) read like errors of the platform's."""

from __future__ import annotations

from pathlib import Path

import orjson

from messages.codes import ErrorCode
from messages.envelope import error_answer
from tests.verifying import results_with_first_answers, verify

HINT = "refused as replays (E6003) where the oracle answers them"


def test_requests_refused_as_replays_are_counted_and_explained(tmp_path: Path) -> None:
    log, results = results_with_first_answers(
        tmp_path, error_answer("", ErrorCode.STALE, "older than the operating window"))
    code, output, verdict = verify(log, results)
    assert code == 1 and "2 requests were " + HINT in output, output
    assert verdict["refused_as_replays"] == 2


def test_a_refusal_the_oracle_also_gives_is_no_such_refusal(tmp_path: Path) -> None:
    """An E6003 where the oracle refuses with E6003 too (another wording, so they differ) is
    a plain mismatch: the platform did not refuse what should have been answered."""
    log, results = results_with_first_answers(
        tmp_path, error_answer("", ErrorCode.STALE, "older than the operating window"))
    expected = tmp_path / "v.expected.jsonl"
    records = [orjson.loads(line) for line in results.read_bytes().splitlines()]
    for record in records[:2]:
        for answers in record["answers"].values():
            for answer in answers:
                if answer.get("err_code") == ErrorCode.STALE.value:
                    answer["err_msg"] = "stale, as the oracle words it"
    expected.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    code, output, verdict = verify(log, results)
    assert code == 1 and HINT not in output, output
    assert verdict["refused_as_replays"] == 0


def test_other_wrong_answers_get_no_such_hint(tmp_path: Path) -> None:
    log, results = results_with_first_answers(
        tmp_path, error_answer("", ErrorCode.INVALID_CERTNO, "not an ID number"))
    code, output, verdict = verify(log, results)
    assert code == 1 and HINT not in output and verdict["refused_as_replays"] == 0, output


def test_results_equal_to_the_oracles_pass_without_it(tmp_path: Path) -> None:
    code, output, _ = verify(*results_with_first_answers(tmp_path, None))
    assert code == 0 and HINT not in output, output
