"""The provinces' policy parameters (DOMAIN.md §3, §5 and §6 *parameters*,
settlement/parameters.py): `--policy FILE` sets them, every key left out keeps DOMAIN.md's
default, a province's own values reach the persons insured there and no one else, and a file
that cannot be used is refused with where and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from huimin import cli
from huimin.logfiles import read_visit_log
from huimin.policy_file import read_policy_file
from messages.envelope import province_of
from settlement.catalogue import ItemClass
from settlement.oracle import Oracle
from settlement.parameters import (
    ParameterError,
    lab_validity_days_for,
    parse_parameters,
    policy_for,
    selfpay_bp_for,
    unlikely_values,
)
from settlement.policy import EMPLOYEE, RESIDENT, Category, InsurancePolicy
from simulators.regions import PROVINCES
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world

REPO = Path(__file__).resolve().parents[1]
SH = "310000"
#: 上海 pays every employee's outpatient visit in full from the first fen, up to a cap.
GENEROUS_SH = {"provinces": {SH: {"rules": {"employee_outpatient": {
    "deductible": 0, "ratio_bp": 10_000, "annual_cap": 100_000_000}}, "unfiled_cut_bp": 0}}}


def test_the_documented_example_spells_out_the_defaults_so_it_changes_nothing() -> None:
    data = read_policy_file(REPO / "docs" / "parameters.yaml")
    assert data is not None and data["defaults"]["rules"]  # every value is written out
    parameters = parse_parameters(data, PROVINCES)
    for province in PROVINCES:
        assert policy_for(parameters, province) == InsurancePolicy(province)
        assert selfpay_bp_for(parameters, province) == 1000


def test_a_province_overrides_the_defaults_which_override_domain_md() -> None:
    parameters = parse_parameters({
        "defaults": {"retired_bonus_bp": 300, "selfpay_bp": 2000,
                     "rules": {"resident_inpatient": {"ratio_bp": [9000, 8000, 7000]}}},
        "provinces": {int(SH): {"retired_bonus_bp": 800, "selfpay_bp": 500,
                                "rules": {"resident_inpatient": {"annual_cap": 1}}}},
    }, PROVINCES)
    sh, bj = policy_for(parameters, SH), policy_for(parameters, "110000")
    assert (sh.retired_bonus_bp, bj.retired_bonus_bp) == (800, 300)
    assert sh.unfiled_cut_bp == bj.unfiled_cut_bp == 1000  # not given anywhere
    assert sh.rule(RESIDENT, Category.INPATIENT).ratio_bp == (9000, 8000, 7000)  # defaults
    assert sh.rule(RESIDENT, Category.INPATIENT).annual_cap == 1
    assert bj.rule(RESIDENT, Category.INPATIENT).annual_cap == 300_000_00
    assert sh.rule(EMPLOYEE, Category.OUTPATIENT) == \
        InsurancePolicy(SH).rule(EMPLOYEE, Category.OUTPATIENT)
    assert (selfpay_bp_for(parameters, SH), selfpay_bp_for(parameters, "110000")) == (500, 2000)


def settlements(parameters: dict[str, Any] | None) -> list[tuple[str, dict[str, Any] | None]]:
    """The final settlement of each of 500 visits, by the person's insured province (300
    held one of a person insured in 上海, then none, when the generator stopped dating
    visits inside a person's own stay)."""
    world = build_world(WorldSpec(seed=5, persons=600, parameters=parameters))
    oracle = Oracle(world.ref)
    return [(province_of(world.ref.enrollments[s.visit.certno].insuplc_admdvs), s.settlement)
            for s in oracle.settle_log(generate_visits(world, VisitSpec(visits=500)))]


