"""Hospitals that hand each finished visit to a sink (as `huimin bench` does, so that a long
run's memory does not grow with its visits) keep none of them, and what they hand over is
what the platform answered over the real broker: every visit, every answer to every copy sent,
each equal to the oracle's."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from huimin.local_platform import platform
from huimin.run import arrivals_at_rate
from huimin.run_checks import compare
from messages.visitlog import VisitSession
from settlement.oracle import Oracle
from simulators.hospital import HospitalFleet, PlatformSilent, response_consumer
from simulators.rdkafka_requests import MAX_REQUEST_BYTES
from simulators.visit_run import Exchange
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from streams.broker import EmbeddedBroker, broker
from streams.topics import create_platform_topics

pytestmark = pytest.mark.e2e

WORLD_SPEC = WorldSpec(seed=11, persons=300)
VISITS = VisitSpec(visits=150, start="2027-03-01 08:00:00", days=4, ehr=False)


def test_a_fleet_with_a_sink_hands_over_every_visit_as_the_oracle_settles_it_and_keeps_none(
        tmp_path: Path):
    world = build_world(WORLD_SPEC)
    expected = list(Oracle(world.ref).settle_log(generate_visits(world, VISITS)))
    handed: list[VisitSession] = []
    exchanges: list[Exchange] = []

    def sink(session: VisitSession, its_exchanges: list[Exchange]) -> None:
        handed.append(session)
        exchanges.extend(its_exchanges)

    with broker(tmp_path / "broker.log") as bootstrap, \
            platform(bootstrap, WORLD_SPEC, 2, tmp_path):
        fleet = HospitalFleet(bootstrap)
        try:
            fleet.sign_in(world.ref.hospitals.values(), "2027-03-01 00:00:00")
            result = fleet.run(generate_visits(world, VISITS),  # read as the visits arrive
                               arrivals_at_rate(VISITS.visits, 30.0), sink=sink)
        finally:
            fleet.close()

    assert result.sessions == [] and result.exchanges == {} and not result.timed_out
    assert sorted(s.visit.visit_no for s in handed) == [s.visit.visit_no for s in expected]
    handed.sort(key=lambda s: s.visit.visit_no)
    comparison = compare(handed, expected)
    assert comparison.ok, comparison.mismatches
    assert comparison.settlements_equal == comparison.settlements_expected > 0
    assert sorted(e.msgid for e in exchanges) == sorted(m for s in expected for m, _ in s.sent)
    assert all(len(e.answers) == e.sends and e.latency_ms is not None for e in exchanges)
    assert any(e.sends == 2 for e in exchanges)  # duplicates sent, each answered twice


def test_a_visit_the_hospital_gave_up_on_goes_to_the_sink_at_once_not_at_the_end(
        tmp_path: Path):
    """No platform answers: each visit's first request times out and the visit goes to the
    sink as failed, then, not when the run ends (it waits out the drain time for the daily
    reconciliations nobody answers)."""
    world = build_world(WORLD_SPEC)
    spec = VisitSpec(visits=3, start="2027-03-01 08:00:00", days=1, ehr=False)
    handed: list[tuple[float, VisitSession, list[Exchange]]] = []
    with broker(tmp_path / "broker.log") as bootstrap:
        create_platform_topics(bootstrap, 2)  # and no worker
        fleet = HospitalFleet(bootstrap, answer_timeout_s=1.0)
        try:
            result = fleet.run(generate_visits(world, spec), arrivals_at_rate(3, 10.0),
                               drain_s=8.0,
                               sink=lambda s, e: handed.append((time.monotonic(), s, e)))
            ended = time.monotonic()
        finally:
            fleet.close()
    assert len(result.timed_out) == 3
    assert [(s.failed or {}).get("err_code") for _, s, _ in handed] == ["TIMEOUT"] * 3
    assert all(len(exchanges) == 1 and not exchanges[0].answers for _, _, exchanges in handed)
    assert all(at < ended - 5 for at, _, _ in handed)  # given up on, handed over at once


def test_arrivals_beyond_the_in_flight_limit_are_dropped_counted_and_never_sent(
        tmp_path: Path):
    """Far past capacity the load generator stops growing the backlog: with 2 visits under
    way (no platform answers, so they stay under way until the hospital gives up), the
    other 4 arrivals are dropped, counted and reported as dropped, and only the 2 are sent."""
    world = build_world(WORLD_SPEC)
    spec = VisitSpec(visits=6, start="2027-03-01 08:00:00", days=1, ehr=False)
    handed: list[VisitSession] = []
    progress: list[tuple[int, int]] = []
    with broker(tmp_path / "broker.log") as bootstrap:
        create_platform_topics(bootstrap, 2)  # and no worker
        fleet = HospitalFleet(bootstrap, answer_timeout_s=1.0)
        try:
            result = fleet.run(generate_visits(world, spec), arrivals_at_rate(6, 100.0),
                               drain_s=1.0, sink=lambda s, e: handed.append(s),
                               on_progress=lambda f, d: progress.append((f, d)),
                               max_in_flight=2)
            with pytest.raises(ValueError, match="at least 1"):
                fleet.run([], [], max_in_flight=0)
        finally:
            fleet.close()
    assert result.dropped == 4
    assert len(handed) == 2 and len(result.timed_out) == 2  # the two sent, given up on
    assert [(s.failed or {}).get("err_code") for s in handed] == ["TIMEOUT"] * 2
    assert sorted(progress) == [(0, 1)] * 4 + [(1, 0)] * 2  # 4 dropped, 2 finished
    assert sum(len(s.sent) for s in handed) == 2  # one request each, then it gave up


def test_hospitals_on_a_cluster_with_no_platform_topics_say_so(tmp_path: Path):
    """`huimin replay` against a cluster nobody set up: a clear error (exit 2 in the CLI),
    not a traceback about partitions."""
    with broker(tmp_path / "broker.log") as bootstrap, \
            pytest.raises(PlatformSilent, match=r"no topic hosp\.responses.*huimin topics"):
        response_consumer(bootstrap, wait_s=2)


def test_hospitals_whose_cluster_went_away_give_up_sending_within_the_answer_timeout(
        tmp_path: Path):
    """A cluster gone for good must not hold the run in the producer's flush for ever: its
    answers so far (and the results file) would be lost with it."""
    embedded = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    try:
        create_platform_topics(embedded.bootstrap, partitions=1)
        fleet = HospitalFleet(embedded.bootstrap, answer_timeout_s=3)
        try:
            embedded.stop()
            for n in range(50):
                fleet._send(f"{n}", b"{}", "H11010100001")
            started = time.monotonic()
            fleet._flush()
            assert time.monotonic() - started < 3 + 5
        finally:
            fleet.close()  # and closing does not raise for what it could not send
    finally:
        embedded.stop()


def test_a_sign_in_answered_again_is_counted_apart_but_a_refusal_or_a_stranger_is_unexpected(
        tmp_path: Path):
    """A sign-in redelivered to a worker (a rebalance as the platform starts; every rate but
    the first of a bench on one cluster) is answered again after `sign_in` returned: that is
    no error of the platform's, and is counted apart. A repeat that refuses the sign-in, and
    an answer to a msgid the hospitals never sent, still are unexpected."""
    world = build_world(WORLD_SPEC)
    spec = VisitSpec(visits=5, start="2027-03-01 08:00:00", days=1, ehr=False)
    hospitals = list(world.ref.hospitals.values())
    with broker(tmp_path / "broker.log") as bootstrap, \
            platform(bootstrap, WORLD_SPEC, 1, tmp_path):
        fleet = HospitalFleet(bootstrap)
        try:
            fleet.sign_in(hospitals, "2027-03-01 00:00:00")
            other = HospitalFleet(bootstrap)  # another sender, on the same answers topic
            try:
                other.sign_in(hospitals[1:], "2027-03-01 00:00:00")  # the same msgids again
                # the first one's msgid again, from another province: refused (E-code)
                elsewhere = "990100" if hospitals[0].admdvs[:2] != "99" else "110100"
                other.sign_in([replace(hospitals[0], admdvs=elsewhere)], "2027-03-01 00:00:00")
                other.sign_in(hospitals[:1], "2027-03-02 00:00:00")  # one the fleet never sent
            finally:
                other.close()
            result = fleet.run(generate_visits(world, spec), arrivals_at_rate(5, 10.0),
                               drain_s=3.0)
        finally:
            fleet.close()
    assert not result.timed_out and len(result.sessions) == 5
    assert result.sign_ins_answered_again == len(hospitals) - 1
    assert result.unexpected_answers == 2


def test_a_visit_whose_request_has_another_visits_msgid_ends_at_once_instead_of_waiting(
        tmp_path: Path):
    """A hand-made log can give two visits one msgid (the reader refuses a repeated first
    msgid, not one of a later step). The answers go to the visit that sent it first; the
    other visit once waited for them for ever, time-outs and all."""
    world = build_world(WORLD_SPEC)
    first, other = list(generate_visits(world, replace(VISITS, visits=2, ehr=False)))
    second_msgid_time = VisitSession(first).step_time(1)
    twin = other.model_copy(update={"fixmedins_code": first.fixmedins_code,
                                    "mdtrtarea_admvs": first.mdtrtarea_admvs,
                                    "begntime": second_msgid_time, "seq": first.seq + 1})
    assert VisitSession(twin).msgid_at(0) == VisitSession(first).msgid_at(1)
    handed: list[VisitSession] = []
    with broker(tmp_path / "broker.log") as bootstrap, \
            platform(bootstrap, WORLD_SPEC, 2, tmp_path):
        fleet = HospitalFleet(bootstrap, answer_timeout_s=20)
        try:
            fleet.sign_in(world.ref.hospitals.values(), "2027-03-01 00:00:00")
            started = time.monotonic()
            result = fleet.run([first, twin], [0.0, 0.5])
            took = time.monotonic() - started
            # as a replay runs it, its visits handed to a sink: the one that sent nothing
            # too (its result line was missing), and as the oracle settles the log (verify
            # failed it, "0 answers, expected 1": a visit-log author's review)
            fleet.run([first, twin], [0.0, 0.5], linger_s=5.0,
                      sink=lambda session, _: handed.append(session))
        finally:
            fleet.close()
    ended = {s.visit.visit_no: (s.failed or {}).get("err_code") for s in result.sessions}
    assert list(ended.values()).count("REPEATED_MSGID") == 1, ended
    assert not result.timed_out and took < 20, took
    expected = list(Oracle(world.ref).settle_log([first, twin]))
    assert [(s.failed or {}).get("err_code") for s in expected] == list(ended.values())
    assert sorted(s.visit.visit_no for s in handed) == [first.visit_no, twin.visit_no]


def test_a_request_over_what_the_producer_may_send_is_counted_not_sent_and_times_out(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """A fee upload of 4,000 items (1.1 MB) once ended a replay with kafka-python's
    MessageSizeTooLargeError and wrote no results."""
    world = build_world(WORLD_SPEC)
    (visit,) = list(generate_visits(world, replace(VISITS, visits=1)))
    huge = visit.model_copy(update={"items": [visit.items[0]] * 4_000, "kind": "outpatient",
                                    "batches": 1, "steps": ["1101", "2201", "2204", "2207"]})
    with broker(tmp_path / "broker.log") as bootstrap, \
            platform(bootstrap, WORLD_SPEC, 2, tmp_path):
        fleet = HospitalFleet(bootstrap, answer_timeout_s=3)
        try:
            fleet.sign_in(world.ref.hospitals.values(), "2027-03-01 00:00:00")
            result = fleet.run([huge], [0.0])
        finally:
            fleet.close()
    (session,) = result.sessions
    assert session.failed is not None and session.failed["err_code"] == "TIMEOUT"
    assert [infno for _, infno in session.sent] == ["1101", "2201", "2204"]
    assert f"is over the {MAX_REQUEST_BYTES} the hospitals' producer may send: not sent" \
        in caplog.text


def test_a_request_over_the_platforms_limit_is_refused_e1004_at_once_as_the_oracle_does(
        tmp_path: Path):
    """A fee upload of 1,500 items (~0.4 MB: over the platform's 256 KiB, under what the
    producer may send) was dead-lettered unanswered, and its visit waited out the answer
    timeout and failed `verify`; it is answered E1004 now, as the oracle answers it."""
    world = build_world(WORLD_SPEC)
    (visit,) = list(generate_visits(world, replace(VISITS, visits=1)))
    big = visit.model_copy(update={"items": [visit.items[0]] * 1_500, "kind": "outpatient",
                                   "batches": 1, "steps": ["1101", "2201", "2204", "2207"]})
    expected = list(Oracle(world.ref).settle_log([big]))
    with broker(tmp_path / "broker.log") as bootstrap, \
            platform(bootstrap, WORLD_SPEC, 2, tmp_path):
        fleet = HospitalFleet(bootstrap, answer_timeout_s=60)
        try:
            fleet.sign_in(world.ref.hospitals.values(), "2027-03-01 00:00:00")
            started = time.monotonic()
            result = fleet.run([big], [0.0])
            took = time.monotonic() - started
        finally:
            fleet.close()
    assert not result.timed_out and not result.dead_letters and took < 60, took
    (session,) = result.sessions
    codes = [(infno, session.answers[msgid][0]["err_code"]) for msgid, infno in session.sent]
    assert codes[:3] == [("1101", ""), ("2201", ""), ("2204", "E1004")], codes
    comparison = compare(result.sessions, expected)
    assert comparison.ok, comparison.mismatches
