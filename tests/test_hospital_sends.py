"""A request the hospitals' producer gives up on never reached the platform: it is counted and
logged at the hospital, so that it is not taken for a request the platform lost."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from kafka.errors import IllegalStateError, KafkaTimeoutError, UnknownTopicOrPartitionError
from kafka.future import Future

from messages.signing import Signer
from simulators import hospital_metrics as metrics
from simulators.hospital import HospitalFleet, Undelivered


class ProducerKeepingFutures:
    """The producer's side of a send: a future the test settles."""

    def __init__(self) -> None:
        self.futures: list[Future] = []

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None,
             headers: object = None) -> Future:
        future = Future()
        self.futures.append(future)
        return future


def sending_fleet() -> HospitalFleet:
    """A fleet with no broker, only its send path: each send's future is the test's."""
    fleet = HospitalFleet.__new__(HospitalFleet)
    fleet.producer = ProducerKeepingFutures()
    fleet.signer = Signer(b"test-secret")
    fleet.undelivered = Undelivered()
    return fleet


def failures(error: str) -> float:
    return metrics.SEND_FAILURES.labels(error)._value.get()


def test_a_request_the_producer_gives_up_on_is_counted_and_logged_without_its_content(
        caplog: pytest.LogCaptureFixture) -> None:
    fleet = sending_fleet()
    before = failures("KafkaTimeoutError")
    with caplog.at_level(logging.WARNING, logger="huimin.hospitals"):
        fleet._send("110101199003070011", b'{"msgid": "M1"}', signing="none")
        fleet._send("110101199003070011", b'{"msgid": "M2"}', signing="none")
        fleet.producer.futures[0].failure(KafkaTimeoutError("no broker answered"))
        fleet.producer.futures[1].success(None)
    assert failures("KafkaTimeoutError") == before + 1
    assert "could not be delivered to hosp.requests: KafkaTimeoutError" in caplog.text
    assert "110101199003070011" not in caplog.text and "M1" not in caplog.text


def test_many_undelivered_requests_are_one_line_then_a_sum_not_a_line_each(
        caplog: pytest.LogCaptureFixture) -> None:
    """A closing producer fails every batch it still holds: the first is logged, the rest
    summed up once the hospitals stop."""
    fleet = sending_fleet()
    before = failures("IllegalStateError")
    with caplog.at_level(logging.WARNING, logger="huimin.hospitals"):
        for n in range(40):
            fleet._send("110101199003070011", b'{"msgid": "M%d"}' % n, signing="none")
        for future in fleet.producer.futures:
            future.failure(IllegalStateError("producer is closed"))
        assert caplog.text.count("could not be delivered") == 1
        fleet.undelivered.say()
    assert failures("IllegalStateError") == before + 40  # every one counted
    assert "39 more requests could not be delivered to hosp.requests: IllegalStateError" \
        in caplog.text
    assert caplog.text.count("could not be delivered") == 2


def test_an_error_of_another_name_counts_as_other_and_is_logged_by_its_name(
        caplog: pytest.LogCaptureFixture) -> None:
    """The label's values stay the known few, each exported at zero, so the first failure of
    an error kafka-python rarely gives still fires the alert; the log names it."""
    fleet = sending_fleet()
    before = failures("other")
    with caplog.at_level(logging.WARNING, logger="huimin.hospitals"):
        fleet._send("110101199003070011", b'{"msgid": "M1"}', signing="none")
        fleet.producer.futures[0].failure(UnknownTopicOrPartitionError("gone"))
    assert failures("other") == before + 1
    assert "could not be delivered to hosp.requests: UnknownTopicOrPartitionError" \
        in caplog.text


def test_waiting_for_a_stalled_broker_gives_way_to_a_ctrl_c(
        caplog: pytest.LogCaptureFixture) -> None:
    """The last flush waits in slices, asking between them whether to stop: a Ctrl-C is not
    held for the whole answer time-out (30 s) by a broker that takes nothing."""
    class StalledProducer:
        def __init__(self) -> None:
            self.flushes: list[float] = []

        def flush(self, timeout: float) -> None:
            self.flushes.append(timeout)
            raise KafkaTimeoutError("nothing sent")

    fleet = HospitalFleet.__new__(HospitalFleet)
    fleet.producer = StalledProducer()
    fleet.answer_timeout_s = 3600.0
    asked = iter([False, False, True])
    with caplog.at_level(logging.WARNING, logger="huimin.hospitals"):
        fleet._flush(stop_requested=lambda: next(asked))
    assert len(fleet.producer.flushes) == 3 and max(fleet.producer.flushes) <= 0.25
    assert "still unsent to hosp.requests" in caplog.text


def test_the_hospitals_export_undelivered_requests_at_zero_before_the_first() -> None:
    """An alert on increase() sees no increase in a series that appears at 1 (a fresh
    interpreter: a test here may have counted one already)."""
    exposed = subprocess.run(
        [sys.executable, "-c", "from prometheus_client import generate_latest; "
         "from simulators.hospital_metrics import HOSPITAL_REGISTRY as r; "
         "print(generate_latest(r).decode())"],
        capture_output=True, text=True, check=True).stdout
    for kind in ("KafkaTimeoutError", "IllegalStateError", "MessageSizeTooLargeError",
                 "KafkaConnectionError", "other"):
        assert f'huimin_hospital_send_failures_total{{error="{kind}"}} 0.0' in exposed
