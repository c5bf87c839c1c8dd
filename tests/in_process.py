"""The platform's roles wired in process, with topics and tables that are plain objects: for
tests that hand messages to the roles one by one, as one worker holding every partition
would take them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from messages import topics
from streams.role import RoleRunner
from streams.wiring import Wiring


@dataclass(frozen=True)
class Topic:
    name: str

    def get_topic_name(self) -> str:
        return self.name


@dataclass
class Table:
    data: dict[bytes, bytes] = field(default_factory=dict)


def in_process_wiring() -> Wiring:
    return Wiring(**{name: Topic(topic) for name, topic in (
        ("hosp_requests", topics.HOSP_REQUESTS), ("nat_requests", topics.NAT_REQUESTS),
        ("ins_requests", topics.INS_REQUESTS), ("nat_answers", topics.NAT_ANSWERS),
        ("trt_answers", topics.TRT_ANSWERS), ("hosp_responses", topics.HOSP_RESPONSES),
        ("dead_letters", topics.DEAD_LETTERS), ("money_events", topics.MONEY_EVENTS),
        ("recon_requests", topics.RECON_REQUESTS), ("ehr_national", topics.EHR_NATIONAL),
        ("ehr_sources", topics.EHR_SOURCES), ("ehr_audit", topics.EHR_AUDIT))},
        **{name: Table() for name in ("trt_rows", "ins_rows", "ehr_index", "ehr_records",
                                      "clearing_events", "recon_answers")})


def taken(run: RoleRunner, handler: Any, *event: Any) -> list[Any]:
    """What a role sends for one event, its table writes and effects carried out (as the
    worker does once the event's sends are written)."""
    run.writes.clear()
    run.effects.clear()
    sends = handler(*event)
    for table, key, value in run.writes:
        table.data[key] = value
    for effect in run.effects:
        effect()
    return sends
