"""`huimin clearing` prints the national clearing statement of a run's answers; the expected
answers that `huimin generate` writes have the same shape as results, so they serve here."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from huimin.report import print_statement
from settlement.clearing import ClearingStatement
from settlement.money import yuan
from settlement.retention import msgid_time
from tests.conftest import run_huimin


def province(admdvs: str) -> str:
    return admdvs[:2] + "0000"


Flows = dict[tuple[str, str, str], list[tuple[str, str, int]]]


def cross_province_payments(expected_log: Path) -> tuple[Flows, list[tuple[dict[str, Any], str]]]:
    """Read straight from the answers: the fund payments per (month, payer, payee), as
    (setl_id, event, fen) — each settlement in its month, each cancellation or reversal
    (negative) in its own — and the cross-province settlements cancelled in a later month than
    they were settled, with the time of their cancellation."""
    settled: dict[str, dict[str, Any]] = {}
    undone: list[tuple[str, str, str]] = []  # (setl_id, event, time)
    for line in expected_log.read_bytes().splitlines():
        for msgid, answers in orjson.loads(line)["answers"].items():
            out: dict[str, Any] = next((a["output"] for a in answers if a["infcode"] == 0), {})
            setl = out.get("setlinfo") or {}
            if "init_setl_id" in setl:  # 2208/2305
                undone.append((setl["init_setl_id"], "cancel", setl["setl_time"]))
            elif setl.get("setl_id"):  # 2207/2304
                settled[setl["setl_id"]] = setl
            elif out.get("result") == "undone" and out.get("reversed_setl_id"):  # 2601
                undone.append((out["reversed_setl_id"], "reverse", msgid_time(msgid)))
    flows: Flows = defaultdict(list)
    later: list[tuple[dict[str, Any], str]] = []
    for s in settled.values():
        payer, payee = province(s["insuplc_admdvs"]), province(s["mdtrtarea_admvs"])
        if payer != payee:
            flows[s["setl_time"][:7], payer, payee].append((s["setl_id"], "settle",
                                                            s["hifp_pay"]))
    for setl_id, event, time in undone:
        s = settled[setl_id]
        payer, payee = province(s["insuplc_admdvs"]), province(s["mdtrtarea_admvs"])
        if payer != payee:
            flows[time[:7], payer, payee].append((setl_id, event, -s["hifp_pay"]))
            if event == "cancel" and time[:7] > s["setl_time"][:7] and s["hifp_pay"] > 0:
                later.append((s, time))
    return flows, later


def test_clearing_statements_net_to_zero_and_cancellations_cross_into_the_next_month(tmp_path):
    def huimin(*args: str) -> subprocess.CompletedProcess[str]:
        return run_huimin(list(args), timeout=120, cwd=tmp_path)

    # 500 visits over December (31 days): the last stays end, and one cross-province
    # settlement of 2026-12-31 is cancelled (2305) on 2027-01-01, in the next month
    gen = huimin("generate", "--persons", "800", "--visits", "500", "--seed", "46",
                 "--cross-share", "0.6", "--days", "31", "-o", "v.jsonl")
    assert gen.returncode == 0, gen.stdout + gen.stderr
    out = huimin("clearing", "v.jsonl", "v.expected.jsonl", "--json")
    assert out.returncode == 0, out.stdout
    # taken, and said: on stderr, so that --json stays JSON (a review: `verify` refuses
    # them as results, and `clearing` took them without a word)
    assert "v.expected.jsonl holds the oracle's expected answers" in out.stderr
    statements = orjson.loads(out.stdout)
    assert [s["month"] for s in statements] == ["2026-12", "2027-01"]
    for s in statements:
        assert sum(p["net"] for p in s["provinces"]) == 0
        assert sum(p["amount"] for p in s["pairs"]) == sum(p["payable"] for p in s["provinces"])
        assert all(p["payer"] != p["payee"] for p in s["pairs"])
    pairs = {(s["month"], p["payer"], p["payee"]): p["amount"]
             for s in statements for p in s["pairs"] if p["amount"]}
    flows, later = cross_province_payments(tmp_path / "v.expected.jsonl")
    # every pair of every month is the sum of its fund payments, net of what was undone then
    assert pairs == {k: n for k, v in flows.items() if (n := sum(f for *_, f in v))}
    assert later, "the data must hold a cross-province settlement cancelled in a later month"
    for settlement, cancelled_at in later:
        payer, payee = province(settlement["insuplc_admdvs"]), \
            province(settlement["mdtrtarea_admvs"])
        settled_in, month = settlement["setl_time"][:7], cancelled_at[:7]
        assert (settled_in, month) == ("2026-12", "2027-01")
        setl_id, fen = settlement["setl_id"], settlement["hifp_pay"]
        # paid in December's pair, taken back (negative) in January's
        assert (setl_id, "settle", fen) in flows[settled_in, payer, payee]
        assert (setl_id, "cancel", -fen) in flows[month, payer, payee]
        assert pairs.get((month, payer, payee), 0) == sum(
            f for *_, f in flows[month, payer, payee])
    table = huimin("clearing", "v.jsonl", "v.expected.jsonl", "--month", "2026-12")
    assert table.returncode == 0
    assert "Clearing statement 2026-12" in table.stdout and "Σ net = 0.00" in table.stdout
    # each province's prepayment target beside its prepayment, as `--json` has it
    assert "prepayment target" in table.stdout
    for p in statements[0]["provinces"]:
        row = next(line for line in table.stdout.splitlines() if line.startswith(
            f"│ {p['province']} ") and line.count("│") == 9)  # not a pair's row
        cells = [c.strip() for c in row.split("│")[2:-1]]
        assert cells[3:5] == [yuan(p["prepayment_target"]), yuan(p["prepayment_before"])], row
    missing = huimin("clearing", "v.jsonl", "v.expected.jsonl", "--month", "2030-01")
    assert missing.returncode == 2 and "2026-12, 2027-01" in missing.stderr  # an Error line
    assert "have no result" not in table.stderr  # the whole log's results
    # a replay stopped early: a statement of what its results show, said to be only that
    lines = (tmp_path / "v.expected.jsonl").read_bytes().splitlines(True)
    stopped = [orjson.loads(line) for line in lines[:-2]]  # the last two visits not reached
    stopped[-1]["under_way"] = True
    (tmp_path / "stopped.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in stopped))
    partial = huimin("clearing", "v.jsonl", "stopped.jsonl", "--json")
    assert partial.returncode == 0 and orjson.loads(partial.stdout), partial.stderr
    assert "2 have no result and 1 was under way when the replay stopped" in " ".join(
        partial.stderr.split())


def test_a_statements_footer_counts_the_hospitals_owed_apart_from_those_owing_back():
    """It counted every hospital listed, those netted to nothing among them, and summed a
    hospital owing its agency back (an earlier month's settlement undone) as owed less."""
    statement = ClearingStatement("2027-02", {}, {}, {"H1": 484_941, "H2": 0, "H3": -31_422})
    console = Console(record=True, width=300)
    print_statement(statement, console)
    assert "Σ net = 0.00; 1 hospital owed ¥4,849.41 by their agencies, 1 owing ¥314.22 back " \
           "(settlements of earlier months undone): ¥4,535.19 net" in console.export_text()
    print_statement(replace(statement, hospitals={"H1": 100, "H2": 0}), console)
    assert "Σ net = 0.00; 1 hospital owed ¥1.00 by their agencies (`--json` lists each)" in \
        console.export_text()
