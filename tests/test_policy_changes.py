"""A policy change from a day (a policy file's `changes`): provinces change their benefit
policy on a date, as they do on New Year's Day, and the settlements from that day on are paid
by it, those before by the policy before (the analyst's wish: a change meant a new run)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from huimin import cli
from huimin.policy_file import read_policy_file
from settlement.invariants import InvariantReport, check_person
from settlement.parameters import (
    ParameterError,
    parse_parameters,
    policy_changes_for,
    policy_for,
    unlikely_values,
)
from settlement.policy import EMPLOYEE, RESIDENT, Category
from simulators.regions import PROVINCES
from simulators.world import WorldSpec, build_world, world_tag

DATA = Path(__file__).parent / "data"
CHANGE = DATA / "policy_change.yaml"
SH, BJ = "310000", "110000"
OUTPATIENT = (EMPLOYEE, Category.OUTPATIENT)


def parsed(data: object):
    return parse_parameters(data, PROVINCES)


def test_a_change_holds_from_its_day_on_and_not_before() -> None:
    parameters = parsed(read_policy_file(CHANGE))
    before, on = (policy_for(parameters, SH, day) for day in ("2027-01-31", "2027-02-01"))
    assert before.rule(*OUTPATIENT).deductible == (180_000,) * 3  # DOMAIN.md's
    assert on.rule(*OUTPATIENT).deductible == (0, 0, 0)
    assert on.rule(RESIDENT, Category.OUTPATIENT).annual_cap == 100_000  # 上海's own change
    assert policy_for(parameters, BJ, "2027-02-01").rule(
        RESIDENT, Category.OUTPATIENT).annual_cap == 300_000  # not Beijing's
    assert policy_for(parameters, SH) == before  # no day: before any change


def test_an_unquoted_day_in_yaml_is_kept_as_the_day() -> None:
    policy = read_policy_file(CHANGE)
    assert policy is not None
    assert list(policy["changes"]) == ["2027-02-01"]  # YAML read a date


def test_changes_apply_in_their_order_each_over_those_before_and_the_provinces_own() -> None:
    parameters = parsed({
        "provinces": {SH: {"rules": {"employee_outpatient": {"deductible": 50_000}}}},
        "changes": {
            "2027-06-01": {"defaults": {"unfiled_cut_bp": 0}},  # given out of order
            "2027-01-01": {"defaults": {"rules": {"employee_outpatient": {
                "deductible": 100_000}}}},
        }})
    shanghai = [policy_for(parameters, SH, day) for day in ("2026-12-31", "2027-03-01",
                                                           "2027-06-01")]
    assert [p.rule(*OUTPATIENT).deductible[0] for p in shanghai] == [50_000, 100_000, 100_000]
    assert [p.unfiled_cut_bp for p in shanghai] == [1_000, 1_000, 0]
    assert [since for since, _ in policy_changes_for(parameters, SH)] == [
        "2027-01-01", "2027-06-01"]


def test_a_change_that_changes_nothing_for_a_province_is_not_one_of_its_changes() -> None:
    parameters = parsed({"changes": {"2027-01-01": {"provinces": {SH: {"retired_bonus_bp": 500}}}}})
    assert policy_changes_for(parameters, SH) == ()  # DOMAIN.md's bonus is 5 % already


@pytest.mark.parametrize(("changes", "said"), [
    ({"2027-13-01": {}}, "changes: 2027-13-01 is not a day as yyyy-MM-dd"),
    ({"next year": {}}, "changes: next year is not a day as yyyy-MM-dd"),
    ({"2027-01-01": {"provinces": {"999999": {}}}},
     "changes.2027-01-01.provinces: 999999 is not a province's admdvs"),
    ({"2027-01-01": {"defaults": {"selfpay_bp": 500}}},
     "changes.2027-01-01.defaults.selfpay_bp: not a value that changes from a day"),
    ({"2027-01-01": {"provinces": {SH: {"lab_validity_days": 7}}}},
     f"changes.2027-01-01.provinces.{SH}.lab_validity_days: not a value that changes"),
    ({"2027-01-01": {"defaults": {"rules": {"employee_outpatient": {"deductible": 1.5}}}}},
     "changes.2027-01-01.defaults.rules.employee_outpatient.deductible"),
])
def test_a_change_that_cannot_be_used_is_refused_saying_where(changes: dict, said: str) -> None:
    with pytest.raises(ParameterError) as refused:
        parsed({"changes": changes})
    assert said in str(refused.value)


@pytest.mark.parametrize(("yaml_text", "said"), [
    ("changes:\n  2027-01-01 00:00:00:\n    defaults: {unfiled_cut_bp: 0}\n",
     "changes: 2027-01-01 00:00:00 is a time: a change takes effect from a day"),
    ("changes:\n  2027-01-01T00:00:00+08:00:\n    defaults: {unfiled_cut_bp: 0}\n",
     "is a time: a change takes effect from a day"),
    ("changes:\n  2027-1-1:\n    defaults: {unfiled_cut_bp: 0}\n"
     "  2027-01-01:\n    defaults: {unfiled_cut_bp: 500}\n",
     "changes: 2027-01-01 is 2027-01-01, given twice"),
    ("changes:\n  2027-02-30:\n    defaults: {unfiled_cut_bp: 0}\n",
     "line 2: 2027-02-30 is not a day (day is out of range for month)"),
])
def test_a_policy_file_whose_day_is_not_one_day_is_refused_saying_where(
        tmp_path: Path, yaml_text: str, said: str) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ParameterError) as refused:
        read_policy_file(policy)
    assert said in str(refused.value)
    result = CliRunner().invoke(cli.app, ["world", "--out", str(tmp_path / "w"),
                                          "--persons", "50", "--policy", str(policy)])
    assert result.exit_code == 2, result.output  # refused in words, not a traceback (1)


def test_a_change_outside_the_visits_days_is_said(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("changes:\n  2026-06-01: {defaults: {unfiled_cut_bp: 0}}\n"
                      "  2027-01-01: {defaults: {unfiled_cut_bp: 500}}\n"
                      "  2030-01-01: {defaults: {unfiled_cut_bp: 100}}\n", encoding="utf-8")
    result = CliRunner().invoke(cli.app, ["generate", "-o", str(tmp_path / "v.jsonl"),
                                          "--persons", "200", "--visits", "20",
                                          "--policy", str(policy)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert ("Note: the policy change of 2026-06-01 is on or before the visits' first day, "
            "2026-12-01: it holds throughout") in said
    assert ("Note: the policy change of 2030-01-01 is after the last day a visit may be "
            "settled, 2027-02-13 (a stay begun on the last of the days): it changes nothing "
            "here") in said
    assert "2027-01-01 is" not in said  # within the days: nothing to say


def test_a_value_in_a_change_most_likely_in_another_unit_is_said_with_where() -> None:
    notes = unlikely_values(parsed({"changes": {"2027-01-01": {"provinces": {SH: {
        "rules": {"resident_outpatient": {"ratio_bp": 60}}}}}}}))
    assert notes == [f"changes.2027-01-01.provinces.{SH}.rules.resident_outpatient.ratio_bp: "
                     "60, 60, 60 taken as basis points, 0.60 %, 0.60 %, 0.60 % (85 % is 8500)"]


def test_the_world_settles_by_the_policy_of_the_settlements_day_and_tags_the_change() -> None:
    plain = WorldSpec(persons=200, seed=3)
    changed = WorldSpec(persons=200, seed=3, parameters=read_policy_file(CHANGE))
    ref = build_world(changed).ref
    assert ref.policy_on(SH, "2027-01-31") == ref.policies[SH]
    assert ref.policy_on(SH, "2027-02-01").rule(*OUTPATIENT).deductible == (0, 0, 0)
    assert ref.policy_on(SH, "2030-01-01") == ref.policy_on(SH, "2027-02-01")
    assert build_world(plain).ref.policy_changes == {}
    assert world_tag(changed) != world_tag(plain)
    assert "a policy file's" in world_tag(changed)
    policy = read_policy_file(CHANGE)
    assert policy is not None
    same_day_later = {"changes": {"2027-03-01": policy["changes"]["2027-02-01"]}}
    assert world_tag(WorldSpec(persons=200, seed=3, parameters=same_day_later)) != \
        world_tag(changed)  # the day is part of what settles


def test_the_exported_policies_show_each_change_from_its_day(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["world", "--out", str(tmp_path), "--persons", "50",
                                          "--policy", str(CHANGE)])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "policies.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].endswith(",lab_validity_days,from_day")
    dated = [r.split(",") for r in rows[1:] if not r.endswith(",")]
    assert len(dated) == len(PROVINCES) * 4  # every province changed: the deductible
    shanghai = {r[1]: r for r in dated if r[0] == SH}
    assert shanghai["employee_outpatient"][3:6] == ["0", "0", "0"]
    assert shanghai["resident_outpatient"][9] == "100000"
    assert all(r[-1] == "2027-02-01" for r in dated)


def test_settlements_before_the_day_pay_the_old_deductible_and_after_it_the_new(
        tmp_path: Path) -> None:
    """Through `huimin generate`'s oracle and `huimin verify`'s invariants (the annual cap
    judged by the cap in force on each settlement's day)."""
    log = tmp_path / "v.jsonl"
    runner = CliRunner()
    made = runner.invoke(cli.app, ["generate", "-o", str(log), "--persons", "400", "--visits",
                                   "600", "--seed", "8", "--start", "2027-01-15", "--days", "30",
                                   "--policy", str(CHANGE)])
    assert made.exit_code == 0, made.output
    deductible_paid: dict[bool, list[int]] = defaultdict(list)
    for line in (tmp_path / "v.expected.jsonl").read_bytes().splitlines():
        for answers in orjson.loads(line)["answers"].values():
            s = (answers[0].get("output") or {}).get("setlinfo")
            if s and s.get("setl_id") and s.get("insutype") == EMPLOYEE \
                    and s["clr_type"] == Category.OUTPATIENT:  # a settlement's answer
                deductible_paid[s["setl_time"] >= "2027-02-01"].append(s["act_pay_dedc"])
    assert len(deductible_paid[True]) > 20 and set(deductible_paid[True]) == {0}
    assert max(deductible_paid[False]) > 0  # the old deductible, before the day


def settlement(setl_id: str, day: str, hifp_pay: int) -> tuple[str, list[dict]]:
    """A sound 2207 answer of a resident's outpatient visit paying `hifp_pay` from the fund."""
    fee = hifp_pay + 10_000
    return "2207", [{"infcode": 0, "inf_refmsgid": setl_id, "output": {"setlinfo": {
        "setl_id": setl_id, "mdtrt_id": f"M{setl_id}", "setl_time": f"{day} 09:00:00",
        "clr_type": Category.OUTPATIENT.value, "medfee_sumamt": fee, "fulamt_ownpay_amt": 0,
        "overlmt_selfpay": 0, "preselfpay_amt": 0, "inscp_scp_amt": fee, "act_pay_dedc": 0,
        "hifp_pay": hifp_pay, "fund_pay_sumamt": hifp_pay, "psn_part_amt": 10_000,
        "acct_pay": 0, "psn_cash_pay": 10_000, "balc": 0}}}]


@pytest.mark.parametrize(("february", "over"), [(250_000, False), (350_000, True)])
def test_the_annual_cap_is_judged_by_the_highest_cap_in_force_that_year(february: int,
                                                                        over: bool) -> None:
    """上海 raises its residents' outpatient cap from ¥3,000 to ¥5,000 on 1 February: ¥2,000
    paid in January and ¥2,500 in February is within it; ¥3,500 more is not."""
    raised = {"changes": {"2027-02-01": {"provinces": {SH: {"rules": {
        "resident_outpatient": {"annual_cap": 500_000}}}}}}}
    ref = build_world(WorldSpec(persons=2_000, seed=3, parameters=raised)).ref
    certno = next(c for c, e in sorted(ref.enrollments.items())
                  if e.province == SH and e.insutype == RESIDENT)
    report = InvariantReport()
    check_person(ref, certno, [settlement("S1", "2027-01-10", 200_000),
                               settlement("S2", "2027-02-10", february)], report)
    assert report.checked_settlements == 2
    assert bool(report.violations) == over, dict(report.violations)
