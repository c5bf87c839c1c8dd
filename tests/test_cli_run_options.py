"""`huimin run`'s options reach the scenario it runs, and its warnings are given before it
starts (without starting a broker: the scenario is replaced by one that captures them)."""

from __future__ import annotations

import pytest
from click.testing import Result
from typer.testing import CliRunner

from huimin import cli
from huimin.cli import redelivery_outlives_window
from huimin.run import RunOptions


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


def test_the_hospitals_answer_timeout_is_30_s_unless_given(monkeypatch: pytest.MonkeyPatch):
    assert options_of(monkeypatch).answer_timeout_s == 30.0
    opts = options_of(monkeypatch, "--answer-timeout", "90", "--store", "rocksdb")
    assert opts.answer_timeout_s == 90.0 and opts.store.startswith("rocksdb")


def test_an_answer_timeout_of_zero_is_refused(monkeypatch: pytest.MonkeyPatch):
    result = invoke_run(monkeypatch, "--answer-timeout", "0")
    assert result.exit_code == 2 and "answer-timeout" in result.output


def test_redelivery_outlives_the_window_only_when_the_visits_span_more_than_it():
    assert not redelivery_outlives_window(days=7, visits=300, rate=30)  # the fault tests'
    assert redelivery_outlives_window(days=60, visits=300, rate=30)  # 6 days a second
    assert not redelivery_outlives_window(days=60, visits=2000, rate=1)  # 0.03 days a second


def test_a_faulty_run_with_a_fast_clock_is_warned_of(monkeypatch: pytest.MonkeyPatch):
    def warned(*args: str) -> bool:
        output = invoke_run(monkeypatch, "--visits", "300", "--rate", "30", *args).output
        return "7-day operating window" in " ".join(output.split())  # as the console wraps it

    assert warned("--days", "60", "--faults", "kill-worker=1")
    assert warned("--days", "60", "--workers", "2")
    assert not warned("--days", "7", "--faults", "kill-worker=1")
    assert not warned("--days", "60")  # nothing is redelivered
