"""The hospitals' own metrics, in process: `huimin_hospital_in_flight_requests` is what they
await (a request given up on at its time-out, or when the run ends, is no longer in it), and
`huimin_hospital_round_trip_seconds` labels its route as the platform's latency does."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from huimin.run import arrivals_at_rate
from messages.platform import ROUTES, route_label
from simulators import hospital_metrics, visit_run
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from tests.fleets import OracleFleet

WORLD = build_world(WorldSpec(seed=7, persons=300))
#: visits of different persons whose first request awaits its answer (not `~`): unanswered,
#: each sends that request only, and times out on it
VISITS = list({v.certno: v for v in generate_visits(WORLD, VisitSpec(visits=40, days=2,
                                                                     ehr=False))
               if "~" not in v.steps[0]}.values())[:8]
REGISTRY = hospital_metrics.HOSPITAL_REGISTRY


def in_flight() -> float:
    return REGISTRY.get_sample_value("huimin_hospital_in_flight_requests") or 0.0


def timeouts() -> float:
    return REGISTRY.get_sample_value("huimin_hospital_timeouts_total") or 0.0


def round_trips_by_route() -> dict[str, float]:
    out: dict[str, float] = {}
    for family in REGISTRY.collect():
        for s in family.samples:
            if s.name == "huimin_hospital_round_trip_seconds_count":
                out[s.labels["route"]] = out.get(s.labels["route"], 0.0) + s.value
    return out


@pytest.mark.parametrize("copies", [1, 2], ids=["once", "redelivered"])
@pytest.mark.parametrize("sink", [None, lambda session, exchanges: None],
                         ids=["kept", "sink"])
def test_a_timed_out_request_leaves_the_in_flight_gauge_and_its_late_answer_changes_nothing(
        sink: Any, copies: int, caplog: pytest.LogCaptureFixture) -> None:
    """A worker killed mid-run: every visit times out. The hospitals then await nothing, so
    the gauge is back where it was (it stayed up by each request timed out); the answers that
    come late, once the worker is back, do not take it below that. Each is counted late once
    (a copy of it again, redelivered, is kept with it, or unexpected once its visit was
    handed to the sink), never as unexpected itself."""
    # held until every visit's request is sent
    fleet = OracleFleet(WORLD, answer_timeout_s=600.0, answering=False)
    before, timeouts_before = in_flight(), timeouts()
    seen: dict[str, float] = {}

    def stop_requested() -> bool:
        if not fleet.answering:
            if "awaited" not in seen and len(fleet.persons) == len(VISITS):
                seen["awaited"], seen["sent"] = in_flight() - before, fleet.sent
                fleet.answer_timeout_s = 0.0  # each times out at the next scan
            if timeouts() - timeouts_before < len(VISITS):
                return False
            seen["timed_out"] = in_flight() - before  # every visit given up on
            fleet.answering = True  # the worker is back: the answers come, late
            fleet.held = [answer for answer in fleet.held for _ in range(copies)]
            return False
        if fleet.held:
            return False
        seen["late"] = in_flight() - before  # the late answers read
        return True

    with caplog.at_level(logging.WARNING, logger="huimin.hospitals"):
        result = fleet.run(VISITS, arrivals_at_rate(len(VISITS), 1000.0), drain_s=60.0,
                           sink=sink, stop_requested=stop_requested)
    assert len(result.timed_out) == len(VISITS)
    # the first time-out is said as it happens, once: a cluster gone is not silent until the end
    said = [r.getMessage() for r in caplog.records if "within 0 s" in r.getMessage()]
    assert said == [f"no answer to {result.timed_out[0]} within 0 s: its visit ended "
                    "unanswered at the counter (later time-outs are counted in "
                    "huimin_hospital_timeouts_total)"]
    extra_copies = len(VISITS) * (copies - 1) if sink is not None else 0
    assert (result.late_answers, result.unexpected_answers) == (len(VISITS), extra_copies)
    assert seen["awaited"] == seen["sent"] >= len(VISITS)  # each visit's first request
    assert seen["timed_out"] == 0
    assert seen["late"] == 0
    assert in_flight() == before


def test_a_time_out_after_a_quiet_minute_is_said_again(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A cluster's second outage is said as its first was (here every time-out comes "after
    a quiet minute"); within one, only its first."""
    monkeypatch.setattr(visit_run, "TIMEOUTS_SAID_AFTER_QUIET_S", -1.0)
    fleet = OracleFleet(WORLD, answer_timeout_s=0.0, answering=False)
    with caplog.at_level(logging.WARNING, logger="huimin.hospitals"):
        result = fleet.run(VISITS, arrivals_at_rate(len(VISITS), 1000.0), drain_s=0.5)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("no answer to")]
    assert len(result.timed_out) == len(VISITS)
    assert said == [f"no answer to {m} within 0 s: its visit ended unanswered at the counter "
                    "(later time-outs are counted in huimin_hospital_timeouts_total)"
                    for m in result.timed_out]


