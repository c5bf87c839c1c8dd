"""`huimin clearing` prints the national clearing statement of a run's answers; the expected
answers that `huimin generate` writes have the same shape as results, so they serve here."""

from __future__ import annotations

import subprocess

import orjson

from tests.conftest import run_huimin


def test_clearing_statements_net_to_zero_and_cancellations_cross_into_the_next_month(tmp_path):
    def huimin(*args: str) -> subprocess.CompletedProcess[str]:
        return run_huimin(list(args), timeout=120, cwd=tmp_path)

    gen = huimin("generate", "--persons", "800", "--visits", "500", "--seed", "3",
                 "--cross-share", "0.4", "-o", "v.jsonl")
    assert gen.returncode == 0, gen.stdout + gen.stderr
    out = huimin("clearing", "v.jsonl", "v.expected.jsonl", "--json")
    assert out.returncode == 0, out.stdout
    statements = orjson.loads(out.stdout)
    assert [s["month"] for s in statements] == ["2026-12", "2027-01"]
    for s in statements:
        assert sum(p["net"] for p in s["provinces"]) == 0
        assert sum(p["amount"] for p in s["pairs"]) == sum(p["payable"] for p in s["provinces"])
        assert all(p["payer"] != p["payee"] for p in s["pairs"])
    table = huimin("clearing", "v.jsonl", "v.expected.jsonl", "--month", "2026-12")
    assert table.returncode == 0
    assert "Clearing statement 2026-12" in table.stdout and "Σ net = 0.00" in table.stdout
    missing = huimin("clearing", "v.jsonl", "v.expected.jsonl", "--month", "2030-01")
    assert missing.returncode == 1 and "2026-12, 2027-01" in missing.stdout
