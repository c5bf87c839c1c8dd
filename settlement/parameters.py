"""The *parameters* of DOMAIN.md §3, §5 and §6, set by the user per province: the benefit
rules (deductibles, ratios, annual caps), the retiree bonus, the cut for unfiled
cross-province visits, the class-B self-pay share of the province's catalogue, the prepayment
it holds for the national clearing, and how long its hospitals take a lab result as valid.

A mapping (the CLI reads it from a YAML file, `huimin run --policy FILE`): `defaults` apply to
every province, `provinces` override them one province at a time, and every key left out keeps
DOMAIN.md's default. Money is integer fen, ratios basis points. The validated mapping travels
in the world's spec (simulators/world.py), so the oracle and every worker settle by the same
numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from settlement.clearing import ClearingPolicy
from settlement.money import BP_ONE
from settlement.policy import EMPLOYEE, RESIDENT, BenefitRule, Category, InsurancePolicy

#: The most months of payable a prepayment may hold, and the largest monthly payable
#: (¥1 trillion: a province's real cross-province payable is in the billions)
MAX_PREPAYMENT_MONTHS = 24
MAX_PAYABLE_FEN = 100_000_000_000_000
#: The largest amount a parameter may hold: ¥100 million, far past any real cap.
MAX_PARAMETER_FEN = 10_000_000_000
Fen = Annotated[int, Field(ge=0, le=MAX_PARAMETER_FEN, strict=True)]
Bp = Annotated[int, Field(ge=0, le=BP_ONE, strict=True)]


def _one_for_each_level(value: Any) -> Any:
    return value if isinstance(value, list | tuple) else (value,) * 3


#: A value for each of the hospital levels 1, 2 and 3, or one for all three.
PerLevel = Annotated[tuple[Fen, Fen, Fen], BeforeValidator(_one_for_each_level)]
PerLevelBp = Annotated[tuple[Bp, Bp, Bp], BeforeValidator(_one_for_each_level)]

#: The rule names a file uses, for (insutype, category).
RULES: dict[str, tuple[str, Category]] = {
    "employee_inpatient": (EMPLOYEE, Category.INPATIENT),
    "employee_outpatient": (EMPLOYEE, Category.OUTPATIENT),
    "resident_inpatient": (RESIDENT, Category.INPATIENT),
    "resident_outpatient": (RESIDENT, Category.OUTPATIENT),
}
RuleName = Literal["employee_inpatient", "employee_outpatient", "resident_inpatient",
                   "resident_outpatient"]
DEFAULT_SELFPAY_BP = 1000
#: Days a lab result stays valid for reuse (检查检验结果互认, DOMAIN.md §6), and the most a
#: policy file may set (ten years).
DEFAULT_LAB_VALIDITY_DAYS = 30
MAX_LAB_VALIDITY_DAYS = 3650


class ParameterError(ValueError):
    """Parameters that cannot be used; the message names where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleParameters(_Strict):
    """One benefit rule: the deductible (per admission for inpatients, a year for
    outpatients) and the ratio by hospital level, and the annual cap of the fund's payments."""

    deductible: PerLevel | None = None
    ratio_bp: PerLevelBp | None = None
    annual_cap: Fen | None = None

    def applied_to(self, rule: BenefitRule) -> BenefitRule:
        return BenefitRule(
            deductible=_levels(self.deductible, rule.deductible),
            ratio_bp=_levels(self.ratio_bp, rule.ratio_bp),
            annual_cap=rule.annual_cap if self.annual_cap is None else self.annual_cap)


class BenefitParameters(_Strict):
    """What the insured place's policy pays (DOMAIN.md §3): what a dated change may set."""

    retired_bonus_bp: Bp | None = None
    unfiled_cut_bp: Bp | None = None
    rules: dict[RuleName, RuleParameters] = Field(default_factory=dict)

    def applied_to(self, policy: InsurancePolicy) -> InsurancePolicy:
        rules = dict(policy.rules)
        for name, given in self.rules.items():
            rules[RULES[name]] = given.applied_to(rules[RULES[name]])
        return replace(
            policy, rules=rules,
            retired_bonus_bp=_or(self.retired_bonus_bp, policy.retired_bonus_bp),
            unfiled_cut_bp=_or(self.unfiled_cut_bp, policy.unfiled_cut_bp))


