"""settlement.oracle.Oracle over a seeded world: every visit settles, deterministically, and
every settlement obeys DOMAIN.md §3.

The visits here follow the plain plans (no protocol anomalies, no cancellations, nobody
suspended), so that each visit ends in exactly one settlement; tests/test_visit_plans.py
covers the anomalies."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from typing import Any

import pytest

from messages.codes import ErrorCode, Infno
from messages.envelope import province_of
from messages.transactions import EMERGENCY_MED_TYPES
from messages.visitlog import Visit, VisitItem, VisitSession
from settlement.oracle import Oracle
from settlement.policy import BenefitContext, Category, category_of
from settlement.reference import ACTIVE
from simulators.visits import VisitSpec, generate_visits
from simulators.world import World, WorldSpec, build_world
from tests import domain_restated as restated

SEED = 7
VISITS = 200


class Run:
    def __init__(self, seed: int) -> None:
        self.world: World = build_world(WorldSpec(persons=300, seed=seed, suspended_share=0.0))
        self.visits = list(generate_visits(self.world, VisitSpec(
            visits=VISITS, anomaly_share=0.0, cancel_share=0.0)))
        self.oracle = Oracle(self.world.ref)
        self.sessions = list(self.oracle.settle_log(self.visits))

    @property
    def setlinfos(self) -> list[dict[str, Any]]:
        return [s.settlement for s in self.sessions if s.settlement is not None]


@pytest.fixture(scope="module")
def run() -> Run:
    return Run(SEED)


def test_every_visit_settles(run: Run) -> None:
    failures = [s.failed for s in run.sessions if s.failed is not None]
    assert failures == []
    assert len(run.setlinfos) == VISITS


def test_the_same_seed_gives_identical_settlements(run: Run) -> None:
    assert Run(SEED).setlinfos == run.setlinfos


def test_a_different_seed_gives_different_settlements(run: Run) -> None:
    assert Run(SEED + 1).setlinfos != run.setlinfos


def test_both_local_and_cross_province_settlements_occur(run: Run) -> None:
    cross = [province_of(s["insuplc_admdvs"]) != province_of(s["mdtrtarea_admvs"])
             for s in run.setlinfos]
    assert any(cross)
    assert not all(cross)


def test_every_settlement_satisfies_the_domain_invariants(run: Run) -> None:
    fund_ytd: dict[tuple[str, str, Category], int] = defaultdict(int)
    for visit, s in zip(run.visits, run.setlinfos, strict=True):
        e = run.world.ref.enrollments[visit.certno]
        category = category_of(visit.med_type)
        assert s["clr_type"] == category
        cap = run.world.ref.policies[e.province].rule(e.insutype, category).annual_cap
        assert s["medfee_sumamt"] == (s["fulamt_ownpay_amt"] + s["overlmt_selfpay"]
                                      + s["preselfpay_amt"] + s["inscp_scp_amt"])
        assert s["medfee_sumamt"] == s["fund_pay_sumamt"] + s["psn_part_amt"]
        assert s["psn_part_amt"] == s["acct_pay"] + s["psn_cash_pay"]
        assert 0 <= s["hifp_pay"] <= s["inscp_scp_amt"] - s["act_pay_dedc"]
        assert s["balc"] >= 0
        assert all(s[f] >= 0 for f in ("fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
                                       "inscp_scp_amt", "act_pay_dedc", "acct_pay",
                                       "psn_cash_pay"))
        key = (visit.certno, s["setl_time"][:4], category)
        fund_ytd[key] += s["hifp_pay"]
        assert fund_ytd[key] <= cap


def test_settlements_follow_treatment_catalogue_and_insured_policy(run: Run) -> None:
    """Recompute every settlement from the visit log alone, with DOMAIN.md §3 restated
    (tests/domain_restated.py): step 1 with the treatment province's catalogue, step 2 with
    the insured province's policy and our own year-to-date sums and balances."""
    ref = run.world.ref
    fund: dict[tuple[str, str, Category], int] = defaultdict(int)
    dedc: dict[tuple[str, str], int] = defaultdict(int)
    balance = {c: e.balance for c, e in ref.enrollments.items()}
    for visit, s in zip(run.visits, run.setlinfos, strict=True):
        e = ref.enrollments[visit.certno]
        hospital = ref.hospitals[visit.fixmedins_code]
        # Inpatient stays upload their items in batches; together they are all the items.
        fees = restated.step1(ref.catalogues[hospital.province],
                              [(it.code, it.cnt, it.pric) for it in visit.items])
        year, day = s["setl_time"][:4], s["setl_time"][:10]
        category = category_of(visit.med_type)
        benefit = restated.step2(ref.policies[e.province], fees, BenefitContext(
            insutype=e.insutype, retired=e.retired, category=category,
            hospital_level=hospital.level, cross_province=hospital.province != e.province,
            filed=e.filed_for(hospital.province, day),
            emergency=visit.med_type in EMERGENCY_MED_TYPES,
            deductible_paid_ytd=dedc[visit.certno, year],
            fund_paid_ytd=fund[visit.certno, year, category], balance=balance[visit.certno],
            acct_used=visit.acct_used_flag == "1"))
        expected = {**asdict(fees), **asdict(benefit), "fund_pay_sumamt": benefit.hifp_pay}
        del expected["ratio_bp"]  # not in the settlement's answer
        assert {k: s[k] for k in expected} == expected
        assert s["psn_no"] == e.psn_no
        assert s["insuplc_admdvs"] == e.insuplc_admdvs
        assert s["mdtrtarea_admvs"] == visit.mdtrtarea_admvs
        fund[visit.certno, year, category] += benefit.hifp_pay
        if category is Category.OUTPATIENT:  # the inpatient deductible is per admission
            dedc[visit.certno, year] += benefit.act_pay_dedc
        balance[visit.certno] = benefit.balc


