"""`huimin run`'s options reach the scenario it runs, and its warnings are given before it
starts (without starting a broker: the scenario is replaced by one that captures them)."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer.main
from typer.testing import CliRunner, Result

from huimin import cli, cli_options
from huimin.cli import (
    faults_line,
    interrupted_run,
    redelivery_outlives_window,
    reproduce_command,
)
from huimin.run import RunOptions
from simulators.faults import FaultPlan
from streams.broker import BOOTSTRAP_ENV


class Captured(Exception):
    def __init__(self, opts: RunOptions) -> None:
        super().__init__("captured")
        self.opts = opts


def invoke_run(monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    def capture(opts: RunOptions, **_: object) -> None:
        raise Captured(opts)

    monkeypatch.setattr(cli, "run_scenario", capture)
    return CliRunner().invoke(cli.app, ["run", *args])


def options_of(monkeypatch: pytest.MonkeyPatch, *args: str) -> RunOptions:
    result = invoke_run(monkeypatch, *args)
    assert isinstance(result.exception, Captured), result.output
    return result.exception.opts


def test_the_visits_begin_on_the_day_given_at_eight(monkeypatch: pytest.MonkeyPatch):
    assert options_of(monkeypatch).visits.start == "2026-12-01 08:00:00"
    opts = options_of(monkeypatch, "--start", "2027-01-01", "--days", "30", "--no-ehr")
    assert (opts.visits.start, opts.visits.days, opts.visits.ehr) == (
        "2027-01-01 08:00:00", 30, False)
    result = invoke_run(monkeypatch, "--start", "2027-02-30")
    assert result.exit_code == 2 and "2027-02-30 is not a day" in result.output


def test_the_hospitals_answer_timeout_is_30_s_unless_given(monkeypatch: pytest.MonkeyPatch):
    assert options_of(monkeypatch).answer_timeout_s == 30.0
    opts = options_of(monkeypatch, "--answer-timeout", "90", "--store", "rocksdb")
    assert opts.answer_timeout_s == 90.0 and opts.store.startswith("rocksdb")


def test_an_answer_timeout_of_zero_is_refused(monkeypatch: pytest.MonkeyPatch):
    result = invoke_run(monkeypatch, "--answer-timeout", "0")
    assert result.exit_code == 2 and "answer-timeout" in result.output


def test_a_run_stops_on_a_cluster_refusing_for_60_s_unless_given(
        monkeypatch: pytest.MonkeyPatch):
    assert options_of(monkeypatch).stop_after_unreachable_s == 60.0
    assert options_of(monkeypatch, "--stop-after-unreachable", "0").stop_after_unreachable_s \
        == 0.0  # never
    result = invoke_run(monkeypatch, "--stop-after-unreachable", "-1")
    assert result.exit_code == 2 and "stop-after-unreachable" in result.output


def test_redelivery_outlives_the_window_only_when_the_visits_span_more_than_it():
    assert not redelivery_outlives_window(days=7, wall_s=300 / 30)  # the fault tests'
    assert redelivery_outlives_window(days=60, wall_s=300 / 30)  # 6 days a second
    assert not redelivery_outlives_window(days=60, wall_s=2000 / 1)  # 0.03 days a second
    assert redelivery_outlives_window(days=60, wall_s=0)  # one visit: all at once


def test_the_warning_of_a_fast_clock_reads_for_a_log_whose_visits_all_arrive_at_once(
        capsys: pytest.CaptureFixture[str]):
    from huimin.cli import _warn_if_redelivery_outlives_window
    _warn_if_redelivery_outlives_window(60, 0.0, "a lower --rate")
    assert "runs all its days at once" in capsys.readouterr().out


def test_a_faulty_run_with_a_fast_clock_is_warned_of(monkeypatch: pytest.MonkeyPatch):
    def warned(*args: str) -> bool:
        output = invoke_run(monkeypatch, "--visits", "300", "--rate", "30", *args).output
        return "7-day operating window" in " ".join(output.split())  # as the console wraps it

    assert warned("--days", "60", "--faults", "kill-worker=1")
    assert warned("--days", "60", "--workers", "2")
    assert not warned("--days", "7", "--faults", "kill-worker=1")
    assert not warned("--days", "60")  # nothing is redelivered


# -- the command that reproduces a failed run -----------------------------------------------

def failing_run(monkeypatch: pytest.MonkeyPatch, tmp_path, *args: str,
                env: dict[str, str] | None = None) -> str:
    """The `Reproduce with:` command a failed run prints (the scenario replaced by a failure)."""
    monkeypatch.setattr(cli, "run_scenario",
                        lambda *a, **k: SimpleNamespace(ok=False, out_dir=tmp_path,
                                                        result=SimpleNamespace(cluster_lost=None)))
    monkeypatch.setattr(cli, "summarise", lambda _: {})
    monkeypatch.setattr(cli, "write_outputs", lambda *_: None)
    monkeypatch.setattr(cli, "print_summary", lambda *_: None)
    monkeypatch.setattr(cli_options, "unreachable", lambda _: None)  # no cluster is used
    result = CliRunner().invoke(cli.app, ["run", *args], env=env)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Reproduce with")]
    assert len(lines) == 1, result.output  # one line, however long: it pastes as one command
    said, command = lines[0].split(": ", 1)
    # on the cluster of KAFKA_BOOTSTRAP_SERVERS, which now holds this run's requests
    assert ("on a fresh cluster" in said) == bool((env or {}).get(BOOTSTRAP_ENV)), said
    return command


def parsed(args: list[str]) -> dict[str, object]:
    """The run options `args` give, as the CLI parses them (the output folder left out; the
    fault plan parsed: its faults in any order)."""
    run = typer.main.get_command(cli.app).commands["run"]  # type: ignore[attr-defined]
    params = run.make_context("run", list(args)).params
    return {k: FaultPlan.parse(v) if k == "faults" else v for k, v in params.items()
            if k != "out"}


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)


@pytest.mark.usefixtures("no_cluster")
@pytest.mark.parametrize("args", [
    [],
    ["--visits", "300", "--rate", "30", "--days", "7", "--start", "2027-01-01"],
    ["--faults", "kill-worker=1,duplicate=0.05", "--bad-per-kind", "0", "--partitions", "3",
     "--workers", "2", "--store", "rocksdb", "--answer-timeout", "90", "--no-ehr",
     "--cross-share", "0.5", "--persons", "800", "--seed", "7", "--out", "somewhere"],
])
def test_a_failed_run_prints_a_command_that_runs_it_again(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path, args: list[str]):
    command = shlex.split(failing_run(monkeypatch, tmp_path, *args))
    assert command[:2] == ["huimin", "run"]
    assert parsed(command[2:]) == parsed(args)
    assert dataclasses.replace(options_of(monkeypatch, *command[2:]), out_dir=None) == \
        dataclasses.replace(options_of(monkeypatch, *args), out_dir=None)
    assert ("--faults" in command) == ("--faults" in args)
    assert "--out" not in command  # a second run there would overwrite the failed run's files


def test_the_command_names_a_cluster_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path):
    command = failing_run(monkeypatch, tmp_path, "--workers", "2",
                          env={BOOTSTRAP_ENV: "kafka-1:9092,kafka-2:9092"})
    assert command.startswith(f"{BOOTSTRAP_ENV}=kafka-1:9092,kafka-2:9092 huimin run ")


@pytest.mark.usefixtures("no_cluster")
def test_reproduce_command_names_only_what_differs_beyond_the_scenario():
    default = reproduce_command({}, environ={})
    assert default == ("huimin run --persons 5000 --visits 2000 --cross-share 0.2 --days 60 "
                       "--start 2026-12-01 --seed 42 --rate 50.0 --broker tansu --workers 1")
    for empty in (None, ""):
        assert reproduce_command({"faults": empty}, environ={}) == default  # no bare --faults
    given = {"faults": "kill-worker=1", "bad_per_kind": 0, "partitions": 3, "metrics_port": 9100,
             "ehr": False, "store": "rocksdb", "answer_timeout": 90.0, "out": Path("o p")}
    command = reproduce_command(given, environ={})
    words = shlex.split(command)
    assert set(shlex.split(default)) < set(words)
    for option in ("--partitions 3", "--bad-per-kind 0", "--faults kill-worker=1",
                   "--metrics-port 9100", "--store rocksdb", "--answer-timeout 90.0"):
        assert f" {option}" in command
    assert "--no-ehr" in words and "--out" not in words
    assert parsed(words[2:]) == parsed([]) | {
        k: FaultPlan.parse(v) if k == "faults" else v for k, v in given.items() if k != "out"}
    assert reproduce_command({}, environ={BOOTSTRAP_ENV: "h:1"}) == \
        f"{BOOTSTRAP_ENV}=h:1 {default}"  # --broker too: the clients' settings follow it
    assert "'a b'" in reproduce_command({"faults": None, "store": "a b"}, environ={})


def test_without_a_terminal_each_stage_is_a_timestamped_line(monkeypatch: pytest.MonkeyPatch):
    """CI and log files show no progress bar: the stages are printed instead, one a line."""
    def stages(opts: RunOptions, on_stage, **_: object) -> None:
        on_stage("waiting for the platform to answer the hospitals' sign-in and for every "
                 "worker to join")
        raise Captured(opts)

    monkeypatch.setattr(cli, "run_scenario", stages)
    output = CliRunner().invoke(cli.app, ["run"]).output
    assert re.search(r"^\d\d:\d\d:\d\d waiting for the platform .* every worker to join$",
                     output, re.MULTILINE), output


def test_a_run_stopped_by_ctrl_c_names_only_what_it_started_and_left(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    early = interrupted_run(tmp_path)  # stopped while the world was built: nothing written
    assert early.startswith("Stopped by Ctrl-C: the broker and the workers this run started")
    assert "visit log" not in early and "replay" not in early
    (tmp_path / "visits.jsonl").write_text("")
    (tmp_path / "worker-0.log").write_text("")
    assert f"its visit log and the workers' logs are in {tmp_path}/" in interrupted_run(tmp_path)
    monkeypatch.setenv(BOOTSTRAP_ENV, "kafka-1:9092")  # the user's cluster: no broker started
    assert "the broker" not in interrupted_run(tmp_path)


def test_a_replays_faults_line_says_what_each_platform_fault_did():
    """A join was named in the plan but not said done, where a kill was (a review)."""
    both = FaultPlan.parse("kill-worker=2,join-worker=1")
    assert faults_line(both, 2) == ("Faults kill-worker=2,join-worker=1: the worker killed and "
                                    "restarted 2 times, 1 worker started to join the group")
    assert faults_line(FaultPlan.parse("join-worker=2"), 0) == (
        "Faults join-worker=2: 2 workers started to join the group")
    assert faults_line(both, None) == "Faults kill-worker=2,join-worker=1"  # stopped before
