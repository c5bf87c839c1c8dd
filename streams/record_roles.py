"""The health-record exchange's roles (records/exchange.py): the provincial gateway, the
national index and the source repositories, with the audit trail they write."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from messages.codec import decode, encode, encode_to_keep
from messages.envelope import province_of
from messages.platform import NotPlatformMessage, unwrap, wrapped
from messages.trace import INS_IN, NAT_IN
from records.audit import audit_event_of
from records.exchange import EhrAnswer, IndexRow, RecordsRow
from records.gateway import ProvincialGateway
from records.national_index import NationalIndex
from records.repositories import SourceRepositories
from settlement.reference import ReferenceData
from streams import metrics
from streams.hop_stamps import stamp
from streams.role import RoleRunner, Send, send, stored
from streams.wiring import Wiring

log = logging.getLogger(__name__)


class RecordRoles:
    def __init__(self, run: RoleRunner, wiring: Wiring, ref: ReferenceData) -> None:
        self.run, self.w = run, wiring
        self.gateway, self.index = ProvincialGateway(), NationalIndex()
        self.sources = SourceRepositories(ref)

    def register_index_and_sources(self) -> None:
        """The gateway is no agent of its own: the treatment side hands it a 7001–7003
        (`on_request`) on the person's partition."""
        self.run.role(self.w.ehr_national, "ehr_index", self.on_national)
        self.run.role(self.w.ehr_sources, "ehr_sources", self.on_sources)

    def records_row(self, key: bytes | None) -> RecordsRow:
        cur = stored(self.w.ehr_records, key)
        return RecordsRow.from_dict(decode(cur) if cur else None)

    def on_request(self, key: bytes, req: dict[str, Any], ctx: dict[str, Any],
                   trace: list, aside: bool = False) -> list[Send]:
        """The provincial platform's part of the record exchange (`aside`: see
        `Forward.aside`)."""
        steps, row = self.gateway.handle(key.decode(), req, ctx, self.records_row(key),
                                         aside)
        released: list[Send] = []
        if row is not None:
            for query, answer, events in self.sources.release(key.decode(), row):
                # a redelivery: its first answer was given before the restart
                released += self.answered(key, query, answer, events, query["trace"],
                                          repeat=True)
            self.run.put(self.w.ehr_records, key, encode_to_keep(row.to_dict()))
            self.run.later(metrics.EHR_PUBLISHED.labels(
                metrics.province_label(province_of(req["mdtrtarea_admvs"]))).inc)
        return [self.run.to_hospital(step.answer, ctx, trace, repeat=step.repeat)
                if isinstance(step, EhrAnswer)
                else send(self.w.ehr_national, key,
                          encode({**step.msg, "ctx": ctx, "trace": trace}))
                for step in steps] + released

    def on_national(self, key: bytes | None, value: bytes | None) -> list[Send]:
        msg = unwrap(value)
        trace = stamp(msg["trace"], NAT_IN)
        cur = stored(self.w.ehr_index, key)
        result, row = self.index.handle(msg, IndexRow.from_dict(decode(cur) if cur else None))
        if row is not None:
            self.run.put(self.w.ehr_index, key, encode_to_keep(row.to_dict()))
        if result is None:
            return []
        if isinstance(result, EhrAnswer):
            return [self.run.to_hospital(result.answer, msg["ctx"], trace)]
        return [send(self.w.ehr_sources, key, encode({**result, "trace": trace}))]

    def on_sources(self, key: bytes | None, value: bytes | None) -> list[Send]:
        msg = decode(value)
        if msg.get("op") == "audit":  # a read through the FHIR views (streams/fhir_views.py)
            row = self.records_row(key)
            audited = row.audited
            # "event": the whole AuditEvent, as the views sent it before 2026-12-07
            entry = msg["entry"] if "entry" in msg else msg["event"]
            try:  # made once before the row keeps it: its view would fail on it for ever
                event = audit_event_of(entry)
            except (KeyError, TypeError, ValueError) as exc:
                raise NotPlatformMessage(f"an access to audit as no view writes one "
                                         f"({type(exc).__name__})") from None
            row.record_access(entry)
            row.operator_audited += row.audited - audited
            self.run.put(self.w.ehr_records, key, encode_to_keep(row.to_dict()))
            self.run.later(partial(metrics.observe_audit, row.audit_since(audited)))
            # a redelivery finds it recorded: written again, as its first write may be lost
            return self.audit_trail(key, [event])
        trace = stamp(wrapped(msg, "req")["trace"], INS_IN)
        row = self.records_row(key)
        msgid = msg["req"]["msgid"]
        # answered before: a query's answer kept, or a publish's under its msgid
        audited, waited = row.audited, msgid in row.waiting
        certno = key.decode() if key else ""
        repeated = msgid in row.answers or self.sources.published_under(certno, msgid, row)
        answer, row = self.sources.handle(certno, msg, row)
        if repeated and answer is not None:  # a duplicate or a redelivery changes nothing
            # and counts once; its AuditEvents go to the trail again, as the first writes
            # may be lost
            return [self.run.to_hospital(answer, msg["ctx"], trace, repeat=True),
                    *self.audit_trail(key, self.sources.audit_of(certno, row, msgid))]
        self.run.put(self.w.ehr_records, key, encode_to_keep(row.to_dict()))
        if answer is None:
            if not waited:  # a duplicate of a waiting query waits with it
                log.info("ehr_sources: a query waits for a publish its person's row lost in "
                         "a restart (it comes again from hosp.requests)")
                self.run.later(metrics.child(metrics.REDELIVERY_WAITS, "records").inc)
            return []
        return self.answered(key, msg, answer, row.audit_since(audited), trace)

    def answered(self, key: bytes | None, msg: dict[str, Any], answer: dict[str, Any],
                 events: list[dict[str, Any]], trace: list,
                 repeat: bool = False) -> list[Send]:
        """A query decided now (not answered from the answer the row kept): to the
        hospital, its accesses to the trail."""
        self.run.later(partial(metrics.observe_ehr, msg["req"]["infno"], answer, events))
        return [self.run.to_hospital(answer, msg["ctx"], trace, repeat=repeat),
                *self.audit_trail(key, events)]

    def audit_trail(self, key: bytes | None, events: list[dict[str, Any]]) -> list[Send]:
        """Each AuditEvent recorded, to the trail of record. A redelivered or duplicated
        access writes its events again, with the same ids: readers keep one of each."""
        return [send(self.w.ehr_audit, key, encode(event)) for event in events]
