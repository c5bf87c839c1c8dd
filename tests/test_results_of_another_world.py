"""Results and expected answers name the world they were settled in (its seed, persons and
policy), so that `verify` and `clearing` refuse those of another policy than the log's: a
policy analyst's comparison verified a log against another policy's results and expected
answers (PASS), and cleared one policy's results under the other's log (exit 0, the wrong
statement, no word of it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from huimin.logfiles import LogFormatError, of_world
from tests.conftest import run_huimin

SMALL = ["--persons", "200", "--visits", "30", "--seed", "7"]
#: a residents' outpatient deductible of ¥50 everywhere, where DOMAIN.md has ¥100
POLICY = """defaults:
  rules:
    resident_outpatient:
      deductible: 5000
"""


def huimin(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_huimin(list(args), timeout=120, cwd=tmp_path)


def as_results(expected: Path, results: Path) -> Path:
    """Expected answers in the shape of results (what a run that matched them wrote)."""
    records = [orjson.loads(line) for line in expected.read_bytes().splitlines()]
    results.write_bytes(b"".join(orjson.dumps({k: v for k, v in r.items()
                                               if k != "visit_digest"}) + b"\n"
                                 for r in records))
    return results


def test_verify_and_clearing_refuse_answers_settled_under_another_policy(tmp_path: Path):
    (tmp_path / "policy.yaml").write_text(POLICY)
    assert huimin(tmp_path, "generate", "-o", "a.jsonl", *SMALL).returncode == 0
    made = huimin(tmp_path, "generate", "-o", "b.jsonl", *SMALL, "--policy", "policy.yaml")
    assert made.returncode == 0, made.stderr
    ours = as_results(tmp_path / "a.expected.jsonl", tmp_path / "a.results.jsonl")
    theirs = as_results(tmp_path / "b.expected.jsonl", tmp_path / "b.results.jsonl")
    first = orjson.loads(ours.read_bytes().splitlines()[0])
    assert first["world"].startswith("seed 7, 200 persons, DOMAIN.md's policy (world ")

    judged = huimin(tmp_path, "verify", "a.jsonl", str(ours))
    assert judged.returncode == 0 and "PASS" in judged.stdout, judged.stdout + judged.stderr
    policy_world = orjson.loads(theirs.read_bytes().splitlines()[0])["world"]
    cleared = huimin(tmp_path, "clearing", "b.jsonl", str(theirs))  # saying under which
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.startswith(f"Cleared in the world of {policy_world}\n"), cleared.stdout
    cleared = huimin(tmp_path, "clearing", "b.jsonl", str(theirs), "--json")
    assert {s["world"] for s in orjson.loads(cleared.stdout)} == {policy_world}
    cleared = huimin(tmp_path, "clearing", "b.jsonl", str(theirs), "--prepayment-months", "6")
    assert cleared.stdout.startswith(  # not the policy's prepayment: said so
        f"Cleared in the world of {policy_world}; prepayment 6 months for every province "
        "(--prepayment-months)\n"), cleared.stdout
    for refused in (huimin(tmp_path, "verify", "a.jsonl", str(theirs)),
                    huimin(tmp_path, "verify", "a.jsonl", str(ours),
                           "--expected", "b.expected.jsonl"),
                    huimin(tmp_path, "clearing", "a.jsonl", str(theirs))):
        said = " ".join((refused.stdout + refused.stderr).split())
        assert refused.returncode == 2, said
        assert "record 1 was settled in another world (seed 7, 200 persons, a policy " \
               "file's (world" in said, said
        assert "than the visit log's (seed 7, 200 persons, DOMAIN.md's policy" in said, said
        assert "Traceback" not in said


def test_a_world_is_known_by_its_digest_not_by_how_it_is_said(tmp_path: Path):
    """A later huimin may word the tag otherwise; the records of one world still go with its
    log (a review of this change)."""
    ours = "seed 7, 200 persons, DOMAIN.md's policy (world 0123456789ab)"
    records = [{"visit_no": 1, "world": "seed 7 · 200 persons · DOMAIN.md (world 0123456789ab)"}]
    assert list(of_world(records, tmp_path / "r.jsonl", ours)) == records
    other = [{"visit_no": 1, "world": "seed 7, 200 persons, DOMAIN.md's policy (world "
                                      "ba9876543210)"}]
    with pytest.raises(LogFormatError, match="record 1 was settled in another world"):
        list(of_world(other, tmp_path / "r.jsonl", ours))
