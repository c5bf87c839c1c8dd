"""`huimin world` writes the world a platform of the same options settles by, so an integrator
can write requests of their own: the rows are the world's, the same options give the same
files, and a visit made only of what the files say is settled as they say."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from huimin import cli
from messages.visitlog import Visit, VisitItem
from settlement.oracle import Oracle
from simulators.world import WorldSpec, build_world, world_tag

OPTIONS = ["--persons", "300", "--seed", "3"]


def huimin(*args: str) -> Result:
    return CliRunner().invoke(cli.app, list(args))


def rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("world")
    result = huimin("world", "--out", str(folder), *OPTIONS)
    assert result.exit_code == 0, result.output
    assert "300 rows in persons.csv" in result.output
    return folder


def test_the_files_hold_the_worlds_hospitals_persons_and_catalogues(exported: Path) -> None:
    world = build_world(WorldSpec(seed=3, persons=300))
    hospitals = rows(exported, "hospitals.csv")
    assert {(h["fixmedins_code"], h["admdvs"], int(h["level"])) for h in hospitals} == {
        (h.fixmedins_code, h.admdvs, h.level) for h in world.ref.hospitals.values()}
    persons = {p["certno"]: p for p in rows(exported, "persons.csv")}
    assert persons.keys() == world.ref.enrollments.keys()
    for certno, e in world.ref.enrollments.items():
        p = persons[certno]
        assert (p["psn_no"], p["insutype"], p["insuplc_admdvs"], int(p["balc"]),
                p["psn_insu_stas"]) == (e.psn_no, e.insutype, e.insuplc_admdvs, e.balance,
                                        e.insu_stas)
        assert p["psn_type"] == ("1102" if e.retired else "1101")
        assert p["filings"] == ";".join(
            f"{f.fil_type}:{f.province}:{f.begndate}:{f.enddate}" for f in e.filings)
        assert (p["lives_in"], p["ehr_sharing"]) == (world.away_province.get(certno, ""),
                                                     e.ehr_sharing)
    assert any(p["filings"] for p in persons.values())  # the check above saw some
    assert any(p["lives_in"] for p in persons.values())
    for row in rows(exported, "catalogues.csv"):
        catalogue = world.ref.catalogues[row["province"]]
        split = catalogue.classify(row["med_list_codg"], 1, 1)
        assert (row["chrgitm_lv"], int(row["selfpay_prop_bp"])) == (split.chrgitm_lv,
                                                                   split.selfpay_bp)
        # the ceiling the platform applies (2204's pric_uplmt_amt): the catalogue's for
        # classes A and B, none for class C, wholly self-paid whatever it lists
        ceiling = catalogue.entries[row["med_list_codg"]].ceiling
        applied = None if row["chrgitm_lv"] == "03" else ceiling
        assert row["pric_uplmt_amt"] == ("" if applied is None else str(applied))
    assert any(row["pric_uplmt_amt"] for row in rows(exported, "catalogues.csv"))
    assert len(rows(exported, "items.csv")) == len(world.items)
    meta = orjson.loads((exported / "world.json").read_bytes())
    assert meta["tag"] == world_tag(world.spec)


def test_the_same_options_write_the_same_files(exported: Path, tmp_path: Path) -> None:
    assert huimin("world", "--out", str(tmp_path), *OPTIONS).exit_code == 0
    for name in ("hospitals.csv", "persons.csv", "items.csv", "catalogues.csv",
                 "policies.csv", "world.json"):
        assert (tmp_path / name).read_bytes() == (exported / name).read_bytes(), name


def test_a_visit_made_from_the_files_alone_is_settled_as_they_say(exported: Path) -> None:
    """An insured person at a hospital of their own city, one class-A item without a ceiling:
    nothing is own-pay, and the fund pays what DOMAIN.md's default policy (the world's, as
    world.json says) gives for the person's insutype and retirement and the hospital's level,
    worked out from the files alone."""
    person = next(p for p in rows(exported, "persons.csv")
                  if p["psn_insu_stas"] == "1" and not p["lives_in"])
    hospital = next(h for h in rows(exported, "hospitals.csv")
                    if h["admdvs"] == person["insuplc_admdvs"])
    item = next(r for r in rows(exported, "catalogues.csv")
                if r["province"] == hospital["province"] and r["chrgitm_lv"] == "01"
                and not r["pric_uplmt_amt"])
    visit = Visit(visit_no=1, certno=person["certno"], fixmedins_code=hospital["fixmedins_code"],
                  mdtrtarea_admvs=hospital["admdvs"], begntime="2026-05-01 08:00:00", seq=0,
                  items=[VisitItem(code=item["med_list_codg"], cnt=1, pric=500_000)])
    session = Oracle(build_world(WorldSpec(seed=3, persons=300)).ref).run_visit(visit)
    setl = session.settlement
    assert setl is not None, session.failed
    assert (setl["psn_no"], setl["insutype"]) == (person["psn_no"], person["insutype"])
    assert (setl["fulamt_ownpay_amt"], setl["inscp_scp_amt"]) == (0, 500_000)
    assert "DOMAIN.md's policy" in orjson.loads((exported / "world.json").read_bytes())["tag"]
    # DOMAIN.md §3, outpatient (annual deductible, this year's first visit): employees 310
    # 1,800 yuan at 90/80/70 % by level, +5 % retired (1102); residents 390 100 yuan at
    # 60/55/50 %; neither reaches its annual cap here
    employee = person["insutype"] == "310"
    deductible = 180_000 if employee else 10_000
    ratio_bp = ((9000, 8000, 7000) if employee else (6000, 5500, 5000))[
        int(hospital["level"]) - 1] + (500 if employee and person["psn_type"] == "1102" else 0)
    assert (setl["act_pay_dedc"], setl["hifp_pay"]) == (
        deductible, ((500_000 - deductible) * ratio_bp + 5_000) // 10_000)


def test_an_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "taken"
    file.write_text("x")
    result = huimin("world", "--out", str(file), *OPTIONS)
    assert result.exit_code == 2
    assert "is a file, not a folder" in result.output
    assert file.read_text() == "x"


def test_policies_csv_is_the_policy_in_effect_and_a_file_changes_only_its_rows(
        exported: Path, tmp_path: Path) -> None:
    """DOMAIN.md §3's defaults for every province; a policy file's change shows in the rows
    it names alone (an analyst had no view of the merged policy: a policy analyst's review)."""
    default = rows(exported, "policies.csv")
    assert len(default) == 31 * 4
    by = {(r["province"], r["rule"]): r for r in default}
    # DOMAIN.md §3, restated: employee inpatient 300/600/1,000 yuan at 95/90/85 %, cap 500,000
    # yuan; resident outpatient 100 yuan a year at 60/55/50 %, cap 3,000 yuan
    inpatient = by["310000", "employee_inpatient"]
    assert [inpatient[f"deductible_l{n}"] for n in (1, 2, 3)] == ["30000", "60000", "100000"]
    assert [inpatient[f"ratio_bp_l{n}"] for n in (1, 2, 3)] == ["9500", "9000", "8500"]
    assert inpatient["annual_cap"] == "50000000" and inpatient["insutype"] == "310"
    outpatient = by["650000", "resident_outpatient"]
    assert [outpatient[f"ratio_bp_l{n}"] for n in (1, 2, 3)] == ["6000", "5500", "5000"]
    assert (outpatient["deductible_l1"], outpatient["annual_cap"]) == ("10000", "300000")
    assert (inpatient["retired_bonus_bp"], inpatient["unfiled_cut_bp"], inpatient["selfpay_bp"],
            inpatient["prepayment_months"], inpatient["expected_monthly_payable"],
            inpatient["lab_validity_days"]) == ("500", "1000", "1000", "2", "", "30")
    policy = tmp_path / "policy.yaml"
    policy.write_text('provinces:\n  "310000":\n    rules:\n      resident_inpatient:\n'
                      "        ratio_bp: [9000, 8000, 7000]\n", encoding="utf-8")
    assert huimin("world", "--out", str(tmp_path / "w"), *OPTIONS,
                  "--policy", str(policy)).exit_code == 0
    changed = [r for r in rows(tmp_path / "w", "policies.csv") if r != by[r["province"], r["rule"]]]
    assert [(r["province"], r["rule"], r["ratio_bp_l3"]) for r in changed] == [
        ("310000", "resident_inpatient", "7000")]
