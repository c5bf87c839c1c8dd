"""A run stops on a cluster lost, and only then: every connection refused for the time set
while the visits waited in silence (simulators/cluster_watch.py). A cluster that is up but
silent (a platform recovering), one that answers again, or a setting of 0 lets the visits
wait out their time-outs as before."""

from __future__ import annotations

import time

import pytest

from huimin.run import arrivals_at_rate, visit_period
from huimin.run_checks import account
from simulators.bad_messages import generate_bad_messages
from simulators.cluster_watch import ClusterWatch
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from tests.fleets import OracleFleet

REFUSED = "127.0.0.1:1: connection refused"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def watch_of(said: list[str | None], stop_after_s: float = 20.0
             ) -> tuple[ClusterWatch, Clock, list[float]]:
    """A watch whose cluster answers each ask with the next of `said` (its last for ever),
    on a clock the test moves; and when it was asked."""
    clock, asked = Clock(), []

    def refusal(bootstrap: str) -> str | None:
        asked.append(clock.now)
        return said.pop(0) if len(said) > 1 else said[0]

    return ClusterWatch("127.0.0.1:1", stop_after_s, refusal, clock, quiet_s=5,
                        ask_every_s=5), clock, asked


def ticks(watch: ClusterWatch, clock: Clock, until: float, awaiting: bool = True
          ) -> str | None:
    """The watch asked every 0.1 s, as the run's time-out scan asks, until it says the
    cluster is lost or `until`."""
    while clock.now < until:
        clock.now = round(clock.now + 0.1, 1)
        if lost := watch.lost(awaiting):
            return lost
    return None


def test_a_cluster_refusing_every_connection_in_silence_is_lost_after_the_time_set():
    watch, clock, asked = watch_of([REFUSED])
    assert ticks(watch, clock, 100) == REFUSED
    assert asked[0] == 5.0  # quiet for 5 s before the first ask, then every 5 s
    assert asked == [5.0 + 5 * i for i in range(len(asked))]
    assert clock.now == 25.0  # refused for 20 s


def test_a_healthy_run_never_asks():
    watch, clock, asked = watch_of([REFUSED])
    for _ in range(1000):  # an answer every 0.1 s
        clock.now += 0.1
        watch.heard()
        assert watch.lost(awaiting=True) is None
    assert asked == []


def test_nothing_awaited_is_never_lost():
    watch, clock, asked = watch_of([REFUSED])
    assert ticks(watch, clock, 100, awaiting=False) is None and asked == []


def test_a_cluster_that_takes_a_connection_again_starts_the_count_anew():
    """A broker restarting: refused, then up (silent: the platform recovering), then refused
    again; only the second outage's own 20 s count."""
    watch, clock, asked = watch_of([REFUSED, REFUSED, None, REFUSED])
    assert ticks(watch, clock, 100) == REFUSED
    assert asked[:4] == [5.0, 10.0, 15.0, 20.0]  # the third took a connection
    assert clock.now == 20.0 + 20.0  # refused since the fourth


def test_an_answer_starts_the_count_anew():
    watch, clock, _ = watch_of([REFUSED])
    assert ticks(watch, clock, 20) is None  # refused since 5 s
    watch.heard()  # the cluster is there after all
    assert ticks(watch, clock, 100) == REFUSED
    assert clock.now == 20.0 + 5.0 + 20.0


def test_a_count_left_while_nothing_was_awaited_starts_anew():
    """Refused, then nothing awaited for a while (the cluster may have come back unasked):
    the next refusal does not finish the old count at once."""
    watch, clock, _ = watch_of([REFUSED])
    assert ticks(watch, clock, 20) is None  # refused since 5 s
    assert ticks(watch, clock, 100, awaiting=False) is None
    assert ticks(watch, clock, 200) == REFUSED
    assert clock.now == pytest.approx(100.1 + 20.0)  # asked at once (silent since 0)


def test_a_time_set_shorter_than_the_asks_apart_is_kept_to():
    watch, clock, asked = watch_of([REFUSED], stop_after_s=2)
    assert ticks(watch, clock, 100) == REFUSED
    assert asked == [5.0, 7.0] and clock.now == 7.0


def test_a_cluster_up_but_silent_is_never_lost():
    """A platform recovering a killed worker's tables answers nothing for a while."""
    watch, clock, asked = watch_of([None])
    assert ticks(watch, clock, 600) is None and len(asked) > 100


def test_zero_never_stops():
    watch, clock, asked = watch_of([REFUSED], stop_after_s=0)
    assert ticks(watch, clock, 600) is None and asked == []


WORLD = build_world(WorldSpec(seed=5, persons=300))
VISITS = list(generate_visits(WORLD, VisitSpec(visits=200, days=3, ehr=False)))


class DyingFleet(OracleFleet):
    """Its cluster dies once some 10 visits' requests were sent: no answer after that."""

    def _poll(self, timeout_ms: int, worlds: set[str] | None = None) -> list[dict]:
        self.answering = self.answering and self.sent < 40
        return super()._poll(timeout_ms, worlds)


def test_a_run_on_a_cluster_lost_stops_there_with_every_request_accounted_for():
    """The platform stops answering some visits in; the cluster refuses every connection:
    the run stops after the time set, not after every visit has waited out its 30-s
    time-out, and hands back what it saw, whole."""
    fleet = DyingFleet(WORLD, answer_timeout_s=2.0)  # without the stop: ~12 s
    bad = generate_bad_messages(WORLD, 1, visit_period(VISITS))
    watch = ClusterWatch("127.0.0.1:1", 0.5, lambda b: None if fleet.answering else REFUSED,
                         quiet_s=0.3, ask_every_s=0.1)
    started = time.monotonic()
    result = fleet.run(VISITS, arrivals_at_rate(len(VISITS), 20.0), bad, drain_s=0.5,
                       watch=watch)
    assert time.monotonic() - started < 5  # 200 visits at 20/s would arrive over 10 s
    assert result.interrupted and result.cluster_lost == REFUSED
    assert 0 < len(result.sessions) < len(VISITS)
    assert not result.timed_out  # the awaited ones were in flight, not given up
    acc = account(result, bad[:result.bad_sent])
    assert acc.sent == fleet.sent + result.bad_sent
    assert acc.answered_ok + acc.answered_error == fleet.delivered > 0
    assert acc.unaccounted > 0


def test_a_run_whose_cluster_is_up_waits_out_its_time_outs():
    """Silent but taking connections (a platform recovering): the visits time out, the run
    is not cut short."""
    fleet = OracleFleet(WORLD, answer_timeout_s=0.5, answering=False)
    watch = ClusterWatch("127.0.0.1:1", 0.2, lambda b: None, quiet_s=0.1, ask_every_s=0.1)
    result = fleet.run(VISITS[:10], arrivals_at_rate(10, 100.0), [], drain_s=0.2, watch=watch)
    assert not result.interrupted and result.cluster_lost is None
    assert len(result.sessions) == 10 and len(result.timed_out) >= 10
    assert watch.asked > 0
