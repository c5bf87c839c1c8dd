"""A settlement's roles (settlement/): the treatment province takes a hospital's request and
its answer back, the national platform routes it across provinces, the insured province
decides it on the person's row.

    hosp.requests --treatment--> nat.requests --national--> ins.requests --insured--+
         |  (local: straight to ins.requests)                                       |
         +--> hosp.responses <--treatment-- trt.answers <--national-- nat.answers <-+
                                            (local: insured -> trt.answers)
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from functools import partial
from typing import Any

from messages import topics
from messages.codec import decode, encode, encode_to_keep
from messages.codes import ErrorCode
from messages.envelope import answerable_msgid, error_answer
from messages.platform import CROSS, hospital_context, unwrap, wrap_answer, wrap_request
from messages.signing import Signer
from messages.trace import INS_IN, NAT_BACK, NAT_IN, TRT_BACK, Trace
from settlement.insured import InsuredPlatform
from settlement.national import BackToTreatment, NationalPlatform
from settlement.person import PersonRow
from settlement.reference import ReferenceData
from settlement.treatment import (
    MAX_REQUEST_BYTES,
    DeadLetter,
    Forward,
    Held,
    Outcome,
    Reply,
    TreatmentPlatform,
)
from settlement.treatment_row import TreatmentRow
from streams import metrics
from streams.hop_stamps import received, stamp
from streams.log_repeats import RepeatsHeldBack
from streams.record_roles import RecordRoles
from streams.role import MAX_RECORD_BYTES, RoleRunner, Send, decodes, send, stored
from streams.wiring import Wiring

log = logging.getLogger("huimin.streams")
#: A request held for the answer it follows: a line a minute at most, with how many were
#: held back (a soak logged ~10 a minute a worker; huimin_redelivery_waits_total counts them)
held_log = logging.getLogger("huimin.streams.held")
held_log.addFilter(RepeatsHeldBack(window_s=60.0))


class EveryTenSeconds:
    """A log line at most every 10 s, saying how many it stood for."""

    def __init__(self) -> None:
        self.last = -float("inf")
        self.held = 0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < 10:
            self.held += 1
            return False
        self.last = now
        return True

    def since(self) -> str:
        held, self.held = self.held, 0
        return f"; and {held:,} more in the 10 s before" if held else ""


class SettlementRoles:
    def __init__(self, run: RoleRunner, wiring: Wiring, ref: ReferenceData,
                 signer: Signer | None, records: RecordRoles) -> None:
        self.run, self.w, self.signer, self.records = run, wiring, signer, records
        self.treatment = TreatmentPlatform(ref)
        self.national = NationalPlatform(ref)
        self.insured = InsuredPlatform(ref)
        self.forward_to = {"national": wiring.nat_requests, "insured": wiring.ins_requests,
                           "reconciliation": wiring.recon_requests}
        self.misplaced_log = EveryTenSeconds()  # a HIS misplacing keys would flood the log

    def register(self) -> None:
        run, w = self.run, self.w
        run.role(w.hosp_requests, "treatment_requests", self.on_hospital_request,
                 with_headers=True)
        run.role(w.nat_requests, "national_requests", self.on_national_request)
        run.role(w.ins_requests, "insured_requests", self.on_insured_request)
        run.role(w.nat_answers, "national_answers", self.on_national_answer)
        run.role(w.trt_answers, "treatment_answers", self.on_treatment_answer)

    def on_hospital_request(self, key: bytes | None, value: bytes | None,
                            headers: dict[str, bytes], record_ms: int | None) -> list[Send]:
        run, trace = self.run, received(record_ms)
        refusal = (self.treatment.authenticate(self.signer, headers, key, value)
                   if self.signer else None)
        if isinstance(refusal, DeadLetter):  # refused, and no msgid to answer it by
            run.later(metrics.REFUSED.labels(refusal.error_code.value).inc)
            return self._sends(key, value, refusal, trace)
        if refusal is not None:
            run.later(metrics.REFUSED.labels(refusal.answer["err_code"]).inc)
            log.warning("refused a request from %s: %s (%s)", refusal.ctx["fixmedins_code"],
                        refusal.answer["err_code"], run.where(value, topics.HOSP_REQUESTS))
            return [run.to_hospital(refusal.answer, refusal.ctx, trace)]
        if key and (belongs := run.misplaced(key)) is not None:
            return self._misplaced(key, value, belongs, trace)
        cur = stored(self.w.trt_rows, key) if key else None
        before = TreatmentRow.from_dict(decode(cur)) if cur else None
        outcome, row = self.treatment.handle_request(
            key.decode(errors="replace") if key else None, value, before, headers,
            now_ms=time.time_ns() // 1_000_000)
        if not isinstance(outcome, DeadLetter | Held):  # a held one: once it goes ahead
            infno = metrics.infno_label(outcome.ctx.get("infno"))
            run.later(metrics.child(metrics.REQUESTS, infno).inc)
        if isinstance(outcome, Forward) and outcome.to != "reconciliation":
            # answered from the person's partitions, so on this worker (recon.requests has
            # one partition: its answer may leave from another worker)
            run.later(partial(metrics.FORWARDED.forwarded, outcome.ctx["msgid"]))
        put_back = self._put_back(key, row)
        if row is not None:
            run.put(self.w.trt_rows, key, encode_to_keep(row.to_dict()))
        return self._sends(key, value, outcome, trace) + put_back

    def _sends(self, key: bytes | None, value: bytes | None, outcome: Outcome,
               trace: Trace) -> list[Send]:
        """What a hospital request's outcome sends on."""
        run = self.run
        if isinstance(outcome, Reply):
            return [run.to_hospital(outcome.answer, outcome.ctx, trace, repeat=outcome.repeat)]
        if isinstance(outcome, Forward) and outcome.to == "ehr":
            assert key is not None  # a request without a key is dead-lettered
            return self.records.on_request(key, outcome.req, outcome.ctx, trace,
                                           aside=outcome.aside)
        if isinstance(outcome, Forward):
            return [send(self.forward_to[outcome.to], key,
                         encode(wrap_request(outcome.req, outcome.ctx, trace)))]
        if isinstance(outcome, Held):
            held_log.info("treatment_requests: a request waits in its person's row for an "
                          "answer it follows (lost with the row's writes in a restart, or not "
                          "back yet: the hospital did not wait for it) (%s)",
                          run.where(value, topics.HOSP_REQUESTS))
            run.later(metrics.child(metrics.REDELIVERY_WAITS, "treatment").inc)
            return []
        assert isinstance(outcome, DeadLetter)
        return [run.dead_letter(key, value, outcome.error_code.value, outcome.reason,
                                topics.HOSP_REQUESTS)]

    def _misplaced(self, key: bytes, value: bytes | None, belongs: int, trace: Trace
                   ) -> list[Send]:
        """A request on another partition of hosp.requests than its key's: refused before any
        row is read (its person's rows are kept on its key's partition), E1002, saying how
        keys are placed; answered as a request on its partition would be (E1004 if too large;
        dead-lettered if not JSON, E1001, or of no hospital's msgid)."""
        run = self.run
        if value is not None and len(value) > MAX_REQUEST_BYTES:
            return self._sends(key, value, self.treatment.too_large(value), trace)
        if not decodes(value):
            return [run.dead_letter(key, value, ErrorCode.MALFORMED_JSON.value,
                                    "not a JSON object", topics.HOSP_REQUESTS)]
        run.later(metrics.REFUSED.labels(ErrorCode.SCHEMA_VIOLATION.value).inc)  # once, as E1002
        reason = (f"the request is on partition {run.partition} of {topics.HOSP_REQUESTS}, its "
                  f"key's is {belongs}: place a key as Kafka's Java client does (murmur2 of the "
                  "key's bytes, modulo the partitions), as the person's rows are kept there "
                  "(or the topic has more partitions than the platform was started with)")
        if self.misplaced_log.due():
            log.warning("treatment_requests: a request on another partition than its key's "
                        "(%s)%s", run.where(value, topics.HOSP_REQUESTS),
                        self.misplaced_log.since())
        ctx = hospital_context(value, is_request=True)
        if ctx is None or not answerable_msgid(ctx["msgid"]) or \
                not self.treatment.known_sender(ctx["fixmedins_code"]) or \
                not ctx["msgid"].startswith(ctx["fixmedins_code"]):
            return [run.dead_letter(key, value, ErrorCode.SCHEMA_VIOLATION.value, reason,
                                    topics.HOSP_REQUESTS)]
        return [run.to_hospital(error_answer(ctx["msgid"], ErrorCode.SCHEMA_VIOLATION, reason),
                                ctx, trace)]

    def _put_back(self, key: bytes | None, row: TreatmentRow | None) -> list[Send]:
        """The held requests due again (`TreatmentRow.due`, which marks them in the row: so
        before the row is written), put back on `hosp.requests` with their own headers."""
        if row is None or not row.held:
            return []
        due = row.due(time.time_ns() // 1_000_000)
        sends = self._copies(key, [h for h in due if not h.get("given_up")])
        for held in (h for h in due if h.get("given_up")):
            ctx = hospital_context(held["value"].encode(), is_request=True)
            shown = ctx["msgid"] if ctx is not None and answerable_msgid(ctx["msgid"]) else ""
            log.warning("treatment_requests: a held request%s was put back %d times and never "
                        "taken: answered with an error", f" (msgid {shown})" if shown else "",
                        held["puts"])
            if ctx is not None:
                sends.append(self.run.to_hospital(held["answer"], ctx, []))
        return sends

    def _copies(self, key: bytes | None, held: list[dict[str, Any]]) -> list[Send]:
        return [(self.w.hosp_requests, key, h["value"].encode(),
                 {k: v.encode("latin-1") for k, v in h["headers"].items()} or None)
                for h in held]

    def on_national_request(self, key: bytes | None, value: bytes | None) -> list[Send]:
        msg = unwrap(value, "req")
        trace = stamp(msg["trace"], NAT_IN)
        routed = self.national.route(key.decode() if key else "", msg["req"], msg["ctx"])
        if isinstance(routed, BackToTreatment):
            return [send(self.w.trt_answers, key,
                         encode(wrap_answer(routed.answer, routed.ctx, trace)))]
        return [send(self.w.ins_requests, key,
                     encode(wrap_request(routed.req, routed.ctx, trace)))]

    def on_insured_request(self, key: bytes | None, value: bytes | None) -> list[Send]:
        """The insured side, on the person's row, for local requests (from the treatment side)
        and cross-province ones (from the national platform) alike. Local requests come
        through ins.requests too, though the person's rows share a partition: the insured
        side must decide a redelivery from its own row and topic. Answered on the hospital's
        partition instead (12-01), a worker killed after the answer went out and before the
        insured row's changelog write left a settlement the hospital was told of and the
        insured side never kept, once the treatment row had the answer (docs/streams.md)."""
        msg = unwrap(value, "req")
        trace, ctx, req = stamp(msg["trace"], INS_IN), msg["ctx"], msg["req"]
        cur = stored(self.w.ins_rows, key)
        row_in = PersonRow.from_dict(decode(cur)) if cur else None
        answer, row = self.insured.handle(key.decode() if key else "", row_in, req, ctx)
        if row is not None:
            self.run.put(self.w.ins_rows, key, encode_to_keep(row.to_dict()))
        target = self.w.nat_answers if ctx["route"] == CROSS else self.w.trt_answers
        sends = [send(target, key, encode(wrap_answer(answer, ctx, trace)))]
        # also for a replayed request (row unchanged): clearing dedupes by setl_id and event
        event = self.insured.money_event(req, answer, row or row_in, ctx["fixmedins_code"])
        if event is not None:
            sends.append(send(self.w.money_events, event.setl_id.encode(),
                              encode(asdict(event))))
            if row is not None:  # a first, not a replay
                self.run.later(partial(metrics.observe_money, event))
        return sends

    def on_national_answer(self, key: bytes | None, value: bytes | None) -> list[Send]:
        msg = unwrap(value, "ans")
        stamp(msg["trace"], NAT_BACK)
        return [send(self.w.trt_answers, key, encode(msg))]

    def on_treatment_answer(self, key: bytes | None, value: bytes | None) -> list[Send]:
        msg = unwrap(value, "ans")
        trace = stamp(msg["trace"], TRT_BACK)
        cur = stored(self.w.trt_rows, key)
        before = TreatmentRow.from_dict(decode(cur)) if cur else None
        repeat = before is not None and msg["ctx"].get("msgid") in before.answers
        waited = len(before.settling) if before is not None else 0
        row = self.treatment.handle_answer(msg["ans"], msg["ctx"], before)
        if row is not None and len(row.settling) > waited:
            log.info("treatment_answers: a settlement's answer waits for a request its "
                     "person's row lost in a restart (it comes again from hosp.requests)")
            self.run.later(metrics.child(metrics.REDELIVERY_WAITS, "treatment").inc)
        put_back: list[Send] = []
        if repeat and before is not None and before.held:  # see TreatmentRow.on_the_way
            put_back = self._copies(key, before.on_the_way())
        if row is not None:
            put_back = self._put_back(key, row)
            kept = encode_to_keep(row.to_dict())
            size = len(key or b"") + len(kept)  # as `oversized` counts
            if size <= MAX_RECORD_BYTES:
                self.run.put(self.w.trt_rows, key, kept)
            else:  # what it answers was done: the hospital hears of it all the same
                put_back = []  # still held in the row as it was
                log.warning("treatment_answers: a person's row would be %d bytes, over the "
                            "%d a record may hold: left as it was, the answer sent on",
                            size, MAX_RECORD_BYTES)
        return [self.run.to_hospital(msg["ans"], msg["ctx"], trace, repeat=repeat), *put_back]
