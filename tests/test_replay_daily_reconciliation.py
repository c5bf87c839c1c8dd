"""`huimin replay` says how the hospitals' days reconciled (3201/3202), as `huimin run` does,
and fails where a hospital-day stayed 不平: the platform's totals for that day are not what
the hospital's books hold, which no other check of a replay sees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from huimin import cli
from huimin.run import Execution
from settlement.reconciliation import BALANCED, UNBALANCED
from simulators.reconciliation import DailyReconciler, DayReconciliation, HospitalBooks
from simulators.visit_run import HospitalRunResult


def replay_with_days(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     days: list[DayReconciliation], held_before: int = 0) -> Any:
    """A replay into a platform whose hospitals reconciled `days`, nothing else happening;
    the platform held `held_before` requests before it."""
    log = tmp_path / "v.jsonl"
    runner = CliRunner()
    assert runner.invoke(cli.app, ["generate", "--persons", "200", "--visits", "3",
                                   "-o", str(log)]).exit_code == 0

    def reconciled(*_: Any, on_visits_over: Any, **__: Any) -> Execution:
        daily = DailyReconciler(HospitalBooks(),
                                days={(d.fixmedins_code, d.day): d for d in days})
        result = HospitalRunResult([], {}, {}, [], [], 0, 1.0, daily=daily)
        on_visits_over(result)
        return Execution(result, "127.0.0.1:1", 0, None, None, None, {}, 0.0, 0.0)

    monkeypatch.setattr(cli, "execute", reconciled)
    monkeypatch.setattr(cli, "check_reachable", lambda *_: None)
    monkeypatch.setattr(cli, "_check_platform_there", lambda *_: held_before)
    return runner.invoke(cli.app, ["replay", str(log), "--rate", "10", "--bootstrap",
                                   "127.0.0.1:1", "--bad-per-kind", "0",
                                   "--results", str(tmp_path / "r.jsonl")])


def test_a_replay_whose_days_all_balanced_says_how_and_passes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    days = [DayReconciliation("H11010000001", "2026-01-05", attempts=1, result=BALANCED),
            DayReconciliation("H11010000001", "2026-01-06", attempts=2, result=BALANCED,
                              waited=1)]
    result = replay_with_days(tmp_path, monkeypatch, days)
    assert result.exit_code == 0, (result.output, result.exception)
    line = " ".join(result.output.split())
    assert "Daily reconciliation 2 hospital-days: 1 平 at once, 0 不平 until 3202 detailed " \
           "0 settlements whose answers were lost (expected 0), 1 平 once the clearing " \
           "caught up, 0 left 不平" in line


def test_a_day_balanced_by_posting_a_lost_cancellation_is_said_so_and_passes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A hand-written `2208~`: the day balances once the HIS posts the cancellation 3202
    details; it was counted as balanced once the clearing caught up."""
    days = [DayReconciliation("H11010000001", "2026-01-05", attempts=2, first=UNBALANCED,
                              result=BALANCED, undoings_posted=1, undone_fen=[5_000, 3_000, 0])]
    result = replay_with_days(tmp_path, monkeypatch, days)
    assert result.exit_code == 0, (result.output, result.exception)
    line = " ".join(result.output.split())
    assert "1 不平 until 3202 detailed 0 settlements whose answers were lost (expected 0) " \
           "and 1 cancellation, 0 平 once the clearing caught up, 0 left 不平" in line
    # the summary's money is the visits' (the cancelled settlement's visit reads `settled`):
    # what the cancellation gave back is kept beside it
    summary = json.loads((tmp_path / "r.summary.json").read_text())
    assert summary["daily_reconciliation"]["undone_money_fen"] == {
        "medfee_sumamt": 5_000, "hifp_pay": 3_000, "acct_pay": 0}


def test_a_replay_with_a_day_left_unbalanced_fails_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    days = [DayReconciliation("H11010000001", "2026-01-05", attempts=1, result=BALANCED),
            DayReconciliation("H31010000002", "2026-01-06", attempts=10, first=UNBALANCED,
                              result=UNBALANCED)]
    result = replay_with_days(tmp_path, monkeypatch, days)
    assert result.exit_code == 1, (result.output, result.exception)
    out = " ".join(result.output.split())
    assert "1 left 不平" in out
    assert f"- H31010000002 2026-01-06: {UNBALANCED} after 10 3201" in out


def test_a_replay_posting_other_settlements_than_the_lost_answers_fails_saying_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Balanced in the end, but only by a settlement posted from 3202 that no hospital lost
    the answer of: the platform settled what the hospitals never saw settled."""
    days = [DayReconciliation("H11010000001", "2026-01-05", attempts=2, first=UNBALANCED,
                              result=BALANCED, posted=1, posted_fen=[5_000, 3_000, 0])]
    result = replay_with_days(tmp_path, monkeypatch, days)
    assert result.exit_code == 1, (result.output, result.exception)
    out = " ".join(result.output.split())
    assert "1 不平 until 3202 detailed 1 settlement whose answers were lost (expected 0)" in out
    assert "- 1 settlement posted from 3202, 0 expected" in out


def test_a_day_left_unbalanced_on_a_platform_holding_earlier_requests_is_told_not_judged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A 3201's msgid is the hospital's and the day's: a day an earlier replay reconciled is
    answered as it was then, about that replay's books, so it cannot judge this one."""
    days = [DayReconciliation("H31010000002", "2026-01-06", attempts=10, first=UNBALANCED,
                              result=UNBALANCED)]
    result = replay_with_days(tmp_path, monkeypatch, days, held_before=40)
    assert result.exit_code == 0, (result.output, result.exception)
    out = " ".join(result.output.split())
    assert "1 left 不平" in out and "not judged: the platform held earlier requests" in out
    assert "- H31010000002" not in out


def test_a_day_balanced_at_its_first_3201_is_said_so_though_its_details_posted_a_lost_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`2208~ 2207~` of one money: 平 at the first 3201, then 3202 (the day had a lost
    answer) posted both and 3201 asked again: it read "不平 until 3202" (a review)."""
    days = [DayReconciliation("H11010000001", "2026-01-05", attempts=2, first=BALANCED,
                              result=BALANCED, posted=1, undoings_posted=1)]
    result = replay_with_days(tmp_path, monkeypatch, days)
    line = " ".join(result.output.split())
    assert "Daily reconciliation 1 hospital-days: 1 平 at once, 0 不平 until 3202" in line