def test_a_provinces_policy_settles_the_persons_insured_there_and_no_one_else() -> None:
    default, generous = settlements(None), settlements(GENEROUS_SH)
    changed = [(p, a, b) for (p, a), (_, b) in zip(default, generous, strict=True) if a != b]
    assert changed and {p for p, _, _ in changed} == {SH}
    for _, before, after in changed:
        assert before is not None and after is not None
        if after["insutype"] == EMPLOYEE and after["med_type"].startswith("1"):
            assert after["hifp_pay"] == after["inscp_scp_amt"] > before["hifp_pay"]


@pytest.mark.parametrize(("data", "where", "what"), [
    ({"defaults": {"unfiled_cut_bp": 1.5}}, "defaults.unfiled_cut_bp", "valid integer"),
    # a bound says its unit (an analyst read "less than or equal to 10000000000" unitless)
    ({"defaults": {"selfpay_bp": 10_001}}, "defaults.selfpay_bp",
     "less than or equal to 10000 basis points (10000 = 100 %)"),
    ({"provinces": {SH: {"rules": {"employee_outpatient": {"annual_cap": -1}}}}},
     f"provinces.{SH}.rules.employee_outpatient.annual_cap", "greater than or equal to 0 fen"),
    ({"defaults": {"rules": {"employee_inpatient": {"annual_cap": 10**11}}}},
     "defaults.rules.employee_inpatient.annual_cap",
     "less than or equal to 10000000000 fen (¥1 = 100)"),
    ({"defaults": {"prepayment_months": 25}}, "defaults.prepayment_months",
     "less than or equal to 24 months"),
    ({"provinces": {999999: {}}}, "provinces", "999999 is not a province"),
    ({"defaults": {"rules": {"employee_dental": {}}}}, "defaults.rules.employee_dental",
     "employee_outpatient"),
    ({"defaults": {"rules": {"employee_inpatient": {"deductible": [1, 2]}}}},
     "defaults.rules.employee_inpatient.deductible", "a list of three"),
    ({"default": {}}, "default", "not a key of a policy file here"),
    ([1, 2], "", "must be a mapping"),
    # one value for the three levels is one problem, and a number not whole says its unit
    ({"defaults": {"rules": {"employee_inpatient": {"ratio_bp": -100}}}},
     "defaults.rules.employee_inpatient.ratio_bp: Input should be greater than or equal to 0",
     "or equal to 0"),
    ({"defaults": {"rules": {"employee_inpatient": {"deductible": 300.5}}}},
     "defaults.rules.employee_inpatient.deductible:", "a whole number of fen (¥1 = 100)"),
    ({"defaults": {"rules": {"employee_inpatient": {"ratio_bp": [9000, 0.85, 8000]}}}},
     "defaults.rules.employee_inpatient.ratio_bp (hospital level 2):",
     "whole number of basis points"),
    ({"defaults": {"prepayment_months": 1.5}}, "defaults.prepayment_months:",
     "a whole number of months, 0–24"),
])
def test_parameters_that_cannot_be_used_are_refused_saying_where_and_why(
        data: Any, where: str, what: str) -> None:
    with pytest.raises(ParameterError) as refused:
        parse_parameters(data, PROVINCES)
    assert str(refused.value).startswith(where) and what in str(refused.value)
    assert "more)" not in str(refused.value)


def test_two_values_each_given_once_for_the_three_levels_are_two_problems() -> None:
    with pytest.raises(ParameterError, match=r"\(and 1 more\)$"):
        parse_parameters({"defaults": {"rules": {"employee_inpatient": {
            "deductible": -1, "ratio_bp": -1}}}}, PROVINCES)


