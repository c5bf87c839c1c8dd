"""The hospitals' loop stopped by `stop_requested` (a replay's Ctrl-C), in process: the
platform is the oracle, answering each request as it is sent. What was seen is handed back
whole: the visits arrived, the bad requests sent, and every request sent accounted for."""

from __future__ import annotations

from huimin.run import arrivals_at_rate, visit_period
from huimin.run_checks import account
from simulators.bad_messages import generate_bad_messages
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from tests.fleets import OracleFleet

WORLD = build_world(WorldSpec(seed=5, persons=300))
VISITS = list(generate_visits(WORLD, VisitSpec(visits=60, days=3, ehr=False)))


def test_a_stopped_run_hands_back_what_it_saw_with_every_request_accounted_for() -> None:
    fleet = OracleFleet(WORLD)
    bad = generate_bad_messages(WORLD, 1, visit_period(VISITS))
    result = fleet.run(VISITS, arrivals_at_rate(len(VISITS), 50.0), bad, drain_s=0.5,
                       stop_requested=lambda: fleet.sent >= 60)  # some 10 visits in
    assert result.interrupted
    assert 0 < len(result.sessions) < len(VISITS)  # stopped before every visit arrived
    assert [s.visit.visit_no for s in result.sessions] == \
        [v.visit_no for v in VISITS[:len(result.sessions)]]
    assert 0 < result.bad_sent < len(bad)
    assert set(result.bad_answers) <= {b.msgid for b in bad[:result.bad_sent]}
    acc = account(result, bad[:result.bad_sent])
    # counted against what the stand-in broker took and gave, not against one another
    assert acc.sent == fleet.sent + result.bad_sent
    assert acc.answered_ok + acc.answered_error == fleet.delivered and acc.answered_ok > 0
    assert acc.unaccounted == result.bad_sent + len(fleet.held)  # bad ones unanswered


def test_a_run_never_asked_to_stop_is_not_interrupted() -> None:
    fleet = OracleFleet(WORLD)
    result = fleet.run(VISITS[:10], arrivals_at_rate(10, 1000.0), [], drain_s=0.2)
    assert not result.interrupted and len(result.sessions) == 10
    assert all(s.done for s in result.sessions)
