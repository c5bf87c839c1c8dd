"""A request the hospitals' producer gives up on most likely never reached the platform: it is
counted and logged at the hospital, so that it is not taken for a request the platform lost.
The producer is librdkafka's (simulators/rdkafka_requests.py), here with no broker at its
address."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import confluent_kafka
import pytest

from messages.signing import Signer
from simulators import hospital_metrics as metrics
from simulators import rdkafka_requests
from simulators.hospital import HospitalFleet, Undelivered
from simulators.rdkafka_requests import RequestsProducer
from streams.broker import free_port

CERTNO = "110101199003070011"


def sending_fleet(delivery_timeout_ms: int = 120_000) -> HospitalFleet:
    """A fleet with only its send path, its producer pointed where no broker listens."""
    fleet = HospitalFleet.__new__(HospitalFleet)
    fleet.signer = Signer(b"test-secret")
    fleet.undelivered = Undelivered()
    fleet.answer_timeout_s = 30.0
    fleet.producer = RequestsProducer(f"127.0.0.1:{free_port()}", {"client_id": "test"},
                                      fleet.undelivered,
                                      delivery_timeout_ms=delivery_timeout_ms)
    return fleet


def failures(error: str) -> float:
    return metrics.SEND_FAILURES.labels(error)._value.get()


def delivery_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "could not be delivered" in r.getMessage()]


def test_a_request_the_producer_gives_up_on_is_counted_and_logged_without_its_content(
        caplog: pytest.LogCaptureFixture) -> None:
    fleet = sending_fleet(delivery_timeout_ms=300)
    before = failures("timed_out")
    with caplog.at_level(logging.WARNING, logger="huimin.hospitals"):
        fleet._send(CERTNO, b'{"msgid": "M1"}', signing="none")
        fleet._send(CERTNO, b'{"msgid": "M2"}', signing="none")
        fleet._flush(timeout_s=10)  # both given up on after 0.3 s: nothing left to wait for
        fleet.producer.close(0)
    assert failures("timed_out") == before + 2
    assert delivery_failures(caplog) == [
        "a request could not be delivered to hosp.requests: _MSG_TIMED_OUT "
        "(Local: Message timed out)"]
    assert CERTNO not in caplog.text and "M1" not in caplog.text


def test_many_undelivered_requests_are_one_line_then_a_sum_not_a_line_each(
        caplog: pytest.LogCaptureFixture) -> None:
    """A closing producer gives up every request it still holds: the first is logged, the
    rest summed up once the hospitals stop."""
    fleet = sending_fleet()
    before = failures("unsent_at_close")
    with caplog.at_level(logging.WARNING, logger="huimin.hospitals"):
        for n in range(40):
            fleet._send(CERTNO, b'{"msgid": "M%d"}' % n, signing="none")
        assert fleet.producer.close(0.2) == 40
        assert len(delivery_failures(caplog)) == 1
        fleet.undelivered.say()
    assert failures("unsent_at_close") == before + 40  # every one counted
    assert delivery_failures(caplog)[1] == \
        "39 more requests could not be delivered to hosp.requests: _PURGE_QUEUE"


def test_requests_given_up_on_purpose_are_summed_up_not_warned_of(
        caplog: pytest.LogCaptureFixture) -> None:
    """An interrupt closes the producer at once (`HospitalFleet.close(0)`): what it held is
    said once, as information."""
    fleet = sending_fleet()
    fleet.undelivered.given_up = True
    with caplog.at_level(logging.INFO, logger="huimin.hospitals"):
        for n in range(3):
            fleet._send(CERTNO, b'{"msgid": "M%d"}' % n, signing="none")
        fleet.producer.close(0)
        fleet.undelivered.say()
    assert delivery_failures(caplog) == []
    assert "3 requests still in the producer given up on being stopped" in caplog.text


def test_a_full_producer_queue_gives_a_request_up_after_waiting_for_room(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster gone long enough fills the producer's queue: a send waits for room (as
    kafka-python's did, a minute), then gives its request up, counted, rather than raise."""
    monkeypatch.setattr(rdkafka_requests, "QUEUE_MAX_MESSAGES", 5)
    monkeypatch.setattr(rdkafka_requests, "QUEUE_FULL_WAIT_S", 0.3)
    fleet = sending_fleet()
    full, unsent = failures("queue_full"), failures("unsent_at_close")
    for n in range(8):
        fleet._send(CERTNO, b'{"msgid": "M%d"}' % n, signing="none")
    assert failures("queue_full") == full + 3
    assert fleet.producer.close(0) == 5
    assert failures("unsent_at_close") == unsent + 5


def test_requests_in_flight_at_close_are_counted_apart_from_those_never_sent() -> None:
    """A request on its way when the hospitals stop may have been written: it is not counted
    as never sent. librdkafka's mock cluster answers each request 1 s late."""
    fleet = sending_fleet()
    fleet.producer.close(0)
    fleet.producer = RequestsProducer("", {}, fleet.undelivered, librdkafka={
        "test.mock.num.brokers": 1, "test.mock.broker.rtt": 1000})
    fleet._send(CERTNO, b'{"msgid": "warm-up"}', signing="none")
    assert fleet.producer.flush(30) == 0  # the topic known, its leader connected
    in_flight, unsent = failures("in_flight_at_close"), failures("unsent_at_close")
    for n in range(10):
        fleet._send(CERTNO, b'{"msgid": "M%d"}' % n, signing="none")
    fleet.producer.flush(0.3)  # sent, unanswered
    assert fleet.producer.close(0) == 10
    assert failures("in_flight_at_close") == in_flight + 10
    assert failures("unsent_at_close") == unsent


