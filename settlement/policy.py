"""Step 2 of DOMAIN.md §3: the insured-province policy (参保地政策) and the benefit it pays."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

from settlement.catalogue import FeeTotals
from settlement.money import BP_ONE, apply_bp

EMPLOYEE = "310"  # 职工基本医疗保险
RESIDENT = "390"  # 城乡居民基本医疗保险


class Category(StrEnum):
    """Benefit category of a `med_type`: outpatient (11) or inpatient (21)."""

    OUTPATIENT = "11"
    INPATIENT = "21"


def category_of(med_type: str) -> Category:
    return Category.INPATIENT if med_type.startswith("2") else Category.OUTPATIENT


@dataclass(frozen=True, slots=True)
class BenefitRule:
    """Deductible (per hospital level 1, 2, 3) and annual cap in fen; ratio in bp per level.

    Inpatient deductibles apply per admission; the outpatient deductible is annual.
    """

    deductible: tuple[int, int, int]
    ratio_bp: tuple[int, int, int]
    annual_cap: int


def _yuan(y: int) -> int:
    return y * 100


#: DOMAIN.md §3 defaults, keyed by (insutype, category).
DEFAULT_RULES: dict[tuple[str, Category], BenefitRule] = {
    (EMPLOYEE, Category.INPATIENT): BenefitRule(
        (_yuan(300), _yuan(600), _yuan(1_000)), (9500, 9000, 8500), _yuan(500_000)),
    (RESIDENT, Category.INPATIENT): BenefitRule(
        (_yuan(200), _yuan(500), _yuan(800)), (8500, 7500, 6500), _yuan(300_000)),
    (EMPLOYEE, Category.OUTPATIENT): BenefitRule(
        (_yuan(1_800),) * 3, (9000, 8000, 7000), _yuan(20_000)),
    (RESIDENT, Category.OUTPATIENT): BenefitRule(
        (_yuan(100),) * 3, (6000, 5500, 5000), _yuan(3_000)),
}


@dataclass(frozen=True, slots=True)
class InsurancePolicy:
    """One insured province's policy. Every value is a *parameter* a province may override."""

    admdvs: str
    rules: dict[tuple[str, Category], BenefitRule] = field(
        default_factory=lambda: dict(DEFAULT_RULES))
    retired_bonus_bp: int = 500
    unfiled_cut_bp: int = 1000

    def rule(self, insutype: str, category: Category) -> BenefitRule:
        return self.rules[(insutype, category)]

    def with_overrides(self, **changes: object) -> InsurancePolicy:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class BenefitContext:
    """Everything about the person and the visit that the policy looks at."""

    insutype: str
    retired: bool
    category: Category
    hospital_level: int
    cross_province: bool
    filed: bool
    emergency: bool
    deductible_paid_ytd: int  # outpatient deductible already paid this year
    fund_paid_ytd: int  # fund paid this year in this category
    balance: int  # personal account balance
    acct_used: bool


@dataclass(frozen=True, slots=True)
class Benefit:
    """The computed split of one settlement; every invariant of DOMAIN.md §3 holds."""

    medfee_sumamt: int
    fulamt_ownpay_amt: int
    overlmt_selfpay: int
    preselfpay_amt: int
    inscp_scp_amt: int
    act_pay_dedc: int
    ratio_bp: int
    hifp_pay: int
    fund_pay_sumamt: int
    psn_part_amt: int
    acct_pay: int
    psn_cash_pay: int
    balc: int


def ratio_for(policy: InsurancePolicy, ctx: BenefitContext) -> int:
    """Reimbursement ratio in bp after the retiree bonus and the unfiled cross-province cut."""
    ratio = policy.rule(ctx.insutype, ctx.category).ratio_bp[ctx.hospital_level - 1]
    if ctx.retired and ctx.insutype == EMPLOYEE:
        ratio += policy.retired_bonus_bp
    if ctx.cross_province and not ctx.filed and not ctx.emergency:
        ratio -= policy.unfiled_cut_bp
    return max(0, min(BP_ONE, ratio))


def compute_benefit(policy: InsurancePolicy, fees: FeeTotals, ctx: BenefitContext) -> Benefit:
    """Apply the insured-place policy to classified fees (DOMAIN.md §3 step 2)."""
    rule = policy.rule(ctx.insutype, ctx.category)
    inscp = fees.inscp_scp_amt
    deductible = rule.deductible[ctx.hospital_level - 1]
    if ctx.category is Category.INPATIENT:
        deductible_left = deductible  # per admission
    else:
        deductible_left = max(0, deductible - ctx.deductible_paid_ytd)
    act_pay_dedc = min(inscp, deductible_left)
    ratio = ratio_for(policy, ctx)
    cap_left = max(0, rule.annual_cap - ctx.fund_paid_ytd)
    hifp_pay = min(apply_bp(inscp - act_pay_dedc, ratio), cap_left)
    fund_pay = hifp_pay
    psn_part = fees.medfee_sumamt - fund_pay
    acct_pay = min(ctx.balance, psn_part) if ctx.acct_used and ctx.insutype == EMPLOYEE else 0
    return Benefit(
        medfee_sumamt=fees.medfee_sumamt,
        fulamt_ownpay_amt=fees.fulamt_ownpay_amt,
        overlmt_selfpay=fees.overlmt_selfpay,
        preselfpay_amt=fees.preselfpay_amt,
        inscp_scp_amt=inscp,
        act_pay_dedc=act_pay_dedc,
        ratio_bp=ratio,
        hifp_pay=hifp_pay,
        fund_pay_sumamt=fund_pay,
        psn_part_amt=psn_part,
        acct_pay=acct_pay,
        psn_cash_pay=psn_part - acct_pay,
        balc=ctx.balance - acct_pay,
    )
