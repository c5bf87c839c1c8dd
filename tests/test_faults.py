"""Fault plans: parsed strictly, applied deterministically, and what they do to a visit's plan
is what the oracle then expects (no double charge, every request answered)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from messages.visitlog import VisitSession
from settlement.oracle import Oracle
from simulators.faults import MOST_WORKER_FAULTS, FaultPlan, FaultPlanError
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world

WORLD = build_world(WorldSpec(seed=9, persons=600))
VISITS = list(generate_visits(WORLD, VisitSpec(visits=400, anomaly_share=0.0,
                                                cancel_share=0.0)))
PLAN = FaultPlan.parse("duplicate=0.1,reorder=0.1,lose-answer=0.1,malformed=0.01,kill-worker=2,"
                       "join-worker=1")


def test_the_plan_of_the_issue_parses_and_prints_back():
    assert FaultPlan(duplicate=0.1, reorder=0.1, malformed=0.01, lose_answer=0.1,
                     kill_worker=2, join_worker=1) == PLAN
    assert FaultPlan.parse(str(PLAN)) == PLAN
    assert not FaultPlan.parse("").any


@pytest.mark.parametrize(("text", "reason"), [
    ("dupe=0.1", "unknown fault"), ("duplicate", "duplicate needs a value"),
    ("duplicate=x", "is not a number"), ("duplicate=1.5", "out of range (0 to 1)"),
    ("duplicate=nan", "out of range"), ("reorder=-inf", "out of range"),
    ("kill-worker=-1", "out of range (0 to 10)"), ("kill-worker=1.5", "not a whole number"),
    # a count past any run: it took memory without end before the run began
    ("kill-worker=99999999999999999999", "out of range"), ("join-worker=11", "out of range"),
    ("duplicate=0.1,duplicate=0.2", "duplicate is given twice"),
])
def test_a_bad_fault_plan_is_refused_with_a_reason(text: str, reason: str):
    with pytest.raises(FaultPlanError, match=re.escape(reason)):
        FaultPlan.parse(text)


def test_the_most_worker_faults_a_run_takes_are_accepted():
    plan = FaultPlan.parse(f"kill-worker={MOST_WORKER_FAULTS},join-worker={MOST_WORKER_FAULTS}")
    assert plan.kill_worker == plan.join_worker == MOST_WORKER_FAULTS


def test_faults_are_deterministic_and_leave_msgids_unique():
    once, again = list(PLAN.apply(VISITS, seed=9)), list(PLAN.apply(VISITS, seed=9))
    assert [v.steps for v in once] == [v.steps for v in again]
    assert [v.steps for v in once] != [v.steps for v in VISITS]
    msgids = [VisitSession(v).msgid_at(i) for v in once for i in range(len(v.steps))]
    assert len(msgids) == len(set(msgids))


def test_each_fault_kind_is_planned_and_the_oracle_answers_every_request():
    faulty = list(PLAN.apply(VISITS, seed=9))
    steps = Counter(s for v in faulty for s in v.steps)
    assert steps["2601^"] > 0 and steps["2207~"] > 0 and steps["2207="] > 0
    oracle = Oracle(WORLD.ref)
    requests = overtaken = 0
    for session in oracle.settle_log(faulty):
        for msgid, infno in session.sent:
            answers = session.answers.get(msgid, [])
            assert answers, f"{infno} {msgid} unanswered"
            assert all(a == answers[0] for a in answers)  # duplicates answered identically
            requests += 1
        if session.failed is None and "2601^" in session.visit.steps:
            refused = [a for m, i in session.sent for a in session.answers[m]
                       if a["err_code"] == "E4011"]
            assert len(refused) == 1  # the original that the reversal overtook
            overtaken += 1
    assert requests > 0 and overtaken > 0


def test_faults_change_no_ones_money():
    """Lost answers, reversals first and duplicates end in the same balances and accumulators
    as the plain run: nobody pays twice."""
    plain, faulty = Oracle(WORLD.ref), Oracle(WORLD.ref)
    list(plain.settle_log(VISITS))
    list(faulty.settle_log(FaultPlan.parse("duplicate=0.2,reorder=0.2,lose-answer=0.2")
                           .apply(VISITS, seed=9)))

    def money(rows: dict) -> dict:
        """Balance and what the fund paid by category, over all years: a retried stay may
        settle after new year where the plain one settled before it."""
        out = {}
        for c, r in rows.items():
            paid: Counter[str] = Counter()
            for year in r.ytd.values():
                paid.update(year)
            out[c] = (r.balance, dict(paid))
        return out
    assert money(plain.person_rows) == money(faulty.person_rows)


@pytest.mark.parametrize("seed", [3, 42])
def test_a_persons_visits_never_overlap_in_simulated_time_faulty_plans_included(seed: int):
    """A person is at one hospital at a time: one in five hundred persons' visits fell inside
    their own stay elsewhere (25 of 250 visits of the money-flow review's run), carried after
    it, so that the account paid and a 5206's totals followed the stay, not the dates."""
    world = build_world(WorldSpec(seed=seed, persons=500))
    visits = generate_visits(world, VisitSpec(visits=400, days=10, cross_share=0.5,
                                              start="2027-01-25 08:00:00"))
    last_step: dict[str, str] = {}
    for v in PLAN.apply(visits, seed=seed):
        assert last_step.get(v.certno, "") < v.begntime, v.visit_no
        last_step[v.certno] = VisitSession(v).step_time(len(v.steps) - 1)
    assert len(last_step) < 400  # persons came back, as chronic patients do