def test_an_error_of_another_name_counts_as_other_and_is_logged_by_its_name(
        caplog: pytest.LogCaptureFixture) -> None:
    """The label's values stay the known few, each exported at zero, so the first failure of
    an error librdkafka rarely gives still fires the alert; the log names it."""
    fleet = sending_fleet()
    before = failures("other")
    with caplog.at_level(logging.WARNING, logger="huimin.hospitals"):
        fleet.producer._delivered(confluent_kafka.KafkaError(
            confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED), None)
    fleet.producer.close(0)
    assert failures("other") == before + 1
    assert "could not be delivered to hosp.requests: TOPIC_AUTHORIZATION_FAILED" in caplog.text


def test_a_request_too_large_to_send_is_refused_at_once_and_counted_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    fleet = sending_fleet()
    before = failures("too_large")
    value = b'{"msgid": "M1", "pad": "%s"}' % (b"x" * 1_100_000)
    with caplog.at_level(logging.WARNING, logger="huimin.hospitals"):
        fleet._send(CERTNO, value, signing="none")
    assert fleet.producer.close(0) == 0  # never queued
    assert failures("too_large") == before + 1
    assert f"a request of {len(value)} bytes is over the 1048576 the hospitals' producer may " \
        "send" in caplog.text
    assert "could not be delivered to hosp.requests: MSG_SIZE_TOO_LARGE" in caplog.text
    assert CERTNO not in caplog.text


def test_a_failure_is_counted_as_the_loop_reads_answers_not_only_at_a_send_or_flush() -> None:
    """librdkafka reports on the thread that asks: the loop asks on every pass, so a
    request given up while nothing is sent is counted then (the alert sees it in time)."""
    class NothingToRead:
        def poll(self, timeout_ms: int, max_records: int) -> list[object]:
            return []

    fleet = sending_fleet(delivery_timeout_ms=300)
    fleet.answer_reader = NothingToRead()  # type: ignore[assignment]
    before = failures("timed_out")
    fleet._send(CERTNO, b'{"msgid": "M1"}', signing="none")
    deadline = time.monotonic() + 10
    while failures("timed_out") == before and time.monotonic() < deadline:
        time.sleep(0.1)  # the time-out passes; nothing counted until the loop asks
        fleet._poll(0)
    assert failures("timed_out") == before + 1
    fleet.producer.close(0)


def test_closing_twice_does_nothing_the_second_time() -> None:
    fleet = sending_fleet()
    fleet._send(CERTNO, b'{"msgid": "M1"}', signing="none")
    assert fleet.producer.close(0) == 1
    assert fleet.producer.close(0) == 0


def test_waiting_for_a_stalled_broker_gives_way_to_a_ctrl_c(
        caplog: pytest.LogCaptureFixture) -> None:
    """The last flush waits in slices, asking between them whether to stop: a Ctrl-C is not
    held for the whole answer time-out by a broker that takes nothing."""
    fleet = sending_fleet()
    fleet.answer_timeout_s = 3600.0
    fleet._send(CERTNO, b'{"msgid": "M1"}', signing="none")
    asked: list[bool] = []

    def stop_requested() -> bool:
        asked.append(True)
        return len(asked) == 3

    with caplog.at_level(logging.WARNING, logger="huimin.hospitals"):
        fleet._flush(stop_requested=stop_requested)
    fleet.producer.close(0)
    assert len(asked) == 3
    assert "still unsent to hosp.requests when the hospitals stopped waiting" in caplog.text


def test_the_hospitals_export_undelivered_requests_at_zero_before_the_first() -> None:
    """An alert on increase() sees no increase in a series that appears at 1 (a fresh
    interpreter: a test here may have counted one already)."""
    exposed = subprocess.run(
        [sys.executable, "-c", "from prometheus_client import generate_latest; "
         "from simulators.hospital_metrics import HOSPITAL_REGISTRY as r; "
         "print(generate_latest(r).decode())"],
        capture_output=True, text=True, check=True).stdout
    for kind in ("timed_out", "unsent_at_close", "in_flight_at_close", "too_large",
                 "queue_full", "other"):
        assert f'huimin_hospital_send_failures_total{{error="{kind}"}} 0.0' in exposed


def test_every_transaction_a_visit_may_send_is_counted_from_zero() -> None:
    """A series born at its first request makes a dashboard's rate() miss that request (an
    operator's review): each infno a visit's plan may hold is exported at zero."""
    from prometheus_client import generate_latest

    from messages.visitlog import PLANNED_INFNOS
    exported = {line.split('"')[1] for line in generate_latest(
        metrics.HOSPITAL_REGISTRY).decode().splitlines()
        if line.startswith("huimin_hospital_requests_sent_total{")}
    assert exported >= {str(infno) for infno in PLANNED_INFNOS}
    assert len(PLANNED_INFNOS) > 15
