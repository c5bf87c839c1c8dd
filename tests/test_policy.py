"""Step 2 of DOMAIN.md §3: the insured-province policy, its worked example and invariants."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.catalogue import Catalogue, CatalogueEntry, FeeTotals, ItemClass
from settlement.policy import (
    EMPLOYEE,
    RESIDENT,
    Benefit,
    BenefitContext,
    BenefitRule,
    Category,
    InsurancePolicy,
    category_of,
    compute_benefit,
    ratio_for,
)
from tests import domain_restated as restated

PROPS = settings(max_examples=200, deadline=None)
POLICY = InsurancePolicy("110000")


def context(**changes: object) -> BenefitContext:
    """An in-service employee, outpatient, level 1, local, nothing paid this year."""
    base = BenefitContext(insutype=EMPLOYEE, retired=False, category=Category.OUTPATIENT,
                          hospital_level=1, cross_province=False, filed=False, emergency=False,
                          deductible_paid_ytd=0, fund_paid_ytd=0, balance=0, acct_used=True)
    return replace(base, **changes)  # type: ignore[arg-type]


def in_scope(fen: int) -> FeeTotals:
    """Fees that are entirely class A (all in scope)."""
    return FeeTotals(medfee_sumamt=fen, inscp_scp_amt=fen)


# -- the worked example -------------------------------------------------------------------------

def test_worked_example_is_reproduced_exactly() -> None:
    # The treatment province's catalogue, as DOMAIN.md §3 describes the four items.
    cat = Catalogue("320000", {
        "DRUG-A": CatalogueEntry("DRUG-A", "drug", "drug", ItemClass.A),
        "DRUG-B": CatalogueEntry("DRUG-B", "drug", "drug", ItemClass.B),
        "SERV-A": CatalogueEntry("SERV-A", "service", "service", ItemClass.A, ceiling=450_000),
        "CONS-C": CatalogueEntry("CONS-C", "consumable", "consumable", ItemClass.C),
    })
    fees = FeeTotals.of([cat.classify("DRUG-A", 10, 1_250), cat.classify("DRUG-B", 3, 8_005),
                         cat.classify("SERV-A", 1, 500_000), cat.classify("CONS-C", 2, 3_000)])
    # Employee in service, inpatient, level 3, cross-province and filed, nothing paid this
    # year, balance 100,000 fen, acct_used_flag 1.
    benefit = compute_benefit(InsurancePolicy("110000"), fees, BenefitContext(
        insutype=EMPLOYEE, retired=False, category=Category.INPATIENT, hospital_level=3,
        cross_province=True, filed=True, emergency=False, deductible_paid_ytd=0,
        fund_paid_ytd=0, balance=100_000, acct_used=True))
    # Every number below is the one printed in DOMAIN.md §3.
    assert benefit.medfee_sumamt == 542_515
    assert benefit.fulamt_ownpay_amt == 6_000
    assert benefit.overlmt_selfpay == 50_000
    assert benefit.preselfpay_amt == 2_402  # 2,401.5 rounded half up
    assert benefit.inscp_scp_amt == 484_113
    assert benefit.act_pay_dedc == 100_000  # 1,000 yuan, 310 inpatient level 3
    assert benefit.ratio_bp == 8500
    assert benefit.hifp_pay == 326_496  # rhu(384,113 × 0.85) = rhu(326,496.05)
    assert benefit.fund_pay_sumamt == 326_496
    assert benefit.psn_part_amt == 216_019
    assert benefit.acct_pay == 100_000
    assert benefit.psn_cash_pay == 116_019
    assert benefit.balc == 0


# -- the default policy table --------------------------------------------------------------------

@pytest.mark.parametrize(("insutype", "category", "deductible_yuan", "ratio_bp", "cap_yuan"), [
    (EMPLOYEE, Category.INPATIENT, (300, 600, 1_000), (9500, 9000, 8500), 500_000),
    (RESIDENT, Category.INPATIENT, (200, 500, 800), (8500, 7500, 6500), 300_000),
    (EMPLOYEE, Category.OUTPATIENT, (1_800, 1_800, 1_800), (9000, 8000, 7000), 20_000),
    (RESIDENT, Category.OUTPATIENT, (100, 100, 100), (6000, 5500, 5000), 3_000),
])
def test_default_policy_matches_the_domain_table(insutype: str, category: Category,
                                                deductible_yuan: tuple[int, int, int],
                                                ratio_bp: tuple[int, int, int],
                                                cap_yuan: int) -> None:
    rule = POLICY.rule(insutype, category)
    assert rule.deductible == tuple(100 * y for y in deductible_yuan)
    assert rule.ratio_bp == ratio_bp
    assert rule.annual_cap == 100 * cap_yuan
    assert POLICY.retired_bonus_bp == 500
    assert POLICY.unfiled_cut_bp == 1000


def test_med_type_21_is_inpatient_and_11_outpatient() -> None:
    assert category_of("11") is Category.OUTPATIENT
    assert category_of("21") is Category.INPATIENT


# -- ratio ---------------------------------------------------------------------------------------

def test_retired_employee_gets_the_retired_bonus() -> None:
    # 310 outpatient level 3: 7000 + 500 = 7500 bp
    assert ratio_for(POLICY, context(hospital_level=3)) == 7000
    assert ratio_for(POLICY, context(hospital_level=3, retired=True)) == 7500


def test_retired_resident_gets_no_retired_bonus() -> None:
    # 390 outpatient level 1: 6000 bp whether retired or not (bonus is for employees only)
    assert ratio_for(POLICY, context(insutype=RESIDENT)) == 6000
    assert ratio_for(POLICY, context(insutype=RESIDENT, retired=True)) == 6000


@pytest.mark.parametrize(("cross", "filed", "emergency"),
                         list(itertools.product([False, True], repeat=3)))
def test_unfiled_cut_applies_only_cross_province_unfiled_and_not_emergency(
        cross: bool, filed: bool, emergency: bool) -> None:
    ctx = context(insutype=RESIDENT, cross_province=cross, filed=filed, emergency=emergency)
    cut = cross and not filed and not emergency
    # 390 outpatient level 1: 6000 bp, minus 1000 bp only when the cut applies
    assert ratio_for(POLICY, ctx) == (5000 if cut else 6000)


def test_ratio_is_clamped_to_100_percent() -> None:
    generous = POLICY.with_overrides(retired_bonus_bp=2000)
    ctx = context(category=Category.INPATIENT, retired=True)
    # 9500 + 2000 = 11500 bp -> 10000: the fund pays all in scope above the deductible
    assert ratio_for(generous, ctx) == 10_000
    benefit = compute_benefit(generous, in_scope(1_000_000), replace(ctx, balance=0))
    assert benefit.hifp_pay == 1_000_000 - 30_000  # level 1 inpatient deductible 300 yuan


def test_ratio_is_clamped_to_zero() -> None:
    harsh = POLICY.with_overrides(unfiled_cut_bp=9000)
    ctx = context(insutype=RESIDENT, hospital_level=3, cross_province=True, filed=False)
    # 5000 − 9000 = −4000 bp -> 0: the fund pays nothing
    assert ratio_for(harsh, ctx) == 0
    assert compute_benefit(harsh, in_scope(500_000), ctx).hifp_pay == 0


# -- deductible ----------------------------------------------------------------------------------

def test_outpatient_deductible_is_annual_and_only_the_unpaid_part_applies() -> None:
    # 310 outpatient: 1,800 yuan = 180,000 fen annual; 150,000 already paid -> 30,000 left.
    b = compute_benefit(POLICY, in_scope(100_000), context(deductible_paid_ytd=150_000))
    assert b.act_pay_dedc == 30_000
    assert b.hifp_pay == 63_000  # rhu((100,000 − 30,000) × 90 %), level 1


def test_outpatient_deductible_larger_than_fees_takes_all_in_scope() -> None:
    b = compute_benefit(POLICY, in_scope(50_000), context(deductible_paid_ytd=100_000))
    # 80,000 left > 50,000 in scope: all of it is deductible, the fund pays nothing
    assert (b.act_pay_dedc, b.hifp_pay, b.psn_part_amt) == (50_000, 0, 50_000)


@pytest.mark.parametrize("paid", [180_000, 250_000])
def test_outpatient_deductible_fully_paid_leaves_nothing_to_deduct(paid: int) -> None:
    b = compute_benefit(POLICY, in_scope(100_000), context(deductible_paid_ytd=paid))
    assert b.act_pay_dedc == 0
    assert b.hifp_pay == 90_000  # 100,000 × 90 %


def test_inpatient_deductible_applies_per_admission_whatever_was_paid_before() -> None:
    # 310 inpatient level 2: 600 yuan = 60,000 fen for every admission
    ctx = context(category=Category.INPATIENT, hospital_level=2, deductible_paid_ytd=10**9)
    b = compute_benefit(POLICY, in_scope(200_000), ctx)
    assert b.act_pay_dedc == 60_000
    assert b.hifp_pay == 126_000  # (200,000 − 60,000) × 90 %


# -- annual cap ----------------------------------------------------------------------------------

def test_fund_pays_at_most_what_is_left_under_the_annual_cap() -> None:
    # 310 outpatient cap 20,000 yuan = 2,000,000 fen; 1,990,000 paid -> 10,000 left, although
    # 90 % of 500,000 = 450,000 would be due.
    ctx = context(deductible_paid_ytd=180_000, fund_paid_ytd=1_990_000, balance=0)
    b = compute_benefit(POLICY, in_scope(500_000), ctx)
    assert b.hifp_pay == 10_000
    assert b.psn_part_amt == 490_000


@pytest.mark.parametrize("fund_paid", [2_000_000, 2_000_001, 5_000_000])
def test_fund_pays_nothing_once_the_annual_cap_is_reached(fund_paid: int) -> None:
    ctx = context(deductible_paid_ytd=180_000, fund_paid_ytd=fund_paid)
    b = compute_benefit(POLICY, in_scope(500_000), ctx)
    assert b.hifp_pay == 0
    assert b.fund_pay_sumamt == 0
    assert b.psn_part_amt == 500_000


def test_cap_is_per_category() -> None:
    # Outpatient fund paid up to its cap does not limit an inpatient settlement: the caller
    # passes the inpatient accumulator, and 310 inpatient has a 500,000-yuan cap.
    ctx = context(category=Category.INPATIENT, fund_paid_ytd=2_000_000)
    b = compute_benefit(POLICY, in_scope(130_000), ctx)
    assert b.hifp_pay == 95_000  # (130,000 − 30,000) × 95 %, level 1


# -- personal account ----------------------------------------------------------------------------

def test_employee_account_pays_the_personal_part_up_to_the_balance() -> None:
    b = compute_benefit(POLICY, in_scope(100_000), context(balance=1_000_000))
    # deductible 100,000 (all of it): hifp 0, psn_part 100,000, all from the account
    assert (b.acct_pay, b.psn_cash_pay, b.balc) == (100_000, 0, 900_000)


def test_residents_never_pay_from_an_account() -> None:
    ctx = context(insutype=RESIDENT, balance=50_000, acct_used=True)
    b = compute_benefit(POLICY, in_scope(20_000), ctx)
    assert b.acct_pay == 0
    assert b.balc == 50_000
    assert b.psn_cash_pay == b.psn_part_amt > 0


def test_account_not_used_when_acct_used_flag_is_off() -> None:
    b = compute_benefit(POLICY, in_scope(20_000), context(balance=50_000, acct_used=False))
    assert b.acct_pay == 0
    assert b.balc == 50_000
    assert b.psn_cash_pay == b.psn_part_amt == 20_000


def test_province_override_of_a_rule_is_used() -> None:
    rules = dict(POLICY.rules)
    rules[(EMPLOYEE, Category.OUTPATIENT)] = BenefitRule((0, 0, 0), (5000, 5000, 5000), 10**9)
    b = compute_benefit(POLICY.with_overrides(rules=rules), in_scope(1_001), context())
    assert (b.act_pay_dedc, b.hifp_pay) == (0, 501)  # 1,001 × 50 % = 500.5 -> 501


# -- invariants over random fees and contexts ---------------------------------------------------

fee_totals = st.builds(
    lambda own, over, pre, scope: FeeTotals(own + over + pre + scope, own, over, pre, scope),
    st.integers(0, 2_000_000), st.integers(0, 2_000_000), st.integers(0, 2_000_000),
    st.integers(0, 10_000_000))
contexts = st.builds(
    BenefitContext,
    insutype=st.sampled_from([EMPLOYEE, RESIDENT]),
    retired=st.booleans(),
    category=st.sampled_from(list(Category)),
    hospital_level=st.integers(1, 3),
    cross_province=st.booleans(),
    filed=st.booleans(),
    emergency=st.booleans(),
    deductible_paid_ytd=st.integers(0, 400_000),
    fund_paid_ytd=st.integers(0, 60_000_000),
    balance=st.integers(0, 2_000_000),
    acct_used=st.booleans(),
)
policies = st.builds(lambda bonus, cut: POLICY.with_overrides(retired_bonus_bp=bonus,
                                                              unfiled_cut_bp=cut),
                     st.integers(0, 12_000), st.integers(0, 12_000)) | st.just(POLICY)


def check_invariants(b: Benefit, fees: FeeTotals, ctx: BenefitContext,
                     policy: InsurancePolicy) -> None:
    """Every invariant of DOMAIN.md §3."""
    cap = policy.rule(ctx.insutype, ctx.category).annual_cap
    assert b.medfee_sumamt == fees.medfee_sumamt
    assert b.medfee_sumamt == (b.fulamt_ownpay_amt + b.overlmt_selfpay + b.preselfpay_amt
                               + b.inscp_scp_amt)
    assert b.medfee_sumamt == b.fund_pay_sumamt + b.psn_part_amt
    assert b.psn_part_amt == b.acct_pay + b.psn_cash_pay
    assert 0 <= b.act_pay_dedc <= b.inscp_scp_amt
    assert 0 <= b.hifp_pay <= b.inscp_scp_amt - b.act_pay_dedc
    assert b.hifp_pay <= max(0, cap - ctx.fund_paid_ytd)
    if ctx.fund_paid_ytd <= cap:
        assert ctx.fund_paid_ytd + b.hifp_pay <= cap
    assert b.balc >= 0
    assert b.balc == ctx.balance - b.acct_pay
    assert 0 <= b.acct_pay <= ctx.balance
    assert b.psn_cash_pay >= 0
    assert 0 <= b.ratio_bp <= 10_000


@PROPS
@given(fees=fee_totals, ctx=contexts, policy=policies)
def test_every_domain_invariant_holds_for_random_fees_and_contexts(
        fees: FeeTotals, ctx: BenefitContext, policy: InsurancePolicy) -> None:
    check_invariants(compute_benefit(policy, fees, ctx), fees, ctx, policy)


@PROPS
@given(fees=fee_totals, ctx=contexts, policy=policies)
def test_benefit_follows_the_domain_formulas_exactly(fees: FeeTotals, ctx: BenefitContext,
                                                     policy: InsurancePolicy) -> None:
    """Against DOMAIN.md's step 2 restated with exact fractions (tests/domain_restated.py)."""
    b = compute_benefit(policy, fees, ctx)
    assert restated.step2(policy, restated.Fees(**fees.as_dict()), ctx) == restated.Step2(
        b.act_pay_dedc, b.ratio_bp, b.hifp_pay, b.psn_part_amt, b.acct_pay, b.psn_cash_pay,
        b.balc)


