"""`huimin bench-compare` puts two benchmark runs side by side, rate by rate, with the settings
that differ and each rate's CPU probe, so that a change is not credited with what a slower
machine did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from benchmarks.compare import comparison
from tests.conftest import run_huimin


def bench_result(linger_ms: int, started: str, points: list[dict[str, Any]],
                 capacity: float | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "started": started,
        "machine": {"cpus": 2, "versions": {"aiokafka": "0.14.0"}},
        "settings": {"broker": "tansu", "linger_ms": linger_ms, "fetch_wait_ms": 25},
        "points": points}
    if capacity is not None:
        result["capacity"] = {"p99_limit_ms": 300.0, "huimin_settlements_per_s": capacity,
                              "raw_messages_per_s": None}
    return result


def point(rate: float, achieved: float, p50: float, p99: float, cpu_all: float,
          probe: float, writes: float | None = None,
          handlers: float | None = None) -> dict[str, Any]:
    kept: dict[str, Any] = {"broker_messages_per_visit": {"all": writes}} if writes else {}
    if handlers is not None:  # the workers' CPU by role, kept since 12-02
        kept["worker_cpu_ms_per_visit_by_role"] = {
            "treatment_requests": handlers, "handlers": handlers,
            "outside": cpu_all / 4 - handlers}
    return {"offered_visits_per_s": rate, "achieved_settlements_per_s": achieved,
            "settlement_latency_ms": {"all": {"count": 100, "p50": p50, "p99": p99}},
            "cpu_ms_per_visit": {"broker": cpu_all / 2, "workers": cpu_all / 4,
                                 "hospitals": cpu_all / 4, "all": cpu_all},
            "cpu_probe_ms": probe, **kept}


BEFORE = bench_result(5, "2026-12-02T05:00:00",
                      [point(50, 50.1, 200.0, 600.0, 32.0, 21.5),
                       point(70, 63.4, 580.0, 1600.0, 25.0, 21.6)], capacity=0.0)
AFTER = bench_result(10, "2026-12-02T05:10:00",
                     [point(50, 50.4, 150.0, 450.0, 30.0, 11.2, writes=28.4, handlers=2.5),
                      point(90, 80.0, 900.0, 2000.0, 22.0, 21.0)], capacity=50.4)


def test_the_comparison_shows_each_shared_rate_its_changes_and_the_probes():
    text = comparison(BEFORE, AFTER)
    assert "Settings that differ: linger_ms 5 → 10." in text
    assert ("| 50 | 50.1 → 50.4 | 200.0 → 150.0 (-25 %) | 600.0 → 450.0 (-25 %) | "
            "16 / 8 / 8 → 15 / 7.5 / 7.5 | 32.0 → 30.0 (-6 %) | – → 2.5 / 5 | – → 28.4 | "
            "21.5 → 11.2 |") in text  # the run before counted neither messages nor roles
    assert "| 70 |" not in text and "| 90 |" not in text  # offered in one run only
    assert "0 → 50.4 settlements/s; raw ceiling – → – messages/s" in text


def test_a_rate_past_capacity_shows_the_visits_it_dropped():
    dropping = {**point(70, 61.0, 4000.0, 9000.0, 24.0, 20.0), "dropped_visits": 1200}
    text = comparison(BEFORE, bench_result(5, "2026-12-02T06:00:00", [dropping]))
    assert "| 70 | 63.4 → 61 (1,200 visits dropped) |" in text


def test_the_comparison_names_a_change_of_machine_or_of_versions():
    moved = {**AFTER, "machine": {"cpus": 4, "python": "3.12.1",
                                  "versions": {"aiokafka": "0.14.0", "huimin": "0.1.0 (abc1234)"}}}
    text = comparison(BEFORE, moved)
    differ = text.split("Settings that differ:")[1].split("\n")[0]
    assert "cpus 2 → 4" in differ and "python ? → 3.12.1" in differ
    assert "huimin ? → 0.1.0 (abc1234)" in differ  # a version the run before did not record
    assert "aiokafka" not in differ


def test_a_p99_past_every_answer_reads_as_in_the_report_and_capacities_name_their_targets():
    """bench.md writes ∞ for a percentile among the settlements never answered; so does the
    comparison (it printed None). A Tansu run against a Kafka run compares capacities
    within different p99 targets (300 and 100 ms), and a raw ceiling of 0 (no rate of it
    sustained) is not the same as none measured."""
    stuck = point(50, 0.0, 0.0, 0.0, 30.0, 12.0)
    stuck["settlement_latency_ms"]["all"] = {"count": 0, "unanswered": 700, "p50": None,
                                             "p99": None}
    kafka = {**bench_result(5, "2026-12-02T06:00:00", [stuck], capacity=0.0),
             "capacity": {"p99_limit_ms": 100.0, "huimin_settlements_per_s": 0.0,
                          "raw_messages_per_s": 0.0}}
    text = comparison(BEFORE, kafka)
    assert "| 50 | 50.1 → 0 | 200.0 → ∞ (–) | 600.0 → ∞ (–) |" in text
    assert "None" not in text.split("Settings that differ")[1].split("\n", 1)[1]
    assert ("Capacity within p99 ≤ 300 → 100 ms (the targets differ): 0 → 0 settlements/s; "
            "raw ceiling – → 0 messages/s.") in text
    assert "Capacity within p99 ≤ 300 ms: 0 → 50.4" in comparison(BEFORE, AFTER)


def test_runs_without_a_rate_in_common_say_so():
    other = bench_result(5, "2026-12-02T06:00:00", [point(30, 30.0, 90.0, 200.0, 40.0, 20.0)])
    assert "no offered rate in both runs" in comparison(BEFORE, other)


def test_a_run_stopped_by_ctrl_c_is_named_with_what_it_stopped():
    stopped = {**AFTER, "interrupted": "search"}
    text = comparison(BEFORE, stopped)
    assert ("The after run was stopped by Ctrl-C during the capacity search "
            "(--find-capacity): its capacities count only the rates it measured.") in text
    assert "| 50 | 50.1 → 50.4 |" in text  # the shared rate still compared
    assert "stopped by Ctrl-C" not in comparison(BEFORE, AFTER)


def test_the_command_reads_bench_folders_and_refuses_what_is_not_a_result(tmp_path: Path):
    for name, result in (("before", BEFORE), ("after", AFTER)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bench.json").write_bytes(orjson.dumps(result))
    proc = run_huimin(["bench-compare", str(tmp_path / "before"),
                       str(tmp_path / "after" / "bench.json")], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# huimin benchmark: before → after")
    assert "| 50 | 50.1 → 50.4 |" in proc.stdout
    (tmp_path / "other.json").write_text('{"points": []}')
    (tmp_path / "null.json").write_bytes(orjson.dumps({**BEFORE, "points": None}))
    for bad in (tmp_path / "missing", tmp_path / "other.json", tmp_path / "null.json"):
        proc = run_huimin(["bench-compare", str(bad), str(tmp_path / "after")], timeout=60)
        said = " ".join(proc.stderr.replace("│", " ").split())  # rich boxes and wraps it
        assert proc.returncode == 2 and "is not a `huimin bench` result" in said
        assert "Traceback" not in proc.stderr


def test_a_file_half_like_a_result_is_refused_not_traced(tmp_path: Path):
    """Settings, machine and rates, but no versions in the machine (or a rate without its
    figures): it failed halfway through the comparison with a KeyError."""
    (tmp_path / "after.json").write_bytes(orjson.dumps(AFTER))
    half = tmp_path / "half.json"
    for content in ({"points": [], "settings": {}, "machine": {}, "started": "x"},
                    {**BEFORE, "points": [{"offered_visits_per_s": 50}]},
                    {**BEFORE, "capacity": {"raw_messages_per_s": None}}):
        half.write_bytes(orjson.dumps(content))
        proc = run_huimin(["bench-compare", str(tmp_path / "after.json"), str(half)],
                          timeout=60)
        said = " ".join(proc.stderr.replace("│", " ").split())
        assert proc.returncode == 2 and "is not a `huimin bench` result" in said, proc.stderr
        assert "Traceback" not in proc.stderr


def test_the_comparison_cautions_where_the_probes_disagree_and_not_where_they_agree():
    text = comparison(BEFORE, AFTER)  # 21.5 → 11.2 ms at 50 visits/s: the machine sped up
    assert "The CPU probes disagree by more than 15 % at 50 visits/s (21.5 → 11.2 ms)" in text
    steady = bench_result(10, "2026-12-02T05:20:00", [point(50, 50.2, 190.0, 580.0, 31.0, 20.4)])
    assert "probes disagree" not in comparison(BEFORE, steady)


def test_a_capacity_that_is_a_lower_bound_is_compared_as_one():
    """Every rate a run offered was sustained: its capacity is at least that, and a drop to
    a run that offered less is no drop of the platform's."""
    higher, lower = (bench_result(5, "2026-12-02T05:00:00", [point(r, r, 100.0, 200.0, 20.0,
                                                                    12.0)], capacity=r)
                     for r in (20.4, 9.9))
    for run in (higher, lower):
        run["capacity"]["huimin_bracketed"] = False
    assert "at least 20.4 → at least 9.9 settlements/s" in comparison(higher, lower)
    higher["capacity"]["huimin_bracketed"] = True
    assert "Capacity within p99 ≤ 300 ms: 20.4 → at least 9.9" in comparison(higher, lower)


