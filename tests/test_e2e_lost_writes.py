"""A write the cluster refuses stops the worker before it commits past the request, and the
request is answered once the worker is started again: nothing is lost. On a real Apache Kafka
broker (Tansu does not enforce a topic's `max.message.bytes`), whose `hosp.responses` is set
to refuse every answer for a while, as a mistaken topic setting would. Needs `java` and `mvn`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from huimin.local_platform import platform
from messages.topics import HOSP_REQUESTS, HOSP_RESPONSES
from simulators.hospital import HospitalFleet
from simulators.world import WorldSpec, build_world
from streams.broker import broker
from streams.lost_writes import LOST_WRITE_EXIT
from tests import handmade
from tests.conftest import needs_java_and_maven

pytestmark = [
    pytest.mark.e2e,
    needs_java_and_maven,
]

SPEC = WorldSpec(seed=5, persons=100)
WORLD = build_world(SPEC)
T = "2026-12-01 09:00:00"


def set_max_message_bytes(bootstrap: str, topic: str, limit: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                            configs={"max.message.bytes": str(limit)})])
    finally:
        admin.close()


def committed(bootstrap: str, topic: str) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="huimin",
                             enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0))
    finally:
        consumer.close()


def test_a_refused_answer_stops_the_worker_and_is_answered_after_its_restart(tmp_path: Path):
    certno = sorted(WORLD.ref.enrollments)[0]
    hospital = min(WORLD.ref.hospitals.values(), key=lambda h: h.fixmedins_code)
    request = certno, handmade.request("1101", hospital, T, 1,
                                       handmade.person_info_input(certno, T))
    msgid = request[1]["msgid"]
    with broker(tmp_path / "broker.log", kind="kafka") as bootstrap, \
            platform(bootstrap, SPEC, 1, tmp_path) as p:
        p.wait_until_serving()
        [worker] = p.workers
        set_max_message_bytes(bootstrap, HOSP_RESPONSES, 64)  # no answer fits
        fleet = HospitalFleet(bootstrap)
        try:
            assert fleet.exchange([request], timeout_s=5) == {msgid: []}
            assert worker.process is not None
            assert worker.process.wait(timeout=60) == LOST_WRITE_EXIT
            log = worker.log_path.read_text()
            assert f"a write to {HOSP_RESPONSES} failed (MessageSizeTooLargeError)" in log
            assert certno not in log
            assert committed(bootstrap, HOSP_REQUESTS) in (None, 0)  # not past the request

            set_max_message_bytes(bootstrap, HOSP_RESPONSES, 1_048_588)  # Kafka's default
            worker.start()
            deadline = time.monotonic() + 90
            answers: list[dict[str, Any]] = []
            while not answers and time.monotonic() < deadline:
                answers = [m["ans"] for m in fleet._poll(200)
                           if (m.get("ans") or {}).get("inf_refmsgid") == msgid]
            assert answers and answers[0]["infcode"] == 0, answers
        finally:
            fleet.close()
