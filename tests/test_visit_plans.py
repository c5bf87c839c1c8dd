"""The visit plans of simulators.visits carried out by messages.visitlog.VisitSession against
settlement.oracle.Oracle: every anomaly occurs, refusals happen exactly where the plan expects
them, duplicates and lost answers are answered as DOMAIN.md §4 says, and what remains in the
insured places' rows is exactly the sum of the settlements still in force (DOMAIN.md §3)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from messages.codes import PRESETTLEMENTS, SETTLEMENTS, ErrorCode
from messages.envelope import is_cross_province
from messages.visitlog import VisitSession, parse_step
from settlement.oracle import Oracle
from settlement.policy import Category
from settlement.reference import SUSPENDED
from simulators.visits import VisitSpec, generate_visits
from simulators.world import World, WorldSpec, build_world

WORLD_SPEC = WorldSpec(persons=1_500)
VISIT_SPEC = VisitSpec(visits=1_500)

#: The anomalies of simulators/visits.py (`_outpatient_plan`, `_inpatient_plan`), each known by
#: the step that only its plan has.
ANOMALY_STEPS = {
    "fee-correction": "2205",
    "cancel-registration": "2202",
    "fees-after-settlement": "2204!",
    "duplicate-sn": "2204d!",
    "lost-answer": "2207~",
    "reversal-first": "2601^",
    "duplicate": "2207=",
    "second-cancel": "2208!",
    "cancel-unknown": "2208x!",
    "query": "5206",
    "settlement-before-discharge": "2304!",
    "stay-fee-correction": "2302",
}

#: The refusal each `!` step must get, from the plan that puts it there.
EXPECTED_REFUSAL = {
    "2204d!": ErrorCode.DUPLICATE_FEE_ITEM,  # the previous upload's feedetl_sn again
    "2204!": ErrorCode.VISIT_ALREADY_SETTLED,  # fees after the settlement
    "2207!": ErrorCode.REVERSED,  # the original of a 2601 that came first
    "2208!": ErrorCode.SETTLEMENT_ALREADY_CANCELLED,  # the second cancellation
    "2208x!": ErrorCode.UNKNOWN_SETTLEMENT,  # a setl_id that does not exist
    "2304!": ErrorCode.WRONG_SEQUENCE,  # an inpatient settlement before the discharge
}


class Run:
    def __init__(self) -> None:
        self.world: World = build_world(WORLD_SPEC)
        self.visits = list(generate_visits(self.world, VISIT_SPEC))
        self.oracle = Oracle(self.world.ref)
        self.sessions = list(self.oracle.settle_log(self.visits))

    def steps(self) -> list[tuple[VisitSession, str, str, list[dict[str, Any]]]]:
        """(session, step, msgid, answers) for every step that was sent."""
        out = []
        for s in self.sessions:
            steps = [x for i, x in enumerate(s.visit.steps) if i not in s.skipped]
            for (msgid, infno), step in zip(s.sent, steps, strict=False):
                assert parse_step(step)[0] == infno
                out.append((s, step, msgid, s.answers.get(msgid, [])))
        return out

    def settlements(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every settlement the oracle made, by person and setl_id, with its status at the
        end (from its answers and money events: the person's row forgets a record a window
        after its last change)."""
        undone = {setl_id: ("cancelled" if event == "cancel" else "reversed")
                  for setl_id, event in self.oracle.money_events if event != "settle"}
        out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for s, step, _, answers in self.steps():
            if parse_step(step)[0] in SETTLEMENTS:
                for a in answers:
                    if a["infcode"] == 0:
                        setl = a["output"]["setlinfo"]
                        out[s.visit.certno][setl["setl_id"]] = {
                            **setl, "status": undone.get(setl["setl_id"], "settled")}
        return out

    def suspended(self, s: VisitSession) -> bool:
        return self.suspended_person(s.visit.certno)

    def suspended_person(self, certno: str) -> bool:
        return self.world.ref.enrollments[certno].insu_stas == SUSPENDED


