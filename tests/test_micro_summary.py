"""The micro-benchmarks give one throughput per benchmark: the summary printed at the end of a
run and the `per_second` kept in its `extra_info` are both from the mean time per call."""

from __future__ import annotations

from types import SimpleNamespace

from benchmarks.conftest import pytest_terminal_summary
from benchmarks.test_micro import record


class Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str) -> None:
        self.lines.append(title)

    def write_line(self, line: str) -> None:
        self.lines.append(line)


def test_the_printed_throughput_is_the_one_kept_from_the_mean_not_the_median():
    """A benchmark whose rounds took 1 ms but for a garbage-collector pause: mean 2 ms."""
    stats = SimpleNamespace(mean=0.002, median=0.001)
    benchmark = SimpleNamespace(name="test_policy_engine", extra_info={},
                                stats=SimpleNamespace(stats=stats))
    record(benchmark, per_call=100, unit="settlements", target=10_000)
    assert benchmark.extra_info["per_second"] == 50_000.0  # 100 per 2 ms
    assert benchmark.extra_info["target_ratio"] == 5.0
    reporter = Reporter()
    config = SimpleNamespace(_benchmarksession=SimpleNamespace(benchmarks=[SimpleNamespace(
        name=benchmark.name, extra_info=benchmark.extra_info, stats=stats)]))
    pytest_terminal_summary(reporter, config)
    assert "mean" in reporter.lines[0]
    assert "50,000 settlements/s  target 10,000/s: 5.0×" in reporter.lines[1]
