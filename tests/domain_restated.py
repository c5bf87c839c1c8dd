"""DOMAIN.md §3's two steps restated from its text alone, with exact fractions: the expected
figures of tests that would otherwise compare the policy engine with itself. Only the
catalogue's and policy's data (entries, ceilings, shares, rules) are read from the code."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from settlement.catalogue import Catalogue, ItemClass
from settlement.policy import EMPLOYEE, BenefitContext, Category, InsurancePolicy


def rhu(value: Fraction) -> int:
    """Round half up (DOMAIN.md §3), for the non-negative amounts it is used on."""
    return math.floor(value + Fraction(1, 2))


@dataclass(frozen=True)
class Fees:
    """Step 1's five sums over a visit's items."""

    medfee_sumamt: int = 0
    fulamt_ownpay_amt: int = 0
    overlmt_selfpay: int = 0
    preselfpay_amt: int = 0
    inscp_scp_amt: int = 0


def step1(catalogue: Catalogue, items: list[tuple[str, int, int]]) -> Fees:
    """Each item (code, quantity q, unit price p in fen) classified and summed."""
    total = own = over = pre = scope = 0
    for code, q, p in items:
        amount = q * p
        total += amount
        entry = catalogue.entries.get(code)
        if entry is None or entry.item_class is ItemClass.C:
            own += amount
            continue
        allowed = q * (p if entry.ceiling is None else min(p, entry.ceiling))
        over += amount - allowed
        selfpay = rhu(Fraction(allowed * catalogue.selfpay_bp, 10_000)) \
            if entry.item_class is ItemClass.B else 0
        pre += selfpay
        scope += allowed - selfpay
    return Fees(total, own, over, pre, scope)


@dataclass(frozen=True)
class Step2:
    act_pay_dedc: int
    ratio_bp: int
    hifp_pay: int
    psn_part_amt: int
    acct_pay: int
    psn_cash_pay: int
    balc: int


def step2(policy: InsurancePolicy, fees: Fees, ctx: BenefitContext) -> Step2:
    """The insured province's policy over step 1's sums, in the person's context."""
    rule = policy.rule(ctx.insutype, ctx.category)
    deductible = rule.deductible[ctx.hospital_level - 1]
    if ctx.category is Category.OUTPATIENT:  # annual; inpatient's is per admission
        deductible = max(0, deductible - ctx.deductible_paid_ytd)
    dedc = min(fees.inscp_scp_amt, deductible)
    ratio = rule.ratio_bp[ctx.hospital_level - 1]
    ratio += policy.retired_bonus_bp if ctx.retired and ctx.insutype == EMPLOYEE else 0
    ratio -= policy.unfiled_cut_bp if (ctx.cross_province and not ctx.filed
                                       and not ctx.emergency) else 0
    ratio = min(10_000, max(0, ratio))
    due = rhu(Fraction((fees.inscp_scp_amt - dedc) * ratio, 10_000))
    hifp = min(due, max(0, rule.annual_cap - ctx.fund_paid_ytd))
    psn_part = fees.medfee_sumamt - hifp
    acct = min(ctx.balance, psn_part) if ctx.insutype == EMPLOYEE and ctx.acct_used else 0
    return Step2(dedc, ratio, hifp, psn_part, acct, psn_part - acct, ctx.balance - acct)
