"""`huimin run` end to end, as a user runs it: the CLI starts the embedded broker and the
platform, hospitals carry out the full protocol mix over Kafka (outpatient and inpatient, local
and cross-province, filed/unfiled/emergency, pre-settlements, cancellations, lost answers with
2601 reversals, reversals before their originals, duplicates, out-of-sequence requests) plus
bad requests of every kind, and every answer is checked against the oracle. Health-record
steps are off here (`--no-ehr`, a third of the run's time on a slow machine); the fault, Kafka,
two-worker and records end-to-end tests carry them."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from huimin.logfiles import read_visit_log
from huimin.policy_file import read_policy_file
from huimin.report import print_summary
from messages.transactions import SetlInfo
from simulators.bad_messages import KINDS
from simulators.world import WorldSpec, build_world, world_tag
from tests.conftest import processes_mentioning, run_huimin

pytestmark = pytest.mark.e2e

VISITS, BAD_PER_KIND = 400, 1
#: Policy parameters other than DOMAIN.md's defaults (tests/test_parameters.py shows they
#: change settlements): every answer equal to the oracle's shows every worker settled by them.
POLICY = Path(__file__).parent / "data" / "policy.yaml"
SCENARIO = ["--persons", "1000", "--visits", str(VISITS), "--cross-share", "0.3", "--seed", "11",
            "--rate", "60", "--bad-per-kind", str(BAD_PER_KIND), "--no-ehr",
            "--policy", str(POLICY)]
DEAD_LETTER_KINDS = ("malformed-json", "not-an-object", "oversize", "no-sender")

Run = tuple[Path, subprocess.CompletedProcess[str]]


def run_cli(out: Path) -> subprocess.CompletedProcess[str]:
    return run_huimin(["run", *SCENARIO, "--out", str(out)], timeout=300)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    """The same scenario run twice through the CLI, each with its own embedded broker."""
    return [(out, run_cli(out)) for out in (tmp_path_factory.mktemp(n) for n in ("a", "b"))]


def summary_of(run: Run) -> dict:
    return orjson.loads((run[0] / "summary.json").read_bytes())


def test_every_answer_equals_the_oracle(two_runs):
    _, proc = two_runs[0]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    oracle = summary_of(two_runs[0])["oracle"]
    assert oracle["mismatches"] == []
    assert oracle["answers_compared"] == oracle["answers_equal"] > 4 * VISITS
    assert oracle["settlements_expected"] == oracle["settlements_equal"] > VISITS * 0.8
    assert f"PASS {oracle['settlements_equal']:,} of" in proc.stdout
    # the files it wrote pass `huimin verify` too, which reads them and judges on its own
    out = two_runs[0][0]
    verify = run_huimin(["verify", str(out / "visits.jsonl"), str(out / "results.jsonl"),
                         "--json", str(out / "verdict.json")], timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    verdict = orjson.loads((out / "verdict.json").read_bytes())
    assert verdict["visits"] == VISITS
    assert verdict["answers_compared"] == verdict["answers_equal"] == oracle["answers_compared"]


def test_the_run_settles_by_the_given_policy_and_records_it(two_runs):
    header, visits = read_visit_log(two_runs[0][0] / "visits.jsonl")
    assert len(list(visits)) == VISITS
    assert header.world.parameters == read_policy_file(POLICY)
    assert header.world.parameters["defaults"]["rules"]["employee_outpatient"] == {
        "deductible": [50_000] * 3}
    settlements = [orjson.loads(line)["setlinfo"] for line in
                   (two_runs[0][0] / "results.jsonl").read_bytes().splitlines()]
    # an employee's outpatient deductible is ¥500 a year here, not DOMAIN.md's ¥1,800
    deductibles = [s["act_pay_dedc"] for s in settlements if s is not None and
                   s["insutype"] == "310" and s["med_type"].startswith("1")]
    assert deductibles and max(deductibles) == 50_000


def test_the_national_platform_clears_each_month_as_the_oracle_does(two_runs):
    out, _ = two_runs[0]
    summary = summary_of(two_runs[0])
    assert summary["clearing"] == {"months": 2, "equal_to_oracle": True}
    statements = orjson.loads((out / "clearing.json").read_bytes())
    assert [s["month"] for s in statements] == ["2026-12", "2027-01"]
    for s in statements:
        assert sum(p["net"] for p in s["provinces"]) == 0
        assert any(p["amount"] for p in s["pairs"])


def test_the_national_ledger_balances_and_owes_each_hospital_its_clearing_amounts(two_runs):
    out = two_runs[0][0]
    ledger = orjson.loads((out / "ledger.json").read_bytes())
    assert ledger["balanced"] and ledger["debits"] == ledger["credits"] > 0
    owed: dict[str, int] = {}
    for s in orjson.loads((out / "clearing.json").read_bytes()):
        for h in s["hospitals"]:
            owed[h["fixmedins_code"]] = owed.get(h["fixmedins_code"], 0) + h["amount"]
    hospitals = {a.split(":", 1)[1]: -b for a, b in ledger["balances"].items()
                 if a.startswith("hospital:")}
    assert hospitals == {h: n for h, n in owed.items() if n}


def test_every_hospital_reconciles_balanced_over_kafka(two_runs):
    rec = summary_of(two_runs[0])["reconciliation"]
    assert rec["sent"] > 100
    assert rec["balanced"] == rec["equal_to_oracle"] == rec["sent"], rec["problems"]
    day = summary_of(two_runs[0])["daily_reconciliation"]
    assert day["hospital_days"] > 100 and day["unbalanced"] == []
    assert day["posted"] == day["expected_posted"] == 0  # no answer was lost


def test_each_treatment_province_agency_applies_for_clearing_and_is_accepted(two_runs):
    out = two_runs[0][0]
    statements = orjson.loads((out / "clearing.json").read_bytes())
    receivable = {(s["month"].replace("-", ""), p["province"]): p["receivable"]
                  for s in statements for p in s["provinces"] if p["receivable"]}
    applications = orjson.loads((out / "applications.json").read_bytes())
    assert {(a["clr_ym"], a["clr_optins"]): a["fund_clr_sum"] for a in applications
            if a["fund_clr_sum"]} == receivable
    assert all(a["appy_stas"] == "1" for a in applications)


def test_the_national_platforms_prepayments_follow_the_policy_file(two_runs):
    """3 months of the expected payable: 上海's given (¥10,000), the others' the largest month
    cleared so far; the statements equal the oracle's (the run's PASS), so every worker
    cleared by the file too."""
    targets = {p["province"]: p["prepayment_target"]
               for s in orjson.loads((two_runs[0][0] / "clearing.json").read_bytes())
               for p in s["provinces"]}
    assert targets["310000"] == 3 * 1_000_000
    assert any(t for t in targets.values()) and all(t % 3 == 0 for t in targets.values())
    assert summary_of(two_runs[0])["clearing"]["equal_to_oracle"]
    # offline, `huimin clearing` reads the log's policy as the platform did
    out = two_runs[0][0]
    offline = run_huimin(["clearing", str(out / "visits.jsonl"), str(out / "results.jsonl"),
                          "--json"], timeout=120)
    cleared = orjson.loads(offline.stdout)  # each naming the world it was cleared under
    assert {s.pop("world") for s in cleared} == {
        world_tag(read_visit_log(out / "visits.jsonl")[0].world)}
    assert cleared == orjson.loads((out / "clearing.json").read_bytes())
    doubled = run_huimin(["clearing", str(out / "visits.jsonl"), str(out / "results.jsonl"),
                          "--json", "--prepayment-months", "6"], timeout=120)
    assert {p["province"]: p["prepayment_target"] for s in orjson.loads(doubled.stdout)
            for p in s["provinces"]}["310000"] == 6 * 1_000_000


def test_accounting_closes_sent_equals_answered_plus_dead_lettered(two_runs):
    summary = summary_of(two_runs[0])
    acc = summary["accounting"]
    assert acc["unaccounted"] == 0
    assert acc["sent"] == acc["answered_ok"] + acc["answered_error"] + acc["dead_lettered"]
    assert sum(summary["answers_by_outcome"].values()) == acc["answered_ok"] + \
        acc["answered_error"]
    assert summary["timed_out"] == summary["unexpected_answers"] == 0
    assert summary["read_holes"] == []  # every answer read, none stepped over


def test_bad_requests_get_their_error_code_and_only_unanswerable_ones_are_dead_lettered(two_runs):
    summary = summary_of(two_runs[0])
    bad = summary["bad_requests"]
    assert bad["sent"] == len(KINDS) * BAD_PER_KIND
    assert bad["as_expected"] == bad["sent"], bad["problems"]
    assert bad["unexpected_dead_letters"] == 0
    assert summary["accounting"]["dead_lettered"] == len(DEAD_LETTER_KINDS) * BAD_PER_KIND
    assert summary["dead_letters_by_code"] == {"E1001": 2, "E1002": 1, "E1004": 1}


def test_the_run_folder_lists_each_dead_letter_with_the_bad_request_it_is(two_runs):
    out = two_runs[0][0]
    lines = (out / "dead_letters.jsonl").read_bytes().splitlines()
    letters = [orjson.loads(line) for line in lines]
    assert sorted(d["bad_request"] for d in letters) == sorted(DEAD_LETTER_KINDS * BAD_PER_KIND)
    assert {d["source_topic"] for d in letters} == {"hosp.requests"}
    assert sorted(d["error_code"] for d in letters) == ["E1001", "E1001", "E1002", "E1004"]
    assert all(d["reason"] and d["timestamp_ms"] > 0 for d in letters)
    # oldest first, as `huimin dead-letters` lists them (it was the order they were read in)
    assert letters == sorted(letters, key=lambda d: (d["timestamp_ms"], d["partition"],
                                                     d["offset"]))


def test_the_mix_exercises_the_whole_protocol(two_runs):
    outcomes = summary_of(two_runs[0])["answers_by_outcome"]
    for infno in ("1101", "2201", "2202", "2204", "2205", "2206", "2207", "2208", "2301",
                  "2303", "2304", "2401", "2402", "2601"):
        assert outcomes.get(f"{infno} ok", 0) > 0, infno
    for refusal in ("2207 E4011", "2208 E4009", "2204 E4002", "2204 E4005", "2304 E4010",
                    "1101 E2001", "1101 E2002", "2204 E4006", "2204 E4007", "9999 E1003"):
        assert outcomes.get(refusal, 0) > 0, refusal
    routes = summary_of(two_runs[0])["visits_settled_by_route"]
    assert routes["local"] > 0 and routes["cross"] > 0


def test_the_summary_shows_money_latency_by_route_and_hops(two_runs):
    _, proc = two_runs[0]
    summary = summary_of(two_runs[0])
    money = summary["money_fen"]
    assert money["medfee_sumamt"] >= money["hifp_pay"] + money["acct_pay"] > 0
    # the policy file it was settled by, named (the world's tag says only "a policy file's")
    assert summary["policy_file"] == str(POLICY)
    assert f"; the policy from {POLICY}" in " ".join(proc.stdout.split())
    # the same money by the province whose fund paid it (the insured's), summing to it
    by_province = summary["money_fen_by_insured_province"]
    assert len(by_province) > 1 and all(p.endswith("0000") for p in by_province)
    for k, total in money.items():
        assert sum(paid[k] for paid in by_province.values()) == total, k
    assert sum(p["settlements"] for p in by_province.values()) == sum(
        summary["visits_settled_by_route"].values())
    # and by the month of settlement: the default days cross New Year
    by_month = summary["money_fen_by_month"]
    assert list(by_month)[:2] == ["2026-12", "2027-01"]
    for k, total in money.items():
        assert sum(paid[k] for paid in by_month.values()) == total, k
    assert "Paid, by the month of settlement" in proc.stdout
    for route in ("local", "cross"):
        lat = summary["settlement_latency_ms"][route]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert any(h.startswith("cross nat.in->ins.in") for h in summary["hop_latency_ms_p50"])
    # timed from the request's Kafka timestamp: the wait in hosp.requests is a hop of its own
    assert list(summary["hop_latency_ms_p50"])[:2] == [
        "cross hosp.send->trt.queued", "cross trt.queued->trt.in"]
    # the simulated days the visits spanned (the accumulators' years follow them)
    assert f"Visits {VISITS} over 60 simulated days from 2026-12-01 " in proc.stdout
    for heading in ("Answers by transaction and outcome", "Settlement round trip", "Paid",
                    "Paid, by the insured person's province", "Accounting", "Bad requests"):
        assert heading in proc.stdout
    # hospitals late against the schedule are said, as the latencies then include the wait
    late = summary["hospitals_late_ms"]
    # p99 a bound under the latest (rounded to 0.1 ms), and no later than the ~7-s run
    assert late["p99"] <= round(late["max"], 1) < 60_000
    assert ("fell behind the schedule" in proc.stdout) == (late["p99"] >= 1_000)
    console = Console(record=True, width=200)
    print_summary({**summary, "hospitals_late_ms": {"p99": 2_500, "max": 3_400}}, Path("o"),
                  console)
    assert "The hospitals fell behind the schedule (up to 3.4 s late)" in console.export_text()
    # a province's fund share in whole numbers, half up: 1 fen of 2,000 is 0.1 %
    one = {"settlements": 1, "medfee_sumamt": 2_000, "hifp_pay": 1, "acct_pay": 0,
           "psn_cash_pay": 1_999}
    print_summary({**summary, "money_fen_by_insured_province": {"110000": one}}, Path("o"),
                  console)
    row = next(line for line in console.export_text().splitlines() if "110000" in line)
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "110000 北京", "1", "20.00", "0.01", "0.00", "19.99", "0.1 %"], row
    # a cancellation whose answer was lost (a hand-written `2208~`): its visit reads
    # `settled`, so "Paid" is as the hospitals saw it, and what it gave back is said beside
    undone = {**summary["daily_reconciliation"], "undoings_posted": 1,
              "undone_money_fen": {"medfee_sumamt": 5_000, "hifp_pay": 3_000, "acct_pay": 0}}
    wide = Console(record=True, width=400)
    print_summary({**summary, "daily_reconciliation": undone}, Path("o"), wide)
    said = " ".join(wide.export_text().split())
    assert " as the hospitals saw the answers" in said
    assert "less ¥50.00 = fund ¥30.00 + personal account ¥0.00 + cash ¥20.00 given back by " \
           "the cancellation posted from 3202" in said


def test_the_same_seed_gives_byte_identical_settlement_results(two_runs):
    (out1, p1), (out2, p2) = two_runs
    assert p1.returncode == p2.returncode == 0
    # and `huimin compare` finds nothing between them
    same = orjson.loads(run_huimin(["compare", str(out1), str(out2), "--json"], timeout=60).stdout)
    assert same["same_visits"] and same["paid_fen"]["hifp_pay"]["a"] > 0
    assert {row["b_less_a"] for row in same["paid_fen"].values()} == {0}
    first = (out1 / "results.jsonl").read_bytes()
    assert first == (out2 / "results.jsonl").read_bytes()
    assert first.count(b"\n") == VISITS
    for line in first.splitlines():
        record = orjson.loads(line)
        if record["setlinfo"] is not None:
            SetlInfo.model_validate(record["setlinfo"])


def test_a_run_leaves_no_process_or_port_behind(two_runs):
    for run in two_runs:
        host, port = summary_of(run)["bootstrap"].rsplit(":", 1)
        with socket.socket() as s:
            s.settimeout(0.5)
            assert s.connect_ex((host, int(port))) != 0, "the broker is still listening"
        assert processes_mentioning(str(run[0])) == []


def test_no_personal_data_in_logs(two_runs):
    world = build_world(WorldSpec(seed=11, persons=1000))
    for out, proc in two_runs:
        texts = [proc.stdout, proc.stderr] + [p.read_text(errors="replace")
                                              for p in (*out.glob("*.log"),
                                                        out / "dead_letters.jsonl")]
        blob = "\n".join(texts)
        assert [c for c in world.ref.enrollments if c in blob] == []