class ProvinceParameters(BenefitParameters):
    """A province's parameters for the whole run: its benefit policy, and what it holds
    beyond it (its catalogue's class-B share, its prepayment, its lab results' reuse)."""

    selfpay_bp: Bp | None = None
    #: the prepayment held at the national platform (DOMAIN.md §5): months of the expected
    #: monthly cross-province payable (fen; left out, the largest month cleared so far)
    prepayment_months: Annotated[int, Field(ge=0, le=MAX_PREPAYMENT_MONTHS, strict=True)] | None \
        = None
    expected_monthly_payable: Annotated[int, Field(ge=0, le=MAX_PAYABLE_FEN, strict=True)] \
        | None = None
    #: how old a lab result the province's hospitals take instead of repeating the test
    lab_validity_days: Annotated[int, Field(ge=0, le=MAX_LAB_VALIDITY_DAYS, strict=True)] \
        | None = None


class PolicyChange(_Strict):
    """Benefit values that change from a day on (the settlement's day, inclusive): its
    `defaults` for every province, over their own values, then a province's own."""

    defaults: BenefitParameters = BenefitParameters()
    provinces: dict[str, BenefitParameters] = Field(default_factory=dict)


class Parameters(_Strict):
    defaults: ProvinceParameters = ProvinceParameters()
    provinces: dict[str, ProvinceParameters] = Field(default_factory=dict)
    #: by the day (yyyy-MM-dd) each takes effect; each applies over those before it
    changes: dict[str, PolicyChange] = Field(default_factory=dict)


def _levels(given: tuple[int, int, int] | None,
            default: tuple[int, int, int]) -> tuple[int, int, int]:
    return default if given is None else given


def _or(given: int | None, default: int) -> int:
    return default if given is None else given


def parse_parameters(data: Any, provinces: Iterable[str]) -> Parameters:
    """`data` (a YAML file's content) checked: known keys, whole fen and basis points in
    range, and only the given provinces (admdvs, `310000`: a key YAML read as a number
    counts too); None is no parameters."""
    if data is None:
        return Parameters()
    if not isinstance(data, Mapping):
        raise ParameterError("parameters must be a mapping with `defaults`, `provinces` "
                             "and/or `changes`")
    if (empty := _first_empty(data)) is not None:
        raise ParameterError(f"{empty}: no value given (write one, or leave the key out "
                             "for the value it would otherwise have)")
    known = set(provinces)
    data = _with_province_keys(data, known, "provinces")
    if isinstance(changes := data.get("changes"), Mapping):
        by_day: dict[str, Any] = {}
        for key, change in changes.items():
            if (day := _day(key)) in by_day:  # 2027-1-1 and 2027-01-01: one day, twice
                raise ParameterError(f"changes: {key} is {day}, given twice")
            by_day[day] = _with_province_keys(change, known, f"changes.{day}.provinces")
        data = {**data, "changes": by_day}
    try:
        return Parameters.model_validate(data)
    except ValidationError as exc:
        raise ParameterError(_said(exc.errors())) from None


def _first_empty(data: Any, where: str = "") -> str | None:
    """Where a key of the file is given no value (`deductible:` left blank), if anywhere:
    YAML reads it as null, which would silently stand for the value the key would have
    had without it."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            at = f"{where}.{key}" if where else str(key)
            if value is None:
                return at
            if (found := _first_empty(value, at)) is not None:
                return found
    elif isinstance(data, list):  # a value a hospital level
        for level, value in enumerate(data, start=1):
            if value is None:
                return f"{where} (hospital level {level})"
    return None


def _with_province_keys(data: Any, known: set[str], where: str) -> Any:
    """`data` with its `provinces` keyed by admdvs as text (YAML reads 310000 as a number),
    or refused when one is not a province's."""
    by_province = data.get("provinces") if isinstance(data, Mapping) else None
    if not isinstance(by_province, Mapping):
        return data
    if unknown := sorted(str(p) for p in by_province if str(p) not in known):
        raise ParameterError(f"{where}: {', '.join(unknown)} is not a province's admdvs "
                             f"(e.g. 310000 for 上海)")
    return {**data, "provinces": {str(p): v for p, v in by_province.items()}}