def test_requests_unanswered_when_a_run_stops_leave_the_in_flight_gauge() -> None:
    # never answered, never timed out
    fleet = OracleFleet(WORLD, answer_timeout_s=600.0, answering=False)
    before = in_flight()
    seen: list[float] = []

    def stop_requested() -> bool:
        if len(fleet.persons) < len(VISITS):
            return False
        seen.append(in_flight() - before)
        return True

    result = fleet.run(VISITS, arrivals_at_rate(len(VISITS), 1000.0), drain_s=60.0,
                       stop_requested=stop_requested)
    assert result.interrupted and not result.timed_out
    assert seen[0] == fleet.sent >= len(VISITS)  # awaited while the run went on
    assert in_flight() == before  # the run over, nothing is awaited


def test_round_trips_are_labelled_with_the_platforms_routes_any_other_as_other() -> None:
    """An answer refused before it was routed carries no route, and a message's route is not
    trusted: both are `other`, as in the platform's `huimin_request_latency_seconds`, not
    `local`."""
    kinds: list[dict[str, Any]] = [{}, {"route": "made-up"}, {"route": ["not", "a", "string"]},
                                   {"route": "cross"}]
    fleet = OracleFleet(WORLD, answer_timeout_s=600.0, ctx_of=lambda n: kinds[n % len(kinds)])
    before = round_trips_by_route()
    result = fleet.run(VISITS, arrivals_at_rate(len(VISITS), 1000.0), drain_s=5.0,
                       stop_requested=lambda: fleet.sent >= 4 * len(kinds) and not fleet.held)
    assert result.sessions
    after = round_trips_by_route()
    grown = {route for route, n in after.items() if n > before.get(route, 0.0)}
    assert grown == {"other", "cross"}
    assert set(after) <= {*ROUTES, "other"}


def test_the_route_label_is_one_of_the_platforms_routes_or_other() -> None:
    assert [route_label(r) for r in ("local", "cross", "recon", "ehr")] == list(ROUTES)
    assert [route_label(r) for r in (None, "", "LOCAL", ["local"], 7)] == ["other"] * 5