items = st.lists(st.tuples(st.sampled_from(["A", "B", "S", "C", "NONE"]),
                           st.integers(1, 20), st.integers(1, 600_000)), min_size=1, max_size=15)
CAT = Catalogue("440000", {
    "A": CatalogueEntry("A", "a", "drug", ItemClass.A),
    "B": CatalogueEntry("B", "b", "drug", ItemClass.B),
    "S": CatalogueEntry("S", "s", "service", ItemClass.A, ceiling=300_000),
    "C": CatalogueEntry("C", "c", "consumable", ItemClass.C),
})


@PROPS
@given(items=items, selfpay_bp=st.integers(0, 10_000))
def test_classification_follows_the_domain_formulas_exactly(
        items: list[tuple[str, int, int]], selfpay_bp: int) -> None:
    """Against DOMAIN.md's step 1 restated (tests/domain_restated.py)."""
    cat = replace(CAT, selfpay_bp=selfpay_bp)
    fees = FeeTotals.of([cat.classify(code, q, p) for code, q, p in items])
    assert restated.step1(cat, items) == restated.Fees(**fees.as_dict())


@PROPS
@given(items=items, ctx=contexts)
def test_invariants_hold_from_classified_items_to_benefit(
        items: list[tuple[str, int, int]], ctx: BenefitContext) -> None:
    fees = FeeTotals.of([CAT.classify(code, q, p) for code, q, p in items])
    assert fees.medfee_sumamt == sum(q * p for _, q, p in items)
    check_invariants(compute_benefit(POLICY, fees, ctx), fees, ctx, POLICY)