@pytest.fixture(scope="module")
def run() -> Run:
    return Run()


def test_every_anomaly_occurs(run: Run) -> None:
    seen = Counter(step for v in run.visits for step in v.steps)
    missing = [name for name, step in ANOMALY_STEPS.items() if seen[step] == 0]
    assert missing == []
    # And the ordinary variations: pre-settlement, cancellation (and settling again),
    # inpatient stays in several batches, emergencies, cross-province visits.
    assert seen["2206"] and seen["2303"] and seen["2305"] and seen["2208"]
    assert any(v.steps.count("2207") == 2 and "2208" in v.steps for v in run.visits)
    assert any(v.batches > 1 for v in run.visits if v.kind == "inpatient")
    assert {v.med_type for v in run.visits} == {"11", "13", "21", "24"}
    assert any(is_cross_province(v.mdtrtarea_admvs,
                                 run.world.ref.enrollments[v.certno].insuplc_admdvs)
               for v in run.visits)


def test_a_stay_whose_fees_were_cancelled_settles_every_item_uploaded_again(run: Run) -> None:
    """2302 "0000" cancels every item of the stay; the 2301 after it uploads them all again,
    and the settlement is of all of them, once."""
    corrected = [s for s in run.sessions if "2302" in s.visit.steps and s.settlement]
    assert corrected
    for s in corrected:
        total = sum(it.cnt * it.pric for it in s.visit.items)
        assert s.settlement is not None
        assert s.settlement["medfee_sumamt"] == total


def test_a_2301_beyond_the_batches_without_a_2302_uploads_its_share_as_before(run: Run) -> None:
    """Only a 2302 makes the next 2301 upload every item: a version-3 plan with one more 2301
    than its batches settles what it did before 2302 existed."""
    stay = next(v for v in run.visits if v.kind == "inpatient" and len(v.items) >= 3
                and "2302" not in v.steps and not run.suspended_person(v.certno))
    extra = stay.model_copy(update={"v": 3, "batches": 2, "steps": [
        "1101", "2401", "2301", "2301", "2301", "2402", "2303", "2304"]})
    session = Oracle(run.world.ref).run_visit(extra)
    shares = [it for k in range(3) for it in stay.items[k::2]]
    assert session.settlement is not None, session.failed
    assert session.settlement["medfee_sumamt"] == sum(it.cnt * it.pric for it in shares)


def test_only_the_2301_right_after_a_2302_uploads_every_item(run: Run) -> None:
    """After a 2302 the next 2301 uploads all the items; one after that uploads its own
    share again, as any 2301 does (it uploaded them all again, doubling the fees)."""
    stay = next(v for v in run.visits if v.kind == "inpatient" and len(v.items) >= 4
                and not run.suspended_person(v.certno))
    plan = stay.model_copy(update={"batches": 2, "steps": [
        "1101", "2401", "2301", "2301", "2302", "2301", "2301", "2402", "2303", "2304"]})
    session = Oracle(run.world.ref).run_visit(plan)
    assert session.settlement is not None, session.failed
    fourth_share = stay.items[3::2]  # the 4th upload's: items[uploads - 1::batches]
    assert session.settlement["medfee_sumamt"] == sum(
        it.cnt * it.pric for it in [*stay.items, *fourth_share])


def test_every_step_marked_as_refused_is_refused_with_its_code(run: Run) -> None:
    marked = 0
    for _, step, _, answers in run.steps():
        if "!" not in step:
            continue
        marked += 1
        assert answers, step
        for a in answers:
            assert a["infcode"] == -1, (step, a)
            assert a["err_code"] == EXPECTED_REFUSAL[step], (step, a)
    assert marked > 0