def test_yearly_fund_accumulator_of_each_person_is_the_sum_of_their_hifp_pay(run: Run) -> None:
    totals: dict[tuple[str, str, Category], int] = defaultdict(int)
    for visit, s in zip(run.visits, run.setlinfos, strict=True):
        totals[visit.certno, s["setl_time"][:4], category_of(visit.med_type)] += s["hifp_pay"]
    years = {year for _, year, _ in totals}
    assert years == {"2026", "2027"}  # the default visit spec crosses a new year
    assert {category for _, _, category in totals} == set(Category)
    for certno, row in run.oracle.person_rows.items():
        for year in years:
            for category in Category:
                assert row.accumulator(year, f"fund_{category.value}") == \
                    totals.get((certno, year, category), 0)
    settled_persons = {certno for certno, _, _ in totals}
    assert settled_persons <= set(run.oracle.person_rows)


def test_settlement_ids_are_unique(run: Run) -> None:
    ids = [s["setl_id"] for s in run.setlinfos]
    assert len(set(ids)) == len(ids)
    mdtrt_ids = [s["mdtrt_id"] for s in run.setlinfos]
    assert len(set(mdtrt_ids)) == len(mdtrt_ids)


def test_a_visit_declared_local_for_a_person_insured_elsewhere_is_not_settled(run: Run) -> None:
    """A hospital that declares its own city as the insured place of a patient insured in
    another province must not get the visit settled as local."""
    world = run.world
    certno, e = next((c, e) for c, e in world.ref.enrollments.items()
                     if c not in world.away_province and e.insu_stas == ACTIVE)
    hospital = next(h for p, hs in world.hospitals_by_province.items() if p != e.province
                    for h in hs)
    visit = Visit(visit_no=1, certno=certno, fixmedins_code=hospital.fixmedins_code,
                  mdtrtarea_admvs=hospital.admdvs, begntime="2026-05-01 08:00:00", seq=0,
                  items=[VisitItem(code=world.items[0].code, cnt=1, pric=10_000)])
    oracle = Oracle(world.ref)
    session = VisitSession(visit)
    while requests := session.advance():
        for req in requests:
            if req["infno"] != Infno.PERSON_INFO:
                req = {**req, "insuplc_admdvs": hospital.admdvs}  # the false declaration
            answer = oracle.submit(certno, req)
            assert answer is not None
            session.on_answer(answer)
    assert session.settlement is None
    assert session.failed is not None
    assert session.failed["err_code"] == ErrorCode.INSURED_PLACE_MISMATCH
    assert certno not in oracle.person_rows or not oracle.person_rows[certno].settlements


@pytest.mark.parametrize("kind, steps", [
    ("inpatient", ["1101", "2401", "2301", "2601", "2301", "2402", "2304"]),
    ("outpatient", ["1101", "2201", "2204", "2601", "2204", "2207"])])
def test_a_fee_upload_undone_by_2601_leaves_the_fees_the_settlement_counts(
        run: Run, kind: str, steps: list[str]) -> None:
    """The simulated HIS kept an undone upload's fees in the total it settles for, so the
    platform refused the settlement E4004 (its uploaded fees are the second upload's alone)
    and the oracle, running the same HIS, agreed: `verify` passed a stay that could never
    settle (an inpatient review)."""
    visit = next(v for v in run.visits if v.kind == kind).model_copy(update={
        "steps": steps, "batches": 2, "visit_no": 0})
    (session,) = Oracle(run.world.ref).settle_log([visit])
    assert session.failed is None, session.failed
    assert session.settlement is not None
    undone = [a for m, infno in session.sent if infno == "2601" for a in session.answers[m]]
    assert [a["output"]["result"] for a in undone] == ["undone"]
    second_upload = session.answers[session.sent[4][0]][0]["output"]["result"]
    assert session.settlement["medfee_sumamt"] == sum(r["det_item_fee_sumamt"]
                                                      for r in second_upload)
