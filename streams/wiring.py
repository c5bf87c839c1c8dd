"""A worker's topics and tables, declared once on its Faust app: every role reads and writes
raw bytes (orjson), never Faust Records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from messages import topics
from streams.config import CLEARING_TABLE, RECON_TABLE, table_options


@dataclass(frozen=True)
class Wiring:
    hosp_requests: Any
    nat_requests: Any
    ins_requests: Any
    nat_answers: Any
    trt_answers: Any
    hosp_responses: Any
    dead_letters: Any
    money_events: Any  # one partition: national clearing sees every money event
    recon_requests: Any  # one partition, beside it
    ehr_national: Any
    ehr_sources: Any
    ehr_audit: Any
    trt_rows: Any  # the treatment province's person rows
    ins_rows: Any  # the insured province's
    ehr_index: Any
    ehr_records: Any
    clearing_events: Any
    recon_answers: Any

    @classmethod
    def declare(cls, app: Any, partitions: int, store: str) -> Wiring:
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
               "value_serializer": "raw", "partitions": partitions}
        table = {"key_type": bytes, "value_type": bytes, "default": None,
                 **table_options(store)}

        def topic(name: str, partitions: int = partitions) -> Any:
            return app.topic(name, **{**raw, "partitions": partitions})

        return cls(
            hosp_requests=topic(topics.HOSP_REQUESTS), nat_requests=topic(topics.NAT_REQUESTS),
            ins_requests=topic(topics.INS_REQUESTS), nat_answers=topic(topics.NAT_ANSWERS),
            trt_answers=topic(topics.TRT_ANSWERS), hosp_responses=topic(topics.HOSP_RESPONSES),
            dead_letters=topic(topics.DEAD_LETTERS),
            money_events=topic(topics.MONEY_EVENTS, 1),
            recon_requests=topic(topics.RECON_REQUESTS, 1),
            ehr_national=topic(topics.EHR_NATIONAL), ehr_sources=topic(topics.EHR_SOURCES),
            ehr_audit=topic(topics.EHR_AUDIT),
            trt_rows=app.Table("trt_persons", partitions=partitions, **table),
            ins_rows=app.Table("ins_persons", partitions=partitions, **table),
            ehr_index=app.Table("ehr_index", partitions=partitions, **table),
            ehr_records=app.Table("ehr_records", partitions=partitions, **table),
            clearing_events=app.Table(CLEARING_TABLE, partitions=1, **table),
            recon_answers=app.Table(RECON_TABLE, partitions=1, **table),
        )

    def inward(self) -> list[Any]:
        """The topics the roles take events from."""
        return [self.hosp_requests, self.nat_requests, self.ins_requests, self.nat_answers,
                self.trt_answers, self.money_events, self.recon_requests, self.ehr_national,
                self.ehr_sources]