def test_settings_that_differ_read_as_a_person_writes_them():
    before = {**BEFORE, "settings": {**BEFORE["settings"], "ceiling": True,
                                     "sweep_max": 12800.0, "seed": 1234567,
                                     "rates_visits_per_s": [1000.0, 2000.0, 50.0]}}
    after = {**AFTER, "settings": {**AFTER["settings"], "ceiling": False, "sweep_max": None,
                                   "seed": 1234568, "rates_visits_per_s": [2.5]}}
    differ = comparison(before, after).split("Settings that differ:")[1].split("\n")[0]
    assert "ceiling on → off" in differ and "sweep_max 12,800 → –" in differ, differ
    assert "seed 1,234,567 → 1,234,568" in differ, differ
    assert "rates_visits_per_s 1,000 / 2,000 / 50 → 2.5" in differ, differ


def test_a_run_from_before_a_setting_was_recorded_had_its_default():
    """Runs before 12-06 recorded no `fetch_min_bytes`; they fetched with 1 (the clients')."""
    assert "fetch_min_bytes" not in BEFORE["settings"]
    same = {**BEFORE, "settings": {**BEFORE["settings"], "fetch_min_bytes": 1}}
    assert "Settings that differ: none." in comparison(BEFORE, same)
    fuller = {**BEFORE, "settings": {**BEFORE["settings"], "fetch_min_bytes": 8192}}
    assert "Settings that differ: fetch_min_bytes 1 → 8,192." in comparison(BEFORE, fuller)