def _day(key: Any) -> str:
    """A change's day as yyyy-MM-dd (YAML reads an unquoted 2027-01-01 as a date)."""
    if isinstance(key, datetime):  # a date too: first
        raise ParameterError(f"changes: {key} is a time: a change takes effect from a day, "
                             "yyyy-MM-dd (e.g. 2027-01-01)")
    if isinstance(key, date):
        return key.isoformat()
    try:
        return datetime.strptime(str(key), "%Y-%m-%d").strftime("%Y-%m-%d")
    except ValueError:
        raise ParameterError(f"changes: {key} is not a day as yyyy-MM-dd (the day the change "
                             "takes effect, e.g. 2027-01-01)") from None


def _said(errors: list[Any]) -> str:
    """The first problem of a policy file, in its terms: a value given once for all three
    hospital levels is one problem, not three, and a number that is not whole is told in
    what unit it is whole."""
    first = errors[0]
    loc = first["loc"]
    where = ".".join(str(part) for part in loc if not isinstance(part, int)) or "(the top)"
    # a list's place is a hospital level, numbered from 1 as docs/parameters.yaml does
    level = f" (hospital level {loc[-1] + 1})" if loc and isinstance(loc[-1], int) else ""
    what = first["msg"]
    if first["type"] == "extra_forbidden":
        what = "not a key of a policy file here (docs/parameters.yaml lists them)"
    elif first["type"] in ("dict_type", "model_type"):
        what = "should be a mapping of keys to values (or leave it out)"
    elif first["type"] in ("too_long", "too_short"):
        what = "give one value for all three hospital levels, or a list of three"
    # a value given once for the three levels fails three times alike: one problem
    groups: dict[tuple[Any, ...], set[str]] = {}
    for e in errors:
        key = e["loc"][:-1] if e["loc"] and isinstance(e["loc"][-1], int) else e["loc"]
        groups.setdefault(tuple(key), set()).add(e["msg"])
    problems = sum(len(msgs) for msgs in groups.values())
    if loc and isinstance(loc[-1], int):
        levels = [e for e in errors if e["loc"][:-1] == loc[:-1]]
        if first["type"] == "missing":
            level = ""  # a list of levels, not of three
            what = "give one value for all three hospital levels, or a list of three"
        elif len(levels) == 3 and len({e["msg"] for e in levels}) == 1:
            level = ""
    name = next((str(part) for part in reversed(loc) if isinstance(part, str)), "")
    if loc[:1] == ("changes",) and first["type"] == "extra_forbidden" \
            and name in ProvinceParameters.model_fields:
        what = ("not a value that changes from a day: the catalogue's class-B share, the "
                "clearing's prepayment and the lab results' reuse hold for the whole run "
                "(give them under the file's top-level `defaults` or `provinces`)")
    unit = ("basis points (10000 = 100 %)" if name.endswith("_bp")
            else f"months, 0–{MAX_PREPAYMENT_MONTHS}" if name == "prepayment_months"
            else f"days, 0–{MAX_LAB_VALIDITY_DAYS}" if name == "lab_validity_days"
            else "fen (¥1 = 100)")
    if first["type"] in ("int_type", "int_parsing", "int_from_float"):
        what += f": a whole number of {unit}"
    elif first["type"] in ("less_than_equal", "greater_than_equal"):
        what += f" {unit.split(',')[0]}"
    more = f" (and {problems - 1} more)" if problems > 1 else ""
    return f"{where}{level}: {what}{more}"


def policy_for(parameters: Parameters, province: str, day: str = "") -> InsurancePolicy:
    """The insured-place policy of `province` on `day` (yyyy-MM-dd; "": before any change):
    DOMAIN.md's defaults, then `defaults`, then the province's own values, then each change
    from a day up to `day`, in their order."""
    policy = parameters.defaults.applied_to(InsurancePolicy(province))
    own = parameters.provinces.get(province)
    policy = own.applied_to(policy) if own is not None else policy
    for since in sorted(parameters.changes):
        if since > day:
            break
        change = parameters.changes[since]
        policy = change.defaults.applied_to(policy)
        if (changed := change.provinces.get(province)) is not None:
            policy = changed.applied_to(policy)
    return policy


