"""A worker with nothing of its own to fetch is noted as active, so that aiokafka keeps it in
the group as a spare; one with partitions keeps aiokafka's guard (streams/spare.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from huimin import cli
from streams import spare


def worker(actives: set[str], fetching: set[str], fetch_count: int = 0) -> SimpleNamespace:
    subscription = SimpleNamespace(_fetch_count=fetch_count, _last_fetch_ended=0.0)
    consumer = SimpleNamespace(_thread=SimpleNamespace(_consumer=SimpleNamespace(
        _subscription=subscription)), _get_active_partitions=lambda: fetching)
    return SimpleNamespace(consumer=consumer, assignor=SimpleNamespace(
        assigned_actives=lambda: actives))


def test_only_a_worker_with_nothing_of_its_own_to_fetch_is_noted_active():
    idle = worker(set(), set())
    assert spare.keep_a_spare_in_its_group(idle)
    assert idle.consumer._thread._consumer._subscription._last_fetch_ended > 0
    for busy in (worker({"hosp.requests-0"}, set()),  # its own, paused: aiokafka judges it
                 worker(set(), {"changelog-0"}),  # a standby copy it fetches
                 worker(set(), set(), fetch_count=1)):  # a fetch under way
        assert not spare.keep_a_spare_in_its_group(busy)
        assert busy.consumer._thread._consumer._subscription._last_fetch_ended == 0.0
    assert not spare.keep_a_spare_in_its_group(SimpleNamespace(consumer=None, assignor=None))


@pytest.mark.parametrize("given", ["0", "5m", "-3", "100000"])
def test_a_max_poll_interval_that_is_not_seconds_in_range_is_refused(
        monkeypatch: pytest.MonkeyPatch, given: str):
    monkeypatch.setenv(spare.MAX_POLL_INTERVAL_ENV, given)
    with pytest.raises(ValueError, match="seconds from 1 to 86,400"):
        spare.max_poll_interval_s()
    monkeypatch.setenv(spare.MAX_POLL_INTERVAL_ENV, "8")
    assert spare.max_poll_interval_s() == 8.0


def test_every_command_refuses_a_max_poll_interval_it_cannot_use(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(spare.MAX_POLL_INTERVAL_ENV, "5m")
    result = CliRunner().invoke(cli.app, ["topics", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 2 and "HUIMIN_MAX_POLL_INTERVAL_S='5m': seconds from 1" in \
        result.output, result.output
