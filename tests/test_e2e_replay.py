"""Integration testers' loop, through the CLI and a real broker: `huimin generate` writes a
visit log and the oracle's answers, `huimin replay` drives it through the platform (ours, or
one already running on some cluster), `huimin verify` gives a verdict a CI can read."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import orjson
import pytest

from huimin.logfiles import read_visit_log
from simulators.visits import GENERATOR_VERSION
from simulators.world import WorldSpec, world_tag
from streams.broker import BOOTSTRAP_ENV, EmbeddedBroker
from streams.security import SECRET_ENV
from tests.conftest import FHIR_DATA, interrupt_huimin, run_huimin

pytestmark = pytest.mark.e2e

GENERATE = ["--persons", "600", "--visits", "150", "--seed", "7", "--cross-share", "0.3"]


def huimin(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_huimin(list(args), timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("replay")
    # some settlements' answers lost by their HIS: posted from 3202 by the day's reconciling
    assert huimin("generate", *GENERATE, "--faults", "lose-answer=0.1", "-o", "visits.jsonl",
                  cwd=d).returncode == 0
    proc = huimin("replay", "visits.jsonl", "--rate", "50", "--results", "results.jsonl",
                  cwd=d)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (d / "replay.out").write_text(proc.stdout)
    return d


def test_generate_is_byte_identical_for_the_same_seed(tmp_path):
    for name in ("a.jsonl", "b.jsonl"):
        assert huimin("generate", *GENERATE, "-o", name, cwd=tmp_path).returncode == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.expected.jsonl").read_bytes() == \
        (tmp_path / "b.expected.jsonl").read_bytes()
    lines = (tmp_path / "a.jsonl").read_bytes().splitlines()
    assert len(lines) == 151  # header + 150 visits
    assert orjson.loads(lines[0])["world"]["seed"] == 7


def test_replay_then_verify_passes_with_a_junit_report(replayed):
    said = (replayed / "replay.out").read_text().rstrip().splitlines()[-1]
    assert said.startswith("PASS every request answered or dead-lettered"), said
    proc = huimin("verify", "visits.jsonl", "results.jsonl", "--junit", "report.xml",
                  "--json", "verdict.json", cwd=replayed)
    assert proc.returncode == 0, proc.stdout
    suite = ET.parse(replayed / "report.xml").getroot()
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 6
    verdict = orjson.loads((replayed / "verdict.json").read_bytes())
    assert verdict["ok"] and verdict["visits"] == 150
    assert verdict["answers_compared"] == verdict["answers_equal"] > 600
    # written as the visits ended, yet in the log's order, as a run writes them (two replays of
    # a log give the same file); a round trip for each request
    results = [orjson.loads(line)
               for line in (replayed / "results.jsonl").read_bytes().splitlines()]
    _, visits = read_visit_log(replayed / "visits.jsonl")
    assert [r["visit_no"] for r in results] == [v.visit_no for v in visits]
    latencies = (replayed / "results.latency.jsonl").read_bytes().splitlines()
    assert len(latencies) == sum(len(r["answers"]) for r in results)
    # the period's close, as a run writes it: the platform's clearing statements equal to the
    # offline clearing of the same log and answers, its ledger balanced, every 3203 accepted
    statements = orjson.loads((replayed / "results.clearing.json").read_bytes())
    offline = huimin("clearing", "visits.jsonl", "results.jsonl", "--json", cwd=replayed)
    cleared = orjson.loads(offline.stdout)  # each naming the world it was cleared under
    world = world_tag(read_visit_log(replayed / "visits.jsonl")[0].world)
    assert {s.pop("world") for s in cleared} == {world}, offline.stderr
    assert statements and statements == cleared, offline.stderr
    assert "expected answers" not in offline.stderr  # a replay's, not the oracle's
    ledger = orjson.loads((replayed / "results.ledger.json").read_bytes())
    assert ledger["debits"] == ledger["credits"] > 0, ledger
    applications = orjson.loads((replayed / "results.applications.json").read_bytes())
    assert applications and {a["appy_stas"] for a in applications} == {"1"}
    # and the hospitals' days, as a run says them: every one balanced, the settlements whose
    # answers they lost (the log's `~`, unless reversed that day) posted from 3202
    day = re.search(r"Daily reconciliation ([\d,]+) hospital-days: .* detailed (\d+) "
                    r"settlements? whose answers were lost \(expected (\d+)\), .* (\d+) left 不平",
                    " ".join((replayed / "replay.out").read_text().split()))
    assert day, (replayed / "replay.out").read_text()
    assert int(day[1].replace(",", "")) > 0 and int(day[3]) > 0, day[0]
    assert day[2] == day[3] and day[4] == "0", day[0]


def test_a_replays_summary_says_its_figures_and_compares_with_the_same_run(replayed):
    """A replay's <results>.summary.json, for a script: its accounting and verdict, and the
    money a `huimin run`'s summary has, so `huimin compare` sets it beside a run of the same
    visits: the same money, since the platform is the same."""
    summary = orjson.loads((replayed / "results.summary.json").read_bytes())
    assert summary["ok"] and summary["visits"] == 150 and summary["timed_out"] == 0
    acc = summary["accounting"]
    assert acc["sent"] == acc["answered_ok"] + acc["answered_error"] + acc["dead_lettered"] > 600
    assert acc["unaccounted"] == 0
    assert summary["world"] == world_tag(read_visit_log(replayed / "visits.jsonl")[0].world)
    assert summary["settlement_round_trip_ms"]["count"] > 0 and summary["period_closed"]
    assert summary["platform"] == {  # the one it started for the replay
        "broker": "cluster" if os.environ.get(BOOTSTRAP_ENV) else "tansu", "workers": 1,
        "partitions": 8, "store": "memory"}
    assert summary["money_files"] == [f"results.{name}.json"
                                      for name in ("clearing", "ledger", "applications")]
    # its money is the money of its results, visit by visit
    settled = [r["setlinfo"] for r in (orjson.loads(line) for line in
               (replayed / "results.jsonl").read_bytes().splitlines()) if r["setlinfo"]]
    assert sum(summary["visits_settled_by_route"].values()) == len(settled) > 0
    assert summary["money_fen"]["hifp_pay"] == sum(s["hifp_pay"] for s in settled)
    assert sum(m["settlements"] for m in summary["money_fen_by_month"].values()) == len(settled)
    assert summary["scenario"]["generator"] == GENERATOR_VERSION  # its log's header's
    # a run of the same scenario (its log's options) settles the same visits alike
    run = huimin("run", *GENERATE, "--faults", "lose-answer=0.1", "--bad-per-kind", "0",
                 "--rate", "50", "--out", "run", cwd=replayed)
    assert run.returncode == 0, run.stdout + run.stderr
    compared = huimin("compare", "run", "results.summary.json", "--json", cwd=replayed)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    both = orjson.loads(compared.stdout)
    assert both["same_visits"], both["differences_beyond_policy"]
    assert {k: v["b_less_a"] for k, v in both["paid_fen"].items()} == dict.fromkeys(
        ("medfee_sumamt", "hifp_pay", "acct_pay", "psn_cash_pay"), 0)


def test_verify_rejects_a_corrupted_result_with_a_readable_diff(replayed):
    records = [orjson.loads(line) for line in
               (replayed / "results.jsonl").read_bytes().splitlines()]
    victim = next(r for r in records if r["setlinfo"] and r["setlinfo"]["acct_pay"] > 0)
    for answers in victim["answers"].values():
        for a in answers:
            if a["infcode"] == 0 and a["output"].get("setlinfo", {}).get("setl_id") == \
                    victim["setlinfo"]["setl_id"]:
                a["output"]["setlinfo"]["acct_pay"] += 1
    (replayed / "corrupt.jsonl").write_bytes(b"".join(
        orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in records))
    proc = huimin("verify", "visits.jsonl", "corrupt.jsonl", "--junit", "bad.xml", cwd=replayed)
    assert proc.returncode == 1
    assert f"visit {victim['visit_no']} " in proc.stdout
    assert "setlinfo.acct_pay" in proc.stdout
    failures = ET.parse(replayed / "bad.xml").getroot().findall(".//failure")
    assert any("setlinfo.acct_pay" in (f.get("message") or "") for f in failures)


def test_verify_rejects_a_truncated_result_file(replayed):
    lines = (replayed / "results.jsonl").read_bytes().splitlines()
    (replayed / "short.jsonl").write_bytes(b"\n".join(lines[:-3]) + b"\n")
    proc = huimin("verify", "visits.jsonl", "short.jsonl", cwd=replayed)
    assert proc.returncode == 1
    assert "no result" in proc.stdout


def test_replay_against_a_platform_already_running_on_a_cluster(tmp_path):
    """--bootstrap: the platform under test runs elsewhere; replay only plays the hospitals."""
    from huimin.local_platform import platform

    assert huimin("generate", *GENERATE, "--visits", "60", "-o", "v.jsonl",
                  cwd=tmp_path).returncode == 0
    other = ["--persons", "600", "--seed", "8", "--visits", "60", "--cross-share", "0.3"]
    assert huimin("generate", *other, "-o", "other.jsonl", cwd=tmp_path).returncode == 0
    with EmbeddedBroker() as b:
        # no platform set up there: said at once (the hospitals waited 30 s for its topics)
        started = time.monotonic()
        bare = huimin("replay", "v.jsonl", "--speed", "2000000", "--bootstrap", b.bootstrap,
                      "--results", "bare.jsonl", cwd=tmp_path)
        assert bare.returncode == 2 and time.monotonic() - started < 20, bare.stderr
        assert "has no topic hosp.requests or hosp.responses: no huimin platform" in \
            " ".join(bare.stderr.split())
        # and so does publish, whatever its --timeout (it waited 31 s: a scripting review)
        started = time.monotonic()
        one = sorted(FHIR_DATA.rglob("*.json"))[0]
        published = huimin("publish", str(one), "--certno", "110101199003071233",
                           "--bootstrap", b.bootstrap, "--timeout", "2", cwd=tmp_path)
        assert published.returncode == 2 and time.monotonic() - started < 20, \
            published.stderr
        assert "no huimin platform was set up on it" in " ".join(published.stderr.split())
    with EmbeddedBroker() as b, platform(b.bootstrap, WorldSpec(seed=7, persons=600), 8,
                                         tmp_path / "platform"):
        # visits of another world (seed 8) are refused at the sign-in, before any is sent
        elsewhere = huimin("replay", "other.jsonl", "--speed", "2000000", "--bootstrap",
                           b.bootstrap, "--results", "other-results.jsonl", cwd=tmp_path)
        # hospitals signing with another secret than the workers' are refused at the sign-in
        # too (they sent every visit, each refused E6002, and exited 0)
        forged = run_huimin(["replay", "v.jsonl", "--speed", "2000000", "--bootstrap",
                             b.bootstrap, "--results", "forged.jsonl"], timeout=300,
                            cwd=tmp_path, env={**os.environ, SECRET_ENV: "not the workers'"})
        proc = huimin("replay", "v.jsonl", "--speed", "2000000", "--bootstrap", b.bootstrap,
                      "--results", "r.jsonl", cwd=tmp_path)
        # again: answered from what the platform kept, and said so (verify cannot tell)
        again = huimin("replay", "v.jsonl", "--speed", "2000000", "--bootstrap", b.bootstrap,
                       "--results", "again.jsonl", cwd=tmp_path)
    assert again.returncode == 0 and "settling nothing anew" in " ".join(again.stdout.split())
    assert forged.returncode == 2, forged.stdout + forged.stderr
    assert ("refused the signatures of the hospitals' sign-in (E6002"
            in " ".join(forged.stderr.split()))
    assert not (tmp_path / "forged.jsonl").exists()
    assert elsewhere.returncode == 2, elsewhere.stdout + elsewhere.stderr
    assert "Traceback" not in elsewhere.stderr
    said = " ".join(elsewhere.stderr.split())
    assert ("settles by another world (seed 7, 600 persons, DOMAIN.md's policy (world "
            in said and "than these visits were made in (seed 8, 600 persons" in said)
    assert "no visit was sent" in said and not (tmp_path / "other-results.jsonl").exists()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (tmp_path / "r.platform" / "worker-0.log").exists()  # it started no platform
    # someone else's platform: only the 3203 answers, not its statements or ledger
    assert (tmp_path / "r.applications.json").exists()
    assert not (tmp_path / "r.clearing.json").exists()
    assert huimin("verify", "v.jsonl", "r.jsonl", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(("sig", "code", "stopper"), [(signal.SIGINT, 130, "Ctrl-C"),
                                                     (signal.SIGTERM, 143, "SIGTERM")])
def test_ctrl_c_during_a_replay_keeps_the_answers_received_and_accounts_for_every_request(
        tmp_path, sig: int, code: int, stopper: str):
    """A tester stops a long replay (Ctrl-C twice, as people press it; or a CI job's time-out,
    SIGTERM): the answers so far are written, each request sent is answered, dead-lettered or
    in flight, and the platform it started is stopped."""
    assert huimin("generate", *GENERATE, "--bad-per-kind", "1", "-o", "v.jsonl",
                  cwd=tmp_path).returncode == 0
    proc, left = interrupt_huimin(["replay", "v.jsonl", "--rate", "8", "--results", "r.jsonl"],
                            marker=" 150 visits", after_s=6, presses=2, timeout=120,
                            sig=sig, cwd=tmp_path)
    out = proc.stdout  # ~50 visits had arrived at the Ctrl-C, pressed twice as people do
    said = " ".join(out.split())
    assert proc.returncode == code, out
    assert "Traceback" not in out and f"Stopped by {stopper}" in said, out
    counts = re.search(
        r"Sent ([\d,]+) = answered OK ([\d,]+) \+ answered with an error ([\d,]+) \+ "
        r"dead-lettered ([\d,]+) \+ unanswered when stopped ([\d,]+)", said)
    assert counts is not None, out
    sent, ok, error, dead, in_flight = (int(n.replace(",", "")) for n in counts.groups())
    assert sent == ok + error + dead + in_flight and ok > 100
    records = [orjson.loads(x) for x in (tmp_path / "r.jsonl").read_bytes().splitlines()]
    # the counts are of what was written (the line's sum holds by its definition); besides
    # the visits' answers they count the bad requests' and the daily reconciliations'
    firsts = [a[0] for r in records for a in r["answers"].values() if a]
    assert ok >= sum(a["infcode"] == 0 for a in firsts) > 100
    assert ok + error >= len(firsts)
    replayed = sorted(r["visit_no"] for r in records)
    assert replayed == list(range(len(replayed))) and 20 < len(replayed) < 150
    assert f"{len(replayed):,} of 150 visits had arrived" in said
    assert not left  # its broker and worker are gone

    proc = huimin("verify", "v.jsonl", "r.jsonl", "--json", "verdict.json", cwd=tmp_path)
    assert proc.returncode == 1
    checks = orjson.loads((tmp_path / "verdict.json").read_bytes())["checks"]
    assert checks["every visit has a result"]["failures"] == \
        [f"visit {n}: no result" for n in range(len(replayed), 150)]
    # what came back is right: the only differences are answers still awaited
    assert all(re.fullmatch(r"visit \d+ \d{4} \w+: 0 answers, expected 1", f)
               for f in checks["answers equal the oracle"]["failures"])
    assert all(c["passed"] for name, c in checks.items()
               if name not in ("every visit has a result", "answers equal the oracle"))
    # judged on what it replayed, it passes: the visits not replayed and the answers not yet
    # received are left out, and said so
    proc = huimin("verify", "v.jsonl", "r.jsonl", "--replayed-only", "--json", "part.json",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    part = orjson.loads((tmp_path / "part.json").read_bytes())
    under_way = sum(1 for r in records if r.get("under_way"))
    assert part["not_replayed"] == 150 - len(replayed) and part["under_way"] == under_way
    assert part["visits"] == len(replayed) and part["answers_equal"] > 100
    assert f"{150 - len(replayed):,} visits with no result" in " ".join(proc.stdout.split())


def test_ctrl_c_after_the_visits_keeps_the_whole_set_of_answers(tmp_path):
    """The answers are written as the visits end: a Ctrl-C while the clearing is read, the
    period reconciled or the platform stopped loses none of them."""
    assert huimin("generate", *GENERATE, "--visits", "60", "-o", "v.jsonl",
                  cwd=tmp_path).returncode == 0
    proc, left = interrupt_huimin(["replay", "v.jsonl", "--rate", "50", "--results", "r.jsonl"],
                            marker="reading the national clearing", after_s=0.1, timeout=120,
                            cwd=tmp_path)
    assert proc.returncode == 130, proc.stdout
    assert "Traceback" not in proc.stdout and "Stopped by Ctrl-C" in proc.stdout
    assert len((tmp_path / "r.jsonl").read_bytes().splitlines()) == 60
    assert not left
    assert huimin("verify", "v.jsonl", "r.jsonl", cwd=tmp_path).returncode == 0


def test_sigterm_while_the_platform_stops_keeps_the_closed_periods_money_files(tmp_path):
    """The clearing statements, ledger and 3203 answers had come back, and were lost with the
    platform's stop cut short: no files, `period_closed` false, and an earlier replay's files
    at the same --results left beside the new answers (a review)."""
    assert huimin("generate", *GENERATE, "--visits", "40", "-o", "v.jsonl",
                  cwd=tmp_path).returncode == 0
    earlier = tmp_path / "r.clearing.json"
    earlier.write_text("an earlier replay's")
    proc, left = interrupt_huimin(["replay", "v.jsonl", "--rate", "50", "--results", "r.jsonl"],
                                  marker=" stopping", after_s=0.1, timeout=120,
                                  sig=signal.SIGTERM, cwd=tmp_path)
    said = " ".join(proc.stdout.split())
    assert proc.returncode == 143, proc.stdout
    assert "Stopped by SIGTERM while the platform stopped" in said, proc.stdout
    assert "The period closed: r.clearing.json, r.ledger.json, r.applications.json" in said
    summary = orjson.loads((tmp_path / "r.summary.json").read_bytes())
    assert summary["period_closed"] and summary["interrupted"] and summary["ok"], summary
    assert orjson.loads(earlier.read_bytes())  # this replay's statements, not the text above
    assert not left


def test_a_broken_visit_log_is_refused_with_a_clear_message(tmp_path):
    assert huimin("generate", *GENERATE, "--visits", "5", "-o", "v.jsonl",
                  cwd=tmp_path).returncode == 0
    with open(tmp_path / "v.jsonl", "ab") as f:
        f.write(b'{"visit_no": "oops"}\n')
    proc = huimin("replay", "v.jsonl", "--rate", "10", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Error: v.jsonl: line 7 is not a visit" in proc.stderr
    proc = huimin("replay", "v.jsonl", cwd=tmp_path)
    assert proc.returncode != 0 and "--rate" in proc.stdout + proc.stderr
