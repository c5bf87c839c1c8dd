"""`verify --replayed-only` judges a replay stopped by Ctrl-C on what it replayed: visits
without a result are left out and counted, and of a visit still under way the answers
received are compared, so a wrong one still fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from huimin.logfiles import expected_record, outcome_record
from huimin.verify import COMPLETE_CHECK, ORACLE_CHECK, Verdict
from huimin.verify import verify as verify_answers
from settlement.oracle import Oracle
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world, world_tag
from tests.verifying import results_with_first_answers, verify

WORLD = build_world(WorldSpec(seed=7, persons=300))
VISITS = list(generate_visits(WORLD, VisitSpec(visits=40, days=5)))
SESSIONS = list(Oracle(WORLD.ref).settle_log(VISITS))
TAG = world_tag(WORLD.spec)
EXPECTED = [expected_record(s, TAG) for s in SESSIONS]


def stopped_replay(path: Path, replayed: int, cut_short: int) -> list[dict[str, Any]]:
    """The results of a replay stopped after `replayed` visits, the last `cut_short` of them
    still waiting for the answer to their last request."""
    records = [orjson.loads(orjson.dumps(outcome_record(s, TAG))) for s in SESSIONS[:replayed]]
    for record in records[replayed - cut_short:]:
        last = list(record["answers"])[-1]
        record["answers"][last] = []
        record["under_way"] = True
    write(path, records)
    return records


def write(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


def judge(path: Path, replayed_only: bool) -> Verdict:
    return verify_answers(iter(VISITS), iter(EXPECTED), path, WORLD.ref, replayed_only)


def test_what_a_stopped_replay_received_passes_and_what_it_left_out_is_counted(
        tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    stopped_replay(results, replayed=25, cut_short=3)
    whole = judge(results, replayed_only=False)  # without the option: it is incomplete
    assert not whole.ok and len(whole.failures[COMPLETE_CHECK]) == 15
    assert (whole.visits, whole.no_result) == (40, 15)  # said beside the totals
    part = judge(results, replayed_only=True)
    assert part.ok, dict(part.failures)
    assert (part.visits, part.not_replayed, part.under_way) == (25, 15, 3)


def test_a_wrong_answer_of_a_visit_under_way_still_fails(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    records = stopped_replay(results, replayed=25, cut_short=3)
    victim = records[-1]
    first = next(m for m, answers in victim["answers"].items() if answers)
    victim["answers"][first][0]["infcode"] = -1
    write(results, records)
    part = judge(results, replayed_only=True)
    assert not part.ok
    assert any(f.startswith(f"visit {victim['visit_no']} ") for f in part.failures[ORACLE_CHECK])


def test_a_visit_missing_in_the_middle_or_an_answer_missing_from_a_visit_over_still_fails(
        tmp_path: Path) -> None:
    """A stopped replay leaves out the log's last visits, and only visits under way lack
    answers: anything else is a result lost, which the option must not hide."""
    results = tmp_path / "r.jsonl"
    records = stopped_replay(results, replayed=25, cut_short=0)
    write(results, records[:10] + records[13:])
    gap = judge(results, replayed_only=True)
    assert gap.failures[COMPLETE_CHECK] == [
        f"visit {n}: no result, though later visits have one" for n in (10, 11, 12)]
    # those are missing, not left out: only the log's visits after the last result are
    assert gap.not_replayed == len(SESSIONS) - 25 and gap.no_result == 3
    over = records[5]
    over["answers"][list(over["answers"])[-1]] = []  # not marked under way
    write(results, records)
    lost = judge(results, replayed_only=True)
    assert any(f.startswith(f"visit {over['visit_no']} ") for f in lost.failures[ORACLE_CHECK])


def test_a_visit_missing_in_the_middle_is_told_as_lost_not_as_one_to_leave_out(
        tmp_path: Path) -> None:
    """Through the command: with --replayed-only given, the line advised --replayed-only."""
    log, results = results_with_first_answers(tmp_path, None)
    lines = results.read_bytes().splitlines(True)
    results.write_bytes(b"".join(lines[:3] + lines[4:]))
    code, output, verdict = verify(log, results, "--replayed-only")
    said = " ".join(output.split())
    assert code == 1 and verdict["no_result"] == 1, output
    assert "1 of those 20 visits has no result" in said
    assert "they come before visits that have one" in said and "with --replayed-only" not in said
    _, output, _ = verify(log, results)  # without it, the advice stands
    assert "judged on what it replayed with --replayed-only" in " ".join(output.split())
