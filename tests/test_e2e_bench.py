"""`huimin bench` runs end to end at a tiny rate (the figures themselves are for people, not
for assertions): it writes the JSON, the report and the plot, with huimin and the raw ceiling
measured at each offered rate."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import orjson
import pytest

from benchmarks.bounds import FIND_CAPACITY_LEAST
from benchmarks.load import RATE_MARK, bench_persons, sweep_rates
from benchmarks.profiles import can_attach
from streams.broker import BOOTSTRAP_ENV, broker
from streams.config import FETCH_WAIT_MS
from tests.conftest import TOOLS_REQUIRED, interrupt_huimin, run_huimin

pytestmark = pytest.mark.e2e


def test_bench_writes_json_report_and_plot_for_huimin_and_the_raw_ceiling(tmp_path: Path):
    out = tmp_path / "bench"
    proc = run_huimin(["bench", "--rates", "10", "--duration", "4", "--warmup", "1",
                       "--persons", "600", "--sweep-max", "25", "--broker-warmup", "2",
                       "--profile", "--fetch-min-bytes", "512", "--out", str(out)],
                      timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "huimin at 10 visits/s: 40 visits" in proc.stdout  # no terminal: stages as lines
    # each fresh broker (the rate's, the sweep's) gets unmeasured load first
    assert proc.stdout.count("warming the broker up for 2 s") >= 2
    result = orjson.loads((out / "bench.json").read_bytes())
    assert result["machine"]["cpus"] >= 1 and result["settings"]["broker"] == "tansu"
    versions = result["machine"]["versions"]
    assert versions["broker"].startswith("tansu ") and versions["huimin"].startswith("0.")
    assert result["settings"]["fetch_wait_ms"] == FETCH_WAIT_MS  # Tansu's, not Kafka's
    assert result["settings"]["fetch_min_bytes"] == 512  # the workers' and the forwarders'
    assert result["settings"]["broker_warmup_s"] == 2
    assert result["settings"]["persons"] == 600  # as given
    assert result["settings"]["max_visits_in_flight"] == 5000
    assert [p["offered_visits_per_s"] for p in result["points"]] == [10]
    assert result["interrupted"] is None
    for point in result["points"]:
        assert point["achieved_settlements_per_s"] > 0
        assert point["dropped_visits"] == 0  # 10 visits/s comes nowhere near the limit
        assert point["settlement_latency_ms"]["all"]["count"] > 0
        assert point["ceiling"]["achieved_per_s"] > 0 and point["ceiling"]["hops"] == 6
        # timed from when each message was due: how late the sender was is said, not hidden
        lag = point["ceiling"]["send_lag_ms"]
        assert 0 <= lag["p99"] <= lag["max"] <= point["ceiling"]["latency_ms"]["max"]
        assert point["cpu_cores"]["workers"] > 0
        # one worker: the busiest is the only one (rounded apart, so a little slack)
        assert abs(point["busiest_worker_cores"] - point["cpu_cores"]["workers"]) < 0.01
        assert point["cpu_ms_per_visit"]["all"] > point["cpu_ms_per_visit"]["workers"] > 0
        assert point["cpu_probe_ms"] > 0 and point["ceiling"]["cpu_probe_ms"] > 0
        # the whole machine's busy cores, the run's processes' among them (tick accounting
        # read at slightly different moments: a little slack)
        assert point["machine_busy_cores"] >= 0.9 * sum(point["cpu_cores"].values()) > 0
        assert point["others_busy_cores"] is not None
        # a visit writes its requests and answers at each hop and its rows' changelog
        # records: more than the raw chain's 6 writes a message, never hundreds
        writes = point["broker_messages_per_visit"]
        assert 6 < writes["all"] < 100
        assert writes["hosp.requests"] >= 4 and writes["hosp.responses"] >= 4  # 4-7 requests
        assert any("changelog" in topic for topic in writes)
        # the worker's CPU by role, read from its /metrics: the rules run in the handlers,
        # and with the rest (Faust, the client, polling) they make up the worker's CPU
        by_role = point["worker_cpu_ms_per_visit_by_role"]
        assert by_role["treatment_requests"] > 0 and by_role["insured_requests"] > 0
        assert 0 < by_role["handlers"] < point["cpu_ms_per_visit"]["workers"]
        assert by_role["handlers"] + by_role["outside"] == \
            pytest.approx(point["cpu_ms_per_visit"]["workers"], abs=0.02)
        # the hospitals' CPU by thread: their loop, and kafka-python's network threads
        by_thread = point["hospitals_cpu_ms_per_visit_by_thread"]
        assert by_thread["loop"] > 0 and by_thread["librdkafka"] > 0  # requests and answers
        assert sum(by_thread.values()) == pytest.approx(point["cpu_ms_per_visit"]["hospitals"],
                                                        rel=0.25, abs=1.0)
    top = max(p["ceiling"]["offered_per_s"] for p in result["points"])
    assert top * 2 <= 25  # so the sweep measured at least one rate beyond
    assert [c["offered_per_s"] for c in result["ceiling_sweep"]][:1] == [top * 2]
    cap = result["capacity"]
    assert cap["p99_limit_ms"] == 300 and cap["raw_sweep_max_per_s"] == 25
    report = (out / "bench.md").read_text()
    # the raw ceiling is bounded above only if the sweep reached a rate it did not sustain
    assert ("messages/s offered, not at" in report) is cap["raw_bracketed"]
    assert "| offered visits/s |" in report and "raw" in report
    assert "fetch wait 25 ms for at least 512 bytes (the workers')" in report
    assert "## CPU per visit" in report and "messages written to the broker per visit" in report
    assert "## The workers' CPU by role" in report and "## The hospitals' CPU by thread" in report
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # py-spy sampled the workers and the hospitals (where it may read their stacks)
    profile = result["points"][0]["profile"]
    if can_attach() is None or TOOLS_REQUIRED:
        assert profile["workers"]["samples"] > 0 and profile["hospitals"]["samples"] > 0
        assert profile["hospitals"]["self"] and profile["workers"]["inclusive"]
        # the raw stacks are kept, and hold the hospitals' own loop (in a run this short it
        # can be all of their main thread's trunk, which the summary leaves out)
        profiles = out / "rate-0" / "profiles"
        assert list(profiles.glob("workers-*.txt"))
        assert "VisitRun.carry_out" in "".join(
            p.read_text() for p in profiles.glob("hospitals-*.txt"))
        assert "## Where the time goes (py-spy" in report
    else:
        assert profile == {}  # no profile, and the benchmark went on without it


def test_find_capacity_offers_more_rates_past_the_highest_one_sustained(tmp_path: Path):
    out = tmp_path / "bench"
    proc = run_huimin(["bench", "--rates", "3", "--duration", "4", "--warmup", "1",
                       "--no-ceiling", "--find-capacity",
                       "--find-capacity-max", "6", "--out", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = orjson.loads((out / "bench.json").read_bytes())
    assert result["settings"]["find_capacity"] is True
    assert result["settings"]["persons"] == bench_persons(6) == 20_000  # the default's least
    points = result["points"]
    assert [p["offered_visits_per_s"] for p in points if not p["searched"]] == [3]
    # whatever this machine sustained: the search followed from what was measured (no
    # assertion that it is fast enough to sustain any rate)
    by_rate = {p["offered_visits_per_s"]: p for p in points}
    sustained = {rate: p["unsustained"] is None for rate, p in by_rate.items()}
    added = result["capacity"]["search"]["added_visits_per_s"]
    assert added == [p["offered_visits_per_s"] for p in points if p["searched"]]
    # past 3 (doubling to 6) if and only if 3 was sustained; below 3 nothing, as halving
    # would go under the least the search offers (5 visits/s)
    assert (added[:1] == [6]) is sustained[3] and (added == []) is not sustained[3]
    # each rate added is the one the rule picks given the rates before it
    replayed = sweep_rates(lambda r: r, [3.0], lambda r: r, lambda r: sustained[r], 6,
                           least=FIND_CAPACITY_LEAST)
    assert replayed == added
    # the capacity is the highest achieved rate among those sustained, 0 if none was
    assert result["capacity"]["huimin_settlements_per_s"] == max(
        (p["achieved_settlements_per_s"] for p in points if p["unsustained"] is None),
        default=0.0)
    best = max((rate for rate, ok in sustained.items() if ok), default=None)
    assert result["capacity"]["search"]["bracketed"] is (
        best is not None and any(rate > best for rate in by_rate))
    offered = [p["offered_visits_per_s"] for p in points]
    assert offered == sorted(offered) and len(offered) <= 4  # doubling to 6, two bisections
    assert len({p["folder"] for p in points}) == len(points)
    assert all((out / p["folder"] / "broker.log").exists() for p in points)
    assert result["capacity"]["search"]["max_visits_per_s"] == 6
    assert "- searched for (--find-capacity):" in (out / "bench.md").read_text()


@pytest.mark.parametrize("options, named", [
    (["--rates", "ten"], "--rates"), (["--rates", "nan"], "--rates"),
    (["--rates", "inf"], "--rates"), (["--warmup", "30", "--duration", "30"], "--warmup"),
    (["--duration", "inf"], "--duration")])
def test_bench_refuses_bad_options_before_anything_starts(options: list[str], named: str):
    proc = run_huimin(["bench", *options], timeout=60)
    assert proc.returncode == 2 and named in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("command", ["run", "bench", "worker"])
def test_an_unknown_table_store_is_refused_before_anything_starts(command: str):
    proc = run_huimin([command, "--store", "disk"], timeout=60)
    assert proc.returncode == 2 and "--store" in proc.stdout + proc.stderr
    assert "memory, rocksdb" in proc.stdout + proc.stderr


@pytest.mark.parametrize(("sig", "by"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_or_sigterm_keeps_the_rates_measured_in_the_report(tmp_path: Path, sig: int,
                                                                   by: str):
    """A developer stops a long sweep (or a CI job's time-out does), here while the first
    rate's raw ceiling runs: huimin's figures for that rate are reported (without a ceiling),
    the rate after it is not offered, and every broker and platform is stopped."""
    out = tmp_path / "bench"
    # an earlier bench's files in the same --out, and a user's own
    (out / "rate-1" / "worker-0-data").mkdir(parents=True)
    (out / "rate-1" / RATE_MARK).touch()
    (out / "ceiling.log").write_text("an earlier sweep")
    (out / "rate-notes").mkdir()  # not rate-<i>: not a bench's name
    (out / "notes.txt").write_text("mine")
    proc, left = interrupt_huimin(["bench", "--rates", "3,4", "--duration", "3", "--warmup", "1",
                             "--persons", "600", "--broker-warmup", "0", "--out", str(out)],
                            marker="raw ceiling at", after_s=1, timeout=120, sig=sig)
    assert proc.returncode == 128 + sig, proc.stdout
    assert "Traceback" not in proc.stdout
    result = orjson.loads((out / "bench.json").read_bytes())
    assert result["interrupted"] == "rates"
    assert [p["offered_visits_per_s"] for p in result["points"]] == [3]
    assert result["points"][0]["achieved_settlements_per_s"] > 0
    assert not result["points"][0]["ceiling"] and result["ceiling_sweep"] == []
    assert result["capacity"]["raw_messages_per_s"] is None  # not measured, not 0
    report = (out / "bench.md").read_text()
    assert f"**Stopped by {by}** during the rates offered: 1 rate(s) measured (2 offered)" \
        in report
    assert f"- raw ceiling: not measured (stopped by {by} before it was)." in report
    assert (out / "bench.png").stat().st_size > 0
    assert not left  # brokers, worker, the raw ceiling's forwarders
    # the earlier bench's rate-1 is gone (only rate-0 was measured); nothing else was touched
    assert not (out / "rate-1").exists() and (out / "rate-0" / "workers.json").exists()
    assert "an earlier sweep" not in (out / "ceiling.log").read_text()
    assert (out / "rate-notes").is_dir() and (out / "notes.txt").read_text() == "mine"


def test_a_bench_stopped_before_its_first_rate_writes_nothing_and_says_so(tmp_path: Path):
    out = tmp_path / "bench"
    proc, left = interrupt_huimin(["bench", "--rates", "3", "--duration", "3", "--warmup", "1",
                                   "--persons", "600", "--out", str(out)],
                                  marker="waiting for the platform", after_s=0, timeout=120,
                                  sig=signal.SIGTERM)
    assert proc.returncode == 143, proc.stdout
    assert f"stopped by SIGTERM before any rate was measured: no report written to {out} " \
        "(only the logs of what ran)" in proc.stdout
    assert "Traceback" not in proc.stdout and not (out / "bench.json").exists()
    assert (out / "rate-0" / "broker.log").exists()  # the logs of the rate it stopped
    assert not left


def test_a_kafka_bench_on_a_tansu_cluster_says_at_once_why_its_worker_stopped(tmp_path: Path):
    """`--broker kafka` (idempotent producers) with KAFKA_BOOTSTRAP_SERVERS naming a Tansu
    broker, which has none: the worker exits within a second, and the bench waited out its
    121-s sign-in before saying only that no platform answered (a review)."""
    with broker(tmp_path / "broker.log") as bootstrap:
        result = run_huimin(["bench", "--broker", "kafka", "--rates", "5", "--duration", "3",
                             "--warmup", "1", "--no-ceiling", "--out", str(tmp_path / "b")],
                            timeout=100, env={**os.environ, BOOTSTRAP_ENV: bootstrap})
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, said
    assert "worker 0 exited (status 1) before the platform answered" in said
    assert "refused an idempotent producer (InitProducerId)" in said
    assert "give `--broker tansu` for a Tansu cluster" in said
    assert "within 121 s" not in said
