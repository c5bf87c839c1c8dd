"""What a replay says about keeping to its schedule: a wait for the same person's previous
visit is not a sign of an overloaded platform; the hospitals' own lag is."""

from __future__ import annotations

from huimin.report import replay_pace, settled_in_ms
from simulators.visit_run import Exchange, HospitalRunResult, StartLag

SETTLED = {"M1": Exchange("2207", "M1", sends=1, answers=[{"infcode": 0}], latency_ms=90.0)}
SETTLED_MS = [ms for ex in SETTLED.values() if (ms := settled_in_ms(ex)) is not None]


def result(waits_ms: list[float], loop_ms: list[float]) -> HospitalRunResult:
    start_lag, loop_lag = StartLag(), StartLag()
    for ms in [*waits_ms, *loop_ms]:
        start_lag.add(ms)
    for ms in loop_ms:
        loop_lag.add(ms)
    return HospitalRunResult([], SETTLED, {}, [], [], 0, 3.0, start_lag=start_lag,
                             waited_for_person=len(waits_ms), loop_lag=loop_lag)


def test_visits_that_waited_for_their_person_do_not_raise_the_overload_warning():
    lines = replay_pace(result(waits_ms=[1_400.0], loop_ms=[2.0] * 9), SETTLED_MS,
                        scheduled_s=3.0)
    assert not any("fell behind" in line for line in lines)
    assert "1 visit waited for the same person's visit before it to end" in lines[-1]
    # the hospitals' own lag first, the start lag with the wait beside it
    assert "within 2 ms of theirs (1,400 ms counting the visit that waited for the same " \
        "person's visit, below)" in lines[0], lines[0]


def test_hospitals_late_to_their_own_schedule_are_warned_of():
    lines = replay_pace(result(waits_ms=[5.0, 7.0], loop_ms=[1_559.6] * 9), SETTLED_MS,
                        scheduled_s=3.0)
    assert any("fell behind the schedule (up to 1.6 s late)" in line for line in lines)
    assert "2 visits waited for the same person's visit before them to end" in lines[-1]


def test_a_round_trip_counting_answers_that_came_after_their_visit_was_given_up_says_so():
    """A p99 past the answer time-out reads as impossible unless the late answers it counts
    are named (a broker-restart review: p99 61,799 ms with a 30-s time-out)."""
    quiet = result(waits_ms=[], loop_ms=[2.0] * 9)
    assert "given up included" not in replay_pace(quiet, SETTLED_MS, scheduled_s=3.0)[0]
    quiet.late_answers = 3
    assert "p99 90 ms (answers that came after their visit was given up included)." in \
        replay_pace(quiet, SETTLED_MS, scheduled_s=3.0)[0]