def policy_changes_for(parameters: Parameters,
                       province: str) -> tuple[tuple[str, InsurancePolicy], ...]:
    """The days `province`'s policy changes on, each with the policy from then on (a change
    that leaves it as it was is not one)."""
    changes: list[tuple[str, InsurancePolicy]] = []
    before = policy_for(parameters, province)
    for since in sorted(parameters.changes):
        if (policy := policy_for(parameters, province, since)) != before:
            changes.append((since, policy))
        before = policy
    return tuple(changes)


def clearing_policy_for(parameters: Parameters, provinces: Iterable[str]) -> ClearingPolicy:
    """The national clearing's prepayment parameters of every province, `defaults` then the
    province's own (DOMAIN.md §5: two months, the expected payable otherwise the largest
    month cleared so far)."""
    months: dict[str, int] = {}
    expected: dict[str, int] = {}
    for p in provinces:
        own = parameters.provinces.get(p) or ProvinceParameters()
        for mine, default, into in (
                (own.prepayment_months, parameters.defaults.prepayment_months, months),
                (own.expected_monthly_payable, parameters.defaults.expected_monthly_payable,
                 expected)):
            if (value := mine if mine is not None else default) is not None:
                into[p] = value
    return ClearingPolicy(expected_monthly_payable=expected, months=months)


def selfpay_bp_for(parameters: Parameters, province: str) -> int:
    """The class-B self-pay share of `province`'s catalogue for entries without their own."""
    own = parameters.provinces.get(province)
    return _or(own.selfpay_bp if own is not None else None,
               _or(parameters.defaults.selfpay_bp, DEFAULT_SELFPAY_BP))


def lab_validity_days_for(parameters: Parameters, province: str) -> int:
    """How many days back a result a hospital of `province` reuses (7004)."""
    own = parameters.provinces.get(province)
    return _or(own.lab_validity_days if own is not None else None,
               _or(parameters.defaults.lab_validity_days, DEFAULT_LAB_VALIDITY_DAYS))


def as_data(parameters: Parameters) -> dict[str, Any] | None:
    """What a world's spec keeps: only the values given (JSON), or None for none."""
    data = parameters.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    return data or None


#: Under these a value was most likely written in another unit: 85 meaning 85 % (8500 bp),
#: 500 meaning ¥500 (50000 fen). They are in range, so they are taken; the CLI warns.
UNLIKELY_BP = 100
UNLIKELY_FEN = 1_000


def _percent(bp: int) -> str:
    return f"{bp // 100}.{bp % 100:02d} %"


def _yuan(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}"


def unlikely_values(parameters: Parameters) -> list[str]:
    """Where a policy most likely says a percent for basis points or yuan for fen (a ratio
    under 1 %, a deductible or cap under ¥10), each told as what it is taken as."""
    notes: list[str] = []
    scopes: list[tuple[str, BenefitParameters]] = [
        ("defaults", parameters.defaults),
        *((f"provinces.{p}", given) for p, given in sorted(parameters.provinces.items()))]
    for day, change in sorted(parameters.changes.items()):
        scopes += [(f"changes.{day}.defaults", change.defaults),
                   *((f"changes.{day}.provinces.{p}", given)
                     for p, given in sorted(change.provinces.items()))]
    for scope, given in scopes:
        fields: list[tuple[str, tuple[int, ...] | int | None, bool]] = [
            (f"{scope}.{name}", getattr(given, name, None), True)
            for name in ("retired_bonus_bp", "unfiled_cut_bp", "selfpay_bp")]
        for rule_name, rule in sorted(given.rules.items()):
            where = f"{scope}.rules.{rule_name}"
            fields += [(f"{where}.ratio_bp", rule.ratio_bp, True),
                       (f"{where}.deductible", rule.deductible, False),
                       (f"{where}.annual_cap", rule.annual_cap, False)]
        for where, value, is_bp in fields:
            values = value if isinstance(value, tuple) else () if value is None else (value,)
            if not any(0 < v < (UNLIKELY_BP if is_bp else UNLIKELY_FEN) for v in values):
                continue
            shown = ", ".join(map(str, values))
            if is_bp:
                notes.append(f"{where}: {shown} taken as basis points, "
                             f"{', '.join(map(_percent, values))} (85 % is 8500)")
            else:
                notes.append(f"{where}: {shown} taken as fen, "
                             f"{', '.join(map(_yuan, values))} (¥500 is 50000)")
    return notes