def test_values_most_likely_in_another_unit_are_named_with_what_they_are_taken_as() -> None:
    """A percent for basis points, yuan for fen: in range, so taken, but an analyst who
    wrote 85 for 85 % settled at 0.85 % without a word (a policy analyst's review)."""
    parameters = parse_parameters({"defaults": {"selfpay_bp": 20, "rules": {
        "resident_inpatient": {"ratio_bp": [85, 75, 7000], "deductible": 500}}},
        "provinces": {SH: {"rules": {"employee_outpatient": {"annual_cap": 0}}}}}, PROVINCES)
    assert unlikely_values(parameters) == [
        "defaults.selfpay_bp: 20 taken as basis points, 0.20 % (85 % is 8500)",
        "defaults.rules.resident_inpatient.ratio_bp: 85, 75, 7000 taken as basis points, "
        "0.85 %, 0.75 %, 70.00 % (85 % is 8500)",
        "defaults.rules.resident_inpatient.deductible: 500, 500, 500 taken as fen, ¥5.00, "
        "¥5.00, ¥5.00 (¥500 is 50000)"]  # a cap of 0 is no unit mistake: left unsaid
    assert unlikely_values(parse_parameters(read_policy_file(
        REPO / "docs" / "parameters.yaml"), PROVINCES)) == []


def test_a_command_warns_of_them_and_of_a_file_with_no_parameters(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    args = ["world", "--persons", "50", "--out", str(tmp_path / "w"), "--policy", str(policy)]
    policy.write_text("defaults:\n  rules:\n    resident_inpatient:\n      ratio_bp: 85\n",
                      encoding="utf-8")
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert (f"Warning: {policy}: defaults.rules.resident_inpatient.ratio_bp: 85, 85, 85 "
            "taken as basis points") in " ".join(result.output.split())
    policy.write_text("# nothing yet\n", encoding="utf-8")
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert f"Warning: {policy} holds no parameters: DOMAIN.md's policy is used" in " ".join(
        result.output.split())


def test_generate_keeps_the_policy_in_the_log_and_refuses_a_bad_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"provinces:\n  {SH}:\n    unfiled_cut_bp: 0\n", encoding="utf-8")
    log = tmp_path / "v.jsonl"
    args = ["generate", "--persons", "200", "--visits", "20", "-o", str(log)]
    result = CliRunner().invoke(cli.app, [*args, "--policy", str(policy)])
    assert result.exit_code == 0, result.output
    header, visits = read_visit_log(log)
    assert header.world.parameters == {"provinces": {SH: {"unfiled_cut_bp": 0}}}
    assert len(list(visits)) == 20
    policy.write_text("defaults:\n\tretired_bonus_bp: 5\n", encoding="utf-8")
    result = CliRunner().invoke(cli.app, [*args, "--policy", str(policy)])
    assert result.exit_code == 2
    assert f"Error: {policy}: not YAML (line 2: found character" in result.output
    policy.write_text("defaults:\n  retired_bonus_bp: -5\n", encoding="utf-8")
    result = CliRunner().invoke(cli.app, [*args, "--policy", str(policy)])
    assert result.exit_code == 2
    assert f"{policy}: defaults.retired_bonus_bp: Input should be greater" in result.output


@pytest.mark.parametrize(("text", "refusal"), [
    ("defaults:\n  retired_bonus_bp: 0500\n",
     "line 2: write 0500 as a decimal number (YAML reads it as 320)"),
    ("defaults:\n  selfpay_bp: 0x10\n", "line 2: write 0x10 as a decimal number"),
    ("defaults:\n  retired_bonus_bp: 1:30\n", "(YAML reads it as 90)"),
    (f"provinces:\n  {SH}: {{unfiled_cut_bp: 500}}\n  {SH}: {{unfiled_cut_bp: 0}}\n",
     f"line 3: {SH} is given twice in one mapping"),
    (f'provinces:\n  {SH}: {{unfiled_cut_bp: 500}}\n  "{SH}": {{unfiled_cut_bp: 0}}\n',
     f"line 3: {SH} is given twice"),
    ("defaults:\n  rules:\n    resident_outpatient:\n      annual_cap: 1\n"
     "      annual_cap: 2\n", "line 5: annual_cap is given twice"),
])
def test_yaml_its_writer_did_not_mean_is_refused_not_read_silently(
        tmp_path: Path, text: str, refusal: str) -> None:
    """YAML 1.1 reads 0500 as octal 320 and keeps the last of two equal keys without a word;
    for money and ratios either would settle by numbers nobody wrote."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(text, encoding="utf-8")
    with pytest.raises(ParameterError) as refused:
        read_policy_file(policy)
    assert str(refused.value).startswith(f"{policy}: line ")
    assert refusal in str(refused.value)


def test_a_merge_key_shares_values_that_keys_given_beside_it_override(tmp_path: Path) -> None:
    """`<<: *anchor` is YAML's own way to share a province's values; overriding one of them
    is what it is for, not a key given twice."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(f'provinces:\n  "{SH}": &sh\n    unfiled_cut_bp: 900\n'
                      '    retired_bonus_bp: 400\n  "320000":\n    <<: *sh\n'
                      '    retired_bonus_bp: 600\n', encoding="utf-8")
    data = read_policy_file(policy)
    assert data is not None
    assert data["provinces"]["320000"] == {"unfiled_cut_bp": 900, "retired_bonus_bp": 600}
    assert data["provinces"][SH] == {"unfiled_cut_bp": 900, "retired_bonus_bp": 400}