def test_no_other_step_is_refused_except_settlements_of_suspended_persons(run: Run) -> None:
    """… and record accesses the person's consent refuses (E5002), which are outcomes."""
    suspended_refusals = consent_refusals = 0
    for s, step, _, answers in run.steps():
        if "!" in step:
            continue
        for a in answers:
            if a["infcode"] == 0:
                continue
            if a["err_code"] == ErrorCode.CONSENT_REFUSED:
                assert parse_step(step)[0] in ("7002", "7003", "7004")
                assert run.world.ref.enrollments[s.visit.certno].ehr_sharing != "permit"
                consent_refusals += 1
                continue
            assert run.suspended(s), (s.visit.visit_no, step, a)
            assert a["err_code"] == ErrorCode.INSURANCE_SUSPENDED
            assert parse_step(step)[0] in SETTLEMENTS | PRESETTLEMENTS
            suspended_refusals += 1
    assert suspended_refusals > 0  # the world has suspended persons, and they do visit
    assert consent_refusals > 0  # and persons who deny cross-region sharing


def test_every_visit_is_carried_out_to_its_end_unless_the_person_is_suspended(run: Run) -> None:
    for s in run.sessions:
        assert not s.awaiting
        if s.failed is not None:
            assert run.suspended(s)
            assert s.failed["err_code"] == ErrorCode.INSURANCE_SUSPENDED
        else:
            assert s.index == len(s.visit.steps)
            assert len(s.sent) + len(s.skipped) == len(s.visit.steps)
            assert all(s.visit.steps[i] == "7003" for i in s.skipped)  # nothing found
    for s in run.sessions:
        if run.suspended(s):
            assert s.settlement is None  # a suspended person is never settled


def test_each_request_is_answered_once_and_a_duplicate_twice_identically(run: Run) -> None:
    duplicates = 0
    for _, step, _, answers in run.steps():
        if "=" in step:
            duplicates += 1
            assert len(answers) == 2
            assert answers[0] == answers[1]
        else:
            assert len(answers) == 1, step
    assert duplicates  # else the duplicates' half checks nothing


def test_a_lost_answer_still_came_once_and_its_settlement_was_reversed(run: Run) -> None:
    lost = 0
    for s in run.sessions:
        if "2207~" not in s.visit.steps or s.failed is not None:
            continue
        lost += 1
        i = s.visit.steps.index("2207~")
        msgid = s.msgid_at(i)
        (answer,) = s.answers[msgid]
        assert answer["infcode"] == 0
        (reversal,) = s.answers[s.msgid_at(i + 1)]  # the 2601 right after it
        assert reversal["output"]["result"] == "undone"
        setl_id = answer["output"]["setlinfo"]["setl_id"]
        assert reversal["output"]["reversed_setl_id"] == setl_id
        assert run.settlements()[s.visit.certno][setl_id]["status"] == "reversed"
        assert s.settlement is not None and s.settlement["setl_id"] != setl_id
    assert lost > 0


def test_a_reversal_sent_first_is_answered_in_advance(run: Run) -> None:
    checked = 0
    for s in run.sessions:
        if "2601^" not in s.visit.steps:
            continue
        checked += 1
        i = s.visit.steps.index("2601^")
        (reversal,) = s.answers[s.msgid_at(i)]
        assert reversal["output"]["result"] == "reversed-in-advance"
        assert reversal["output"]["omsgid"] == s.msgid_at(i + 1)
    assert checked > 0


