"""The world written out as an integrator needs it to write requests of their own: which
hospitals there are (and their level, which sets the ratios), who is insured where, and how
each province's catalogue classes the national items. A real HIS learns these from its
provincial platform's directories (定点机构, 参保人员, 医保目录); the simulator's are generated
from the seed, so they are written from the same `World` the workers settle by."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from settlement.parameters import (
    RULES,
    lab_validity_days_for,
    parse_parameters,
    policy_changes_for,
    policy_for,
    selfpay_bp_for,
)
from settlement.reference import ACTIVE
from simulators.regions import PROVINCES
from simulators.world import World, clearing_policy, world_tag

#: file name -> its columns, in order (README, Replay and verify).
COLUMNS: dict[str, tuple[str, ...]] = {
    "hospitals.csv": ("fixmedins_code", "name", "admdvs", "province", "level"),
    "persons.csv": ("certno", "psn_no", "insutype", "insuplc_admdvs", "psn_type", "balc",
                    "psn_insu_stas", "filings", "lives_in", "ehr_sharing"),
    "items.csv": ("med_list_codg", "name", "kind", "base_price"),
    "catalogues.csv": ("province", "med_list_codg", "chrgitm_lv", "pric_uplmt_amt",
                       "selfpay_prop_bp"),
    "policies.csv": ("province", "rule", "insutype", "deductible_l1", "deductible_l2",
                     "deductible_l3", "ratio_bp_l1", "ratio_bp_l2", "ratio_bp_l3",
                     "annual_cap", "retired_bonus_bp", "unfiled_cut_bp", "selfpay_bp",
                     "prepayment_months", "expected_monthly_payable", "lab_validity_days",
                     "from_day"),
}


def hospital_rows(world: World) -> Iterator[tuple[Any, ...]]:
    for province, hospitals in sorted(world.hospitals_by_province.items()):
        for h in hospitals:
            yield h.fixmedins_code, h.name, h.admdvs, province, h.level


def person_rows(world: World) -> Iterator[tuple[Any, ...]]:
    """As their 1101 answers them (the balance at the world's start), and where they live if
    not at home: their cross-province visits are there."""
    for certno, e in sorted(world.ref.enrollments.items()):
        filings = ";".join(f"{f.fil_type}:{f.province}:{f.begndate}:{f.enddate}"
                           for f in e.filings)
        yield (certno, e.psn_no, e.insutype, e.insuplc_admdvs, "1102" if e.retired else "1101",
               e.balance, e.insu_stas, filings, world.away_province.get(certno, ""),
               e.ehr_sharing)


def item_rows(world: World) -> Iterator[tuple[Any, ...]]:
    for it in world.items:
        yield it.code, it.name, it.kind, it.base_price


def catalogue_rows(world: World) -> Iterator[tuple[Any, ...]]:
    """Each province's class of each item it lists (an item it does not list is self-paid,
    chrgitm_lv 03, as class C is), and the price ceiling and class-B self-pay share that
    apply to it (none to class C, wholly self-paid)."""
    for province, catalogue in sorted(world.ref.catalogues.items()):
        for code in sorted(catalogue.entries):
            split = catalogue.classify(code, 1, 1)
            yield (province, code, split.chrgitm_lv, "" if split.pric_uplmt_amt is None
                   else split.pric_uplmt_amt, split.selfpay_bp)


def policy_rows(world: World) -> Iterator[tuple[Any, ...]]:
    """The policy each province settles by, DOMAIN.md's defaults with a policy file's
    `defaults` and the province's own values applied: one row per benefit rule (the
    province's other values repeated on each), so that two policies compare by a diff; then
    the rows of each province whose policy changes on a day (`from_day`; "": from the
    start), from that day on."""
    parameters = parse_parameters(world.spec.parameters, PROVINCES)
    clearing = clearing_policy(world.spec)
    for province in sorted(PROVINCES):
        for since, policy in (("", policy_for(parameters, province)),
                              *policy_changes_for(parameters, province)):
            own = (policy.retired_bonus_bp, policy.unfiled_cut_bp,
                   selfpay_bp_for(parameters, province), clearing.months_for(province),
                   clearing.expected_monthly_payable.get(province, ""),
                   lab_validity_days_for(parameters, province), since)
            for name, (insutype, category) in RULES.items():
                rule = policy.rule(insutype, category)
                yield (province, name, insutype, *rule.deductible, *rule.ratio_bp,
                       rule.annual_cap, *own)


ROWS = {"hospitals.csv": hospital_rows, "persons.csv": person_rows, "items.csv": item_rows,
        "catalogues.csv": catalogue_rows, "policies.csv": policy_rows}


def _write_csv(path: Path, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]) -> int:
    n = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(columns)
        for row in rows:
            out.writerow(row)
            n += 1
    return n


def write_world(world: World, folder: Path) -> dict[str, int]:
    """hospitals.csv, persons.csv, items.csv, catalogues.csv, policies.csv and world.json (the
    options and the tag a worker of this world names in its 9001 answers) into `folder`; the
    rows of each file."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = {name: _write_csv(folder / name, COLUMNS[name], ROWS[name](world))
              for name in COLUMNS}
    (folder / "world.json").write_bytes(orjson.dumps(
        {"world": world.spec.to_dict(), "tag": world_tag(world.spec),
         "suspended_persons": sum(e.insu_stas != ACTIVE
                                  for e in world.ref.enrollments.values())},
        option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return counts