def test_a_settlement_answered_after_its_time_out_is_not_the_hiss_but_reconciliation_finds_it(
        ) -> None:
    """The counter gave up on the settlement: its answer, come late, is recorded with the
    visit but not acted on: the visit ends TIMEOUT (it read `settled`), and the HIS's books
    leave the settlement out as a lost answer's, so that 3202 details it and the hospital
    posts it, as README says (its day was 平 at once: a fault review)."""
    from settlement.ledger import events_from_answers
    from simulators.reconciliation import (
        HospitalBooks,
        settlements_given_up,
        settlements_to_post,
    )

    plain = VisitSpec(visits=30, days=2, ehr=False, anomaly_share=0.0, cancel_share=0.0,
                      inpatient_share=0.0)
    visits = list({v.certno: v for v in generate_visits(WORLD, plain)}.values())[:4]

    class SettlementsLate(OracleFleet):
        """Answers all but the settlements, which are held until `answering` is set."""

        def _poll(self, timeout_ms: int, worlds: set[str] | None = None) -> list[dict[str, Any]]:
            out = [m for m in self.held
                   if self.answering or m["ans"]["output"].get("setlinfo") is None
                   or not m["ans"]["output"]["setlinfo"].get("setl_id")]
            self.held = [m for m in self.held if m not in out]
            return out

    fleet = SettlementsLate(WORLD, answer_timeout_s=1.0, answering=False)

    def stop_requested() -> bool:
        if timeouts() - timeouts_before < len(visits):
            return False
        fleet.answering = True  # the settlements' answers come now, late
        return not fleet.held

    timeouts_before = timeouts()
    result = fleet.run(visits, arrivals_at_rate(len(visits), 1000.0), drain_s=10.0,
                       stop_requested=stop_requested)
    assert len(result.timed_out) == len(visits)
    books = HospitalBooks()
    for session in result.sessions:
        settle = next(m for m, infno in session.sent if infno == "2207")
        assert session.failed is not None and session.failed["inf_refmsgid"] == settle
        assert session.answers[settle][0]["infcode"] == 0  # the late answer, recorded
        assert session.settlement is None  # not the HIS's: the visit ended TIMEOUT
        assert settle in session.lost
        books.record(session)
        code = session.visit.fixmedins_code
        assert not events_from_answers(code, session.exchanges(seen_only=True))
    assert settlements_to_post(result.sessions) == len(visits)
    assert settlements_given_up(result.sessions) == len(visits)  # a run's count, from these
    assert books.hospitals == []  # no settlement in any HIS's books: each day 不平 till 3202


def test_a_day_with_a_lost_answer_is_reconciled_only_once_that_answer_has_come() -> None:
    """A `2208~` ends its visit at once (the HIS does not wait for the answer): its day was
    reconciled then, before the platform had undone the settlement, read 平, and was never
    reconciled again (a review). The day now waits for the lost answer to come (the HIS
    does not see it; what it did is then on its way to the clearing)."""
    plain = VisitSpec(visits=30, days=2, ehr=False, anomaly_share=0.0, cancel_share=0.0,
                      inpatient_share=0.0)
    first = next(iter(generate_visits(WORLD, plain)))
    visit = first.model_copy(update={"steps": [*first.steps, "2208~"]})
    seen: dict[str, float] = {}

    class CancellationLate(OracleFleet):
        """Holds the cancellation's answer until `answering`; notes when the first 3201
        was sent and when the cancellation's answer was handed over."""

        def _send(self, key: Any, value: bytes, sender: str = "",
                  signing: str = "valid") -> int:
            if b'"3201"' in value:
                seen.setdefault("3201", time.monotonic())
            return super()._send(key, value, sender, signing)

        def _poll(self, timeout_ms: int, worlds: set[str] | None = None) -> list[dict[str, Any]]:
            out = [m for m in self.held if self.answering
                   or "init_setl_id" not in (m["ans"]["output"].get("setlinfo") or {})]
            self.held = [m for m in self.held if m not in out]
            if self.answering and out:
                seen.setdefault("cancel answered", time.monotonic())
            return out

    fleet = CancellationLate(WORLD, answer_timeout_s=30.0, answering=False)
    started = time.monotonic()

    def stop_requested() -> bool:
        if time.monotonic() - started > 1.0:
            fleet.answering = True  # the lost answer comes now
        return "3201" in seen

    fleet.run([visit], arrivals_at_rate(1, 1000.0), drain_s=5.0,
              stop_requested=stop_requested)
    assert seen["3201"] >= seen["cancel answered"] >= started + 1.0