def test_every_settlement_and_presettlement_satisfies_the_domain_invariants(run: Run) -> None:
    checked = 0
    for _, step, _, answers in run.steps():
        if parse_step(step)[0] not in SETTLEMENTS | PRESETTLEMENTS:
            continue
        for a in answers:
            if a["infcode"] != 0:
                continue
            s = a["output"]["setlinfo"]
            checked += 1
            assert s["medfee_sumamt"] == (s["fulamt_ownpay_amt"] + s["overlmt_selfpay"]
                                          + s["preselfpay_amt"] + s["inscp_scp_amt"])
            assert s["medfee_sumamt"] == s["fund_pay_sumamt"] + s["psn_part_amt"]
            assert s["fund_pay_sumamt"] == s["hifp_pay"]
            assert s["psn_part_amt"] == s["acct_pay"] + s["psn_cash_pay"]
            assert 0 <= s["hifp_pay"] <= s["inscp_scp_amt"] - s["act_pay_dedc"]
            assert s["balc"] >= 0
            assert min(s["fulamt_ownpay_amt"], s["overlmt_selfpay"], s["preselfpay_amt"],
                       s["inscp_scp_amt"], s["act_pay_dedc"], s["acct_pay"],
                       s["psn_cash_pay"]) >= 0
    assert checked > 0
    ref = run.world.ref
    for certno, row in run.oracle.person_rows.items():
        e = ref.enrollments[certno]
        for year in row.ytd:
            for category in Category:
                cap = ref.policies[e.province].rule(e.insutype, category).annual_cap
                assert row.accumulator(year, f"fund_{category.value}") <= cap


def test_accumulators_and_balance_are_the_sum_of_the_settlements_still_in_force(
        run: Run) -> None:
    ref = run.world.ref
    made = run.settlements()
    for certno, row in run.oracle.person_rows.items():
        expected: dict[tuple[str, str], int] = defaultdict(int)
        acct = 0
        for setl in made[certno].values():
            assert setl["status"] in ("settled", "cancelled", "reversed")
            if setl["status"] != "settled":
                continue
            year = setl["setl_time"][:4]
            expected[year, f"fund_{setl['clr_type']}"] += setl["hifp_pay"]
            if setl["clr_type"] == Category.OUTPATIENT:
                expected[year, "dedc_11"] += setl["act_pay_dedc"]
            acct += setl["acct_pay"]
        names = {(y, n) for y, acc in row.ytd.items() for n in acc} | set(expected)
        for year, name in names:
            assert row.accumulator(year, name) == expected.get((year, name), 0), (year, name)
        assert row.balance == ref.enrollments[certno].balance - acct


def test_the_settlements_in_force_are_exactly_those_the_hospitals_ended_with(run: Run) -> None:
    in_force = {setl_id for made in run.settlements().values()
                for setl_id, setl in made.items() if setl["status"] == "settled"}
    ended_settled = [s.settlement["setl_id"] for s in run.sessions if s.settlement is not None]
    assert len(set(ended_settled)) == len(ended_settled)
    assert set(ended_settled) == in_force


def test_the_same_seed_gives_identical_answers(run: Run) -> None:
    again = Run()
    assert [s.answers for s in again.sessions] == [s.answers for s in run.sessions]
    assert {c: r.to_dict() for c, r in again.oracle.person_rows.items()} == \
        {c: r.to_dict() for c, r in run.oracle.person_rows.items()}


def test_a_stays_items_run_over_its_days_so_its_fund_pays_past_the_deductible(run: Run):
    """A stay's items are on 1–14 of its days, an outpatient visit's once (drugs 1–6 units):
    with a stay's items priced as an outpatient's and taken once, its median was ~¥1,000,
    under most deductibles, and a change of inpatient policy hardly showed (a policy
    analyst's review)."""
    def median(costs: list[int]) -> int:
        return sorted(costs)[len(costs) // 2]

    cost = {v.visit_no: sum(i.cnt * i.pric for i in v.items) for v in run.visits}
    stays = [v for v in run.visits if v.kind == "inpatient"]
    visits = [v for v in run.visits if v.kind == "outpatient"]
    assert max(i.cnt for v in visits for i in v.items) <= 6
    assert max(i.cnt for v in stays for i in v.items) > 6  # some on many of their days
    assert median([cost[v.visit_no] for v in stays]) > 8 * median(
        [cost[v.visit_no] for v in visits])
    paid = [s for s in run.sessions if s.visit.kind == "inpatient" and s.settlement
            and s.settlement["hifp_pay"] > 0]
    assert len(paid) > 0.75 * sum(1 for s in run.sessions
                                  if s.visit.kind == "inpatient" and s.settlement)
