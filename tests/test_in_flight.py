"""`huimin_in_flight_requests` through the platform's roles, in process: the messages each
role sends are handed to the role that reads their topic, first in first out, as one worker
holding every partition would take them. Both copies of a duplicate reach the treatment side
before either is answered, as they do when a hospital sends them back to back."""

from __future__ import annotations

from collections import deque
from typing import Any

from prometheus_client import REGISTRY

from messages import topics
from messages.codec import decode, encode
from messages.visitlog import VisitSession
from simulators.faults import FaultPlan
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from streams.metrics import FORWARDED
from streams.record_roles import RecordRoles
from streams.role import RoleRunner
from streams.settlement_roles import SettlementRoles
from tests.in_process import in_process_wiring, taken

WORLD = build_world(WorldSpec(seed=3, persons=300))


def in_flight() -> float:
    return REGISTRY.get_sample_value("huimin_in_flight_requests") or 0.0


def test_duplicates_and_redelivered_answers_leave_nothing_in_flight():
    wiring = in_process_wiring()
    run = RoleRunner(None, wiring.hosp_responses, wiring.dead_letters, {})
    records = RecordRoles(run, wiring, WORLD.ref)
    roles = SettlementRoles(run, wiring, WORLD.ref, None, records)
    handlers = {topics.NAT_REQUESTS: roles.on_national_request,
                topics.INS_REQUESTS: roles.on_insured_request,
                topics.NAT_ANSWERS: roles.on_national_answer,
                topics.TRT_ANSWERS: roles.on_treatment_answer,
                topics.EHR_NATIONAL: records.on_national, topics.EHR_SOURCES: records.on_sources}

    def take(handler: Any, *event: Any) -> list[Any]:
        return taken(run, handler, *event)

    FORWARDED.forget()
    visits = list(FaultPlan(duplicate=0.3).apply(
        generate_visits(WORLD, VisitSpec(visits=40, ehr=True)), 1))
    assert sum(step.count("=") for v in visits for step in v.steps) > 20
    redelivered: list[tuple[bytes, bytes]] = []
    highest = 0.0
    for visit in visits:
        session = VisitSession(visit)
        while not session.done and (requests := session.advance()):
            queue: deque[Any] = deque()
            for request in requests:  # every copy reaches hosp.requests before any answer
                queue.extend(take(roles.on_hospital_request, visit.certno.encode(),
                                  encode(request), {}, None))
            highest = max(highest, in_flight())
            answers = []
            while queue:
                topic, key, value, *_ = queue.popleft()
                name = topic.get_topic_name()
                if name == topics.HOSP_RESPONSES:
                    answers.append(decode(value)["ans"])
                elif name in handlers:
                    if name == topics.TRT_ANSWERS:
                        redelivered.append((key, value))
                    queue.extend(take(handlers[name], key, value))
            for answer in answers:
                session.on_answer(answer)
    assert highest >= 1 and in_flight() == 0.0
    # after a rebalance, the new owner takes answers the old one had taken already
    FORWARDED.forget()
    for key, value in redelivered[:20]:
        take(roles.on_treatment_answer, key, value)
    assert in_flight() == 0.0
