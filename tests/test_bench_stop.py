"""A Ctrl-C or SIGTERM stops `huimin bench` cleanly even where its KeyboardInterrupt surfaces
as a library's own error: raised inside confluent-kafka's C call or a threading lock, it has
come out as `TypeError: expected header key to be unicode string` and `RuntimeError: release
unlocked lock`, and the bench crashed with a traceback instead of reporting what it had
measured (exit 1, not 143; seen in CI). Deterministic: the signal and the error it turns into
are made here, the platform's parts stood in for, so the test is about the handling alone."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

import benchmarks.load as load
import benchmarks.plot
from benchmarks.load import RatePoint, run_bench
from huimin import cli


def _point(rate: float) -> RatePoint:
    return RatePoint(offered_visits_per_s=rate, visits=10, offered_settlements_per_s=rate,
                     achieved_settlements_per_s=rate, settlement_latency_ms={"all": {}},
                     hop_latency_ms={}, errors={"timeouts": 0}, cpu_cores={},
                     answered_share=1.0)


@pytest.fixture
def platform_stood_in(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """run_bench with no broker, workers or hospitals behind it: each rate 'measures' at
    once. Returns the time-outs the hospitals were closed with, rate by rate."""
    @contextlib.contextmanager
    def no_broker(*_: Any, **__: Any) -> Iterator[str]:
        yield "127.0.0.1:1"

    @contextlib.contextmanager
    def no_platform(*_: Any, **__: Any) -> Iterator[Any]:
        yield SimpleNamespace(workers=[], wait_until_serving=lambda *_: 0.0, gone=lambda: None)

    class NoFleet:
        def __init__(self, *_: Any, **__: Any) -> None:
            pass

        def sign_in(self, *_: Any, **__: Any) -> None:
            pass

        def close(self, timeout_s: float) -> None:
            closes.append(timeout_s)

    closes: list[float] = []
    monkeypatch.setattr(load, "broker", no_broker)
    monkeypatch.setattr(load, "platform", no_platform)
    monkeypatch.setattr(load, "HospitalFleet", NoFleet)
    monkeypatch.setattr(load, "broker_pids", lambda *_: [])
    monkeypatch.setattr(load, "broker_messages", lambda *_: load.Counter())
    return closes


def _measures_then(error: BaseException, stop: list[int] | None = None) -> Any:
    """measure_rate that measures its first rate and raises `error` at the second, a stop
    noted first if `stop` is given."""
    calls: list[float] = []

    def measure(_fleet: Any, rate: float, *_: Any, **__: Any) -> RatePoint:
        calls.append(rate)
        if len(calls) > 1:
            if stop is not None:
                stop.append(signal.SIGTERM)
            raise error
        return _point(rate)
    return measure


def test_an_error_raised_once_a_stop_came_keeps_the_rates_measured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform_stood_in: list[float]):
    stops: list[int] = []
    monkeypatch.setattr(load, "measure_rate", _measures_then(
        TypeError("expected header key to be unicode string"), stops))
    result = run_bench([3, 4], 1, 0, "tansu", tmp_path, persons=200, ceiling=False,
                       stop_signalled=lambda: bool(stops))
    assert result["interrupted"] == "rates"
    assert [p["offered_visits_per_s"] for p in result["points"]] == [3]
    assert platform_stood_in == [5.0, 0.0]  # the stopped rate's producer is dropped


def test_an_error_without_a_stop_is_not_taken_for_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform_stood_in: list[float]):
    monkeypatch.setattr(load, "measure_rate", _measures_then(RuntimeError("a real fault")))
    with pytest.raises(RuntimeError, match="a real fault"):
        run_bench([3, 4], 1, 0, "tansu", tmp_path, persons=200, ceiling=False,
                  stop_signalled=lambda: False)
    assert platform_stood_in == [5.0, 5.0]  # closed as usual


def test_sigterm_that_surfaces_as_a_library_error_exits_143_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Through the CLI, its own SIGTERM handler: the signal really comes, and the fake bench
    turns its KeyboardInterrupt into confluent-kafka's TypeError, as the library did."""
    def bench_hit_in_a_c_call(*_: Any, **__: Any) -> dict[str, Any]:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises within this
        except KeyboardInterrupt:
            raise TypeError("expected header key to be unicode string") from None
        raise AssertionError("no SIGTERM came")

    monkeypatch.setattr(load, "run_bench", bench_hit_in_a_c_call)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        result = CliRunner().invoke(cli.app, ["bench", "--rates", "3", "--duration", "3",
                                              "--warmup", "1",
                                              "--no-ceiling", "--out", str(tmp_path / "b")])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 143, result.output
    assert "stopped by SIGTERM before any rate was measured" in result.output
    assert "Traceback" not in result.output and "TypeError" not in result.output


def test_a_bench_that_kept_its_rates_after_a_ctrl_c_reports_a_later_fault_as_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform_stood_in: list[float]):
    """The bench dealt with the stop (its rates measured kept): a fault while it writes its
    report is the bench's own, not taken for the Ctrl-C (exit 130 with no report)."""
    def ctrl_c_at_the_second_rate(_fleet: Any, rate: float, *_: Any, **__: Any) -> Any:
        if rate > 3:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        return _point(rate)

    def plot_fails(*_: Any, **__: Any) -> None:
        raise RuntimeError("a real fault")

    monkeypatch.setattr(load, "measure_rate", ctrl_c_at_the_second_rate)
    monkeypatch.setattr(benchmarks.plot, "plot", plot_fails)
    # as in a terminal: a CI job may start the tests with SIGINT ignored
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = CliRunner().invoke(cli.app, ["bench", "--rates", "3,4", "--duration", "1",
                                              "--warmup", "0", "--no-ceiling", "--out",
                                              str(tmp_path / "b")])
    finally:
        signal.signal(signal.SIGINT, before)
    assert isinstance(result.exception, RuntimeError), (result.output, result.exception)
    assert (tmp_path / "b" / "bench.json").exists()  # written before the plot
