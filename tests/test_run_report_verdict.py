"""`RunReport.ok`, `huimin run`'s verdict, holds only when every one of its checks holds: a
report whose parts all pass is ok, and failing any single part makes it not ok."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from huimin.report import audit_against_oracle, counted
from huimin.run import RunOptions, RunReport
from huimin.run_checks import (
    Accounting,
    BadRequestCheck,
    Comparison,
    DailyReconciliationCheck,
    ReconciliationCheck,
    replay_failures,
    replay_verdict,
)
from simulators.visit_run import HospitalRunResult


def passing_report(**changes: Any) -> RunReport:
    """A report whose every check passes (the parts whose `.ok` is read stand in as
    SimpleNamespace(ok=True); the accounting is a real one, balanced), with `changes`."""
    report = RunReport(
        options=cast(RunOptions, SimpleNamespace()), bad=[],
        result=cast(HospitalRunResult, SimpleNamespace(timed_out=[], interrupted=False)),
        comparison=cast(Comparison, SimpleNamespace(ok=True)), clearing_ok=True,
        clearing_months=2, reconciliation=cast(ReconciliationCheck, SimpleNamespace(ok=True)),
        daily_reconciliation=cast(DailyReconciliationCheck, SimpleNamespace(ok=True)),
        ehr_audit_events=12, ehr_audit_events_expected=12, ehr_operator_audit_events=0,
        bad_requests=cast(BadRequestCheck, SimpleNamespace(ok=True)),
        accounting=Accounting(sent=10, answered_ok=7, answered_error=2, dead_lettered=1),
        out_dir=Path("out"), bootstrap="127.0.0.1:9092", worker_kills=0, setup_s=0.0,
        sign_in_s=0.0, total_s=0.0)
    return dataclasses.replace(report, **changes)


def test_a_report_whose_every_check_passes_is_ok() -> None:
    report = passing_report()
    assert report.accounting.unaccounted == 0
    assert report.ok is True


@pytest.mark.parametrize("failing", {
    "the answers differ from the oracle's": {"comparison": SimpleNamespace(ok=False)},
    "a bad request was not handled as expected": {"bad_requests": SimpleNamespace(ok=False)},
    "an answer timed out": {"result": SimpleNamespace(
        timed_out=["H11010000001202612010800000000"], interrupted=False)},
    "the visits stopped early, on a cluster lost": {"result": SimpleNamespace(
        timed_out=[], interrupted=True)},
    "a request is unaccounted for": {
        "accounting": Accounting(sent=11, answered_ok=7, answered_error=2, dead_lettered=1)},
    "more answers than requests": {
        "accounting": Accounting(sent=9, answered_ok=7, answered_error=2, dead_lettered=1)},
    "a dead letter of a message the hospitals did not send (the platform's own)": {
        "accounting": Accounting(sent=10, answered_ok=7, answered_error=2, dead_lettered=1,
                                 foreign_dead_letters=1)},
    "the clearing differs from the oracle's": {"clearing_ok": False},
    "a hospital's reconciliation failed": {"reconciliation": SimpleNamespace(ok=False)},
    "the daily reconciliation failed": {"daily_reconciliation": SimpleNamespace(ok=False)},
    "fewer audit events than expected": {"ehr_audit_events": 11},
    "more audit events than expected": {"ehr_audit_events": 13},
    "the audit events were not counted": {"ehr_audit_events": None},
    "fewer audit events than expected, an operator's read among them": {
        "ehr_audit_events": 12, "ehr_operator_audit_events": 1},
}.items(), ids=lambda item: item[0])
def test_a_report_with_any_one_failing_check_is_not_ok(failing: tuple[str, dict[str, Any]]
                                                       ) -> None:
    _, changes = failing
    assert passing_report(**changes).ok is False


def test_the_operators_reads_through_the_fhir_views_are_audited_apart_from_the_oracles() -> None:
    """A curl of the FHIR views during a run is audited in the person's record like any
    access; it is not one of the hospitals' accesses the oracle counts, so the run still
    passes."""
    assert passing_report(ehr_audit_events=15, ehr_operator_audit_events=3).ok is True


@pytest.mark.parametrize(("total", "operator", "line"), [
    (12, 0, " (as the oracle's)"),
    (15, 3, " (12 as the oracle's and 3 of the operator's reads through the FHIR views)"),
    (11, 0, " [red](the oracle: 12)[/]"),
    (14, 3, " [red](the oracle: 12; 3 of the operator's reads through the FHIR views)[/]"),
])
def test_the_summary_says_how_many_audit_events_were_the_operators(
        total: int, operator: int, line: str) -> None:
    ehr = {"audit_events": total, "audit_events_expected": 12,
           "operator_audit_events": operator}
    assert audit_against_oracle(ehr) == line


def test_the_summary_counts_one_thing_in_the_singular() -> None:
    assert [counted(1, "document"), counted(2, "document"), counted(1_000, "document")] == \
        ["1 document", "2 documents", "1,000 documents"]
    assert [counted(1, "query", "queries"), counted(0, "query", "queries")] == \
        ["1 query", "0 queries"]


def accounting(**changes: int) -> Accounting:
    """A balanced replay's accounting, with `changes`."""
    return dataclasses.replace(Accounting(sent=10, answered_ok=7, answered_error=2,
                                          dead_lettered=1), **changes)


PASSING_REPLAY: dict[str, Any] = {"timed_out": False, "bad_ok": True, "own_platform": True,
                                  "closed": True, "days_ok": True}


@pytest.mark.parametrize(("failed", "said"), [
    ({"acc": accounting(answered_ok=4)}, "3 requests unanswered"),
    ({"timed_out": True}, "requests given up at the answer timeout"),
    ({"bad_ok": False}, "bad requests not answered or dead-lettered as expected"),
    ({"unexpected_dead_letters": 2}, "2 other requests of these hospitals dead-lettered"),
    ({"acc": accounting(foreign_dead_letters=4, foreign_failures=1)},
     "1 failure of the platform's (E9001/E9002) on messages no hospital sent; 4 dead letters "
     "of messages these hospitals did not send, on the replay's own platform"),
    ({"closed": False}, "the period not closed"),
    ({"days_ok": False}, "hospital-days not reconciled as expected")])
def test_a_failed_replays_closing_line_names_what_failed_it(failed: dict[str, Any],
                                                             said: str) -> None:
    failures = replay_failures(**{"acc": accounting(), **PASSING_REPLAY, **failed})
    assert replay_verdict(failures) == f"{said} (said above)"


def test_a_replay_passes_only_when_nothing_failed_it_and_says_what_it_did_not_judge() -> None:
    assert replay_failures(accounting(), **PASSING_REPLAY) == []
    both = replay_failures(accounting(), **{**PASSING_REPLAY, "bad_ok": False, "closed": False})
    assert replay_verdict(both) == ("bad requests not answered or dead-lettered as expected; "
                                    "the period not closed (said above)")
    # another producer's dead letters fail only a replay on its own platform
    stray = accounting(dead_lettered=1, foreign_dead_letters=1)
    assert replay_failures(stray, **{**PASSING_REPLAY, "own_platform": False}) == []
    assert replay_verdict([]) == ("every request answered or dead-lettered, the bad requests "
                                  "and the hospitals' days as expected; the answers "
                                  "themselves: huimin verify")
    assert "(the hospitals' days not judged)" in replay_verdict([], days_judged=False)