def test_decimal_numbers_with_digit_groups_and_zero_still_read(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"defaults:\n  unfiled_cut_bp: 0\nprovinces:\n  {SH}:\n    rules:\n"
                      "      employee_outpatient: {annual_cap: 3_000_000}\n", encoding="utf-8")
    data = read_policy_file(policy)
    assert data is not None
    assert data["defaults"]["unfiled_cut_bp"] == 0
    assert data["provinces"][SH]["rules"]["employee_outpatient"]["annual_cap"] == 3_000_000


def test_a_policy_files_class_b_share_applies_to_every_class_b_item_of_the_world() -> None:
    """DOMAIN.md §3: the class-B self-pay share is a parameter per province; until 12-05 two
    in five class-B entries of the world had a share of their own, which no file changed."""
    world = build_world(WorldSpec(seed=3, persons=50, parameters={
        "defaults": {"selfpay_bp": 2500}, "provinces": {SH: {"selfpay_bp": 0}}}))
    for province, catalogue in world.ref.catalogues.items():
        b_items = [code for code, entry in catalogue.entries.items()
                   if entry.item_class is ItemClass.B]
        assert b_items
        splits = [catalogue.classify(code, 4, 10_000) for code in b_items]
        assert {s.selfpay_bp for s in splits} == ({0} if province == SH else {2_500})
        # what the share takes of each item's allowed amount (after its price ceiling)
        assert all(4 * s.preselfpay_amt == (0 if province == SH else s.amount
                                            - s.overlmt_selfpay) for s in splits)


def test_a_lab_window_outside_0_to_3650_days_is_refused_in_days() -> None:
    assert lab_validity_days_for(parse_parameters(None, [SH]), SH) == 30
    with pytest.raises(ParameterError, match=r"defaults.lab_validity_days: .*whole number of "
                                             r"days, 0–3650"):
        parse_parameters({"defaults": {"lab_validity_days": 1.5}}, [SH])
    with pytest.raises(ParameterError, match=r"defaults.lab_validity_days: .*less than or equal"):
        parse_parameters({"defaults": {"lab_validity_days": 3651}}, [SH])


@pytest.mark.parametrize("data, where", [
    ({"defaults": {"unfiled_cut_bp": None}}, "defaults.unfiled_cut_bp"),
    ({"defaults": {"retired_bonus_bp": 300,
                   "rules": {"employee_inpatient": {"deductible": None}}}},
     "defaults.rules.employee_inpatient.deductible"),
    ({"changes": {"2027-01-01": None}}, "changes.2027-01-01"),
])
def test_a_key_left_without_a_value_is_refused_not_taken_as_the_default(
        data: Any, where: str) -> None:
    with pytest.raises(ParameterError) as refused:
        parse_parameters(data, PROVINCES)
    assert str(refused.value).startswith(f"{where}: no value given")
