"""The invariant checker proves, from answers alone, what must hold after any run: §3
arithmetic, one answer per setl_id, no double settlement, caps, and accumulators equal to the
settlements in force (wherever a 5206 reports them); over all money events, a balanced ledger
that owes each hospital its settlements in force, and clearing equal to the payments."""

from __future__ import annotations

import copy
from dataclasses import replace

from messages.visitlog import VisitSession
from settlement.invariants import CHECKS, InvariantReport, check_money, check_person
from settlement.ledger import events_from_answers
from settlement.oracle import Oracle
from simulators.faults import FaultPlan
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world

WORLD = build_world(WorldSpec(seed=4, persons=500))
PLAN = FaultPlan.parse("duplicate=0.05,reorder=0.05,lose-answer=0.05")


def _faulty_sessions() -> list[VisitSession]:
    visits = PLAN.apply(generate_visits(WORLD, VisitSpec(visits=300)), seed=4)
    return list(Oracle(WORLD.ref).settle_log(visits))


def _check(sessions: list[VisitSession]) -> InvariantReport:
    per_person: dict[str, list] = {}
    for s in sessions:
        for msgid, infno in s.sent:
            per_person.setdefault(s.visit.certno, []).append((infno, s.answers.get(msgid, [])))
    report = InvariantReport()
    for certno, exchanges in per_person.items():
        check_person(WORLD.ref, certno, exchanges, report)
    return report


def test_a_faulty_plan_ends_settling_visits_with_an_accumulator_query_that_checks_out():
    sessions = _faulty_sessions()
    queries = sum(1 for s in sessions for _, infno in s.sent if infno == "5206")
    assert queries > 100
    report = _check(sessions)
    assert report.ok, dict(report.violations)
    assert report.checked_settlements > 200


def test_an_accumulator_that_does_not_match_the_settlements_is_caught():
    sessions = _faulty_sessions()
    victim = next(s for s in sessions if s.settlement is not None and s.settlement["hifp_pay"])
    msgid = next(m for m, infno in victim.sent if infno == "5206")
    answer = copy.deepcopy(victim.answers[msgid][0])
    for c in answer["output"]["cuminfo"]:
        if c["cum_type_code"].startswith("fund_") and c["cum"]:
            c["cum"] -= 1
    victim.answers[msgid] = [answer]
    report = _check(sessions)
    assert report.violations[CHECKS[4]], dict(report.violations)
    assert not any(report.violations[c] for c in CHECKS[:4])


def test_a_double_settlement_and_broken_arithmetic_are_caught():
    sessions = _faulty_sessions()
    victim = next(s for s in sessions if s.settlement is not None)
    msgid = next(m for m, infno in victim.sent if infno in ("2207", "2304")
                 and victim.answers[m][0]["infcode"] == 0)
    twin = copy.deepcopy(victim.answers[msgid][0])
    twin["output"]["setlinfo"]["setl_id"] += "X"
    twin["output"]["setlinfo"]["psn_cash_pay"] += 1
    victim.sent.append(("H" + msgid[1:-1] + "9", "2207"))
    victim.answers[victim.sent[-1][0]] = [twin]
    report = _check(sessions)
    assert report.violations[CHECKS[0]] and report.violations[CHECKS[2]]


def test_ids_an_edited_results_file_put_where_ids_go_are_not_shown_in_the_failures():
    """verify checks whatever a results file holds: a setl_id, mdtrt_id or inf_refmsgid
    made of a citizen ID was printed whole in the failure text (a privacy audit), where the
    field-by-field diff masked it."""
    sessions = _faulty_sessions()
    victim = next(s for s in sessions if s.settlement is not None)
    msgid = next(m for m, infno in victim.sent if infno in ("2207", "2304")
                 and victim.answers[m][0]["infcode"] == 0)
    certno = victim.visit.certno
    twin = copy.deepcopy(victim.answers[msgid][0])
    twin["output"]["setlinfo"].update(setl_id=certno, mdtrt_id=certno, psn_cash_pay=-1)
    twin["inf_refmsgid"] = certno
    victim.answers[msgid] = [twin, victim.answers[msgid][0]]
    report = _check(sessions)
    said = [line for c in CHECKS for line in report.violations[c]]
    assert any(f"setl_id {certno[:6]}********{certno[-4:]}:" in line for line in said), said
    assert any("(not a msgid): 2 answers that differ" in line for line in said), said
    assert not any(certno in line for line in said)


def _money(sessions: list[VisitSession]) -> InvariantReport:
    events = [e for s in sessions for e in events_from_answers(s.visit.fixmedins_code,
                                                                s.exchanges())]
    report = InvariantReport()
    check_money(events, report)
    return report


def test_the_ledger_balances_and_clearing_equals_the_payments_under_faults():
    report = _money(_faulty_sessions())
    assert report.ok, dict(report.violations)


def test_a_cancellation_that_undoes_less_than_its_settlement_paid_is_caught():
    """The ledger still balances, but the hospital stays owed money for a settlement that is
    no longer in force."""
    sessions = _faulty_sessions()
    events = [e for s in sessions for e in events_from_answers(s.visit.fixmedins_code,
                                                                s.exchanges())]
    cancel = next(e for e in events if e.event == "cancel" and e.hifp_pay)
    inflated = [replace(e, hifp_pay=e.hifp_pay + 1)
                if e.setl_id == cancel.setl_id and e.event == "settle" else e for e in events]
    report = InvariantReport()
    check_money(inflated, report)
    assert report.violations[CHECKS[5]], dict(report.violations)
    assert not report.violations[CHECKS[6]]  # the pair nets still equal the payments


def test_a_fund_total_that_is_not_the_basic_funds_payment_is_caught():
    """DOMAIN.md §3: fund_pay_sumamt = hifp_pay (no other fund pays); a result whose
    hifp_pay was lowered alone passed the arithmetic check (a determinism review)."""
    sessions = _faulty_sessions()
    victim = next(s for s in sessions if s.settlement is not None
                  and s.settlement["hifp_pay"] > 100)
    msgid = next(m for m, infno in victim.sent if infno in ("2207", "2304")
                 and victim.answers[m][0]["output"].get("setlinfo") == victim.settlement)
    victim.answers[msgid][0]["output"]["setlinfo"]["hifp_pay"] -= 100
    assert "fund_pay_sumamt != hifp_pay" in " ".join(_check(sessions).violations[CHECKS[0]])
