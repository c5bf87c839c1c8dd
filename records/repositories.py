"""The source repositories of the health-record exchange (records/exchange.py): each decides
the person's Consent for its province, answers what is permitted, refuses the rest, and
records an AuditEvent for every access and refusal."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from messages.codes import ErrorCode, Infno
from messages.envelope import ok_answer, province_of
from records.audit import REFUSED, SUCCESS, audit_entry, audit_event_of
from records.codes import (
    LAB_BY_CODE,
    PROVINCE_SYSTEM,
)
from records.consent import (
    Decision,
    decide,
    sharing_in_force,
)
from records.documents import fhir_time, uid
from records.exchange import RecordsRow, ehr_error, publish_answer, unpack_document
from records.validation import operation_outcome
from settlement.parameters import DEFAULT_LAB_VALIDITY_DAYS
from settlement.reference import ReferenceData
from settlement.retention import advance, day_cutoff, forget_answers, msgid_stamp


class SourceRepositories:
    """Role 3: each source province decides the person's Consent, answers what it may, and
    audits every access and refusal in the person's record."""

    def __init__(self, ref: ReferenceData) -> None:
        self.ref = ref

    @staticmethod
    def published_under(certno: str, msgid: str, row: RecordsRow) -> bool:
        """Whether `msgid` published a document of the person's (its first answer, then)."""
        return uid(msgid, certno, "docref") in row.docs

    def audit_of(self, certno: str, row: RecordsRow, msgid: str) -> list[dict[str, Any]]:
        """The AuditEvents the person's row keeps of one query (one a source province
        asked): what a redelivered query writes to the trail again, in case the first
        writes were lost."""
        ids = {uid(msgid, certno, "audit", province) for province in self.ref.provinces}
        return [audit_event_of(a) for a in row.audit if a["id"] in ids]

    def handle(self, certno: str, msg: dict[str, Any], row: RecordsRow
               ) -> tuple[dict[str, Any] | None, RecordsRow]:
        """The answer to a query, kept by msgid (within the operating window) so that a
        duplicated or redelivered query gets it again, unchanged, and is audited once.

        None while the row lacks publishes the gateway had stored when the query came by
        it: a worker restarted after a kill takes the query again from `ehr.sources` and the
        lost publish from `hosp.requests`, each at its own pace. Answered then, the query
        would miss the documents, or be decided by the Consent before the one published:
        it waits in the row, and the publish that catches the row up answers it
        (`release`)."""
        req = msg["req"]
        # by the day, as the treatment side refuses what is older (E6003): a query it still
        # lets through finds its answer here; and every hospital's past the person's horizon
        # by the clocks kept here (settlement/retention.py `advance`). Not by a query that
        # went ahead of requests held on the treatment side (`aside`), which left its clock
        # as it was: until they are taken, that side still lets through what is older
        sender = req["fixmedins_code"]
        for before, whose in () if msg.get("aside") else (
                (day_cutoff(req["inf_time"]), sender),
                (advance(row.clocks, sender, req["inf_time"]), "")):
            if before:
                forget_answers(row.answers, before, whose)
                forget_answers(row.waiting, before, whose)
        if self.published_under(certno, req["msgid"], row):
            published = uid(req["msgid"], certno, "docref")
            # the msgid published a document of the person's: its first answer, whatever
            # this asks (DOMAIN.md §4), nothing read and nothing audited
            return publish_answer(req["msgid"], published), row
        seen = row.answers.get(req["msgid"])
        if seen is not None and seen.get("retrieve") is not True:  # True: kept before 12-05
            if "retrieve" in seen:
                return self._retrieved(row, seen["retrieve"], req["msgid"]), row
            return (_rebuilt_find(seen["find"], row) if "find" in seen else seen), row
        if msg.get("docs_held", 0) > len(row.docs):
            row.waiting[req["msgid"]] = msg
            return None, row
        answer = self._answer(certno, msg, row)
        # a document is kept once, in docs: a retrieve's answer is kept by its id, a find's
        # by the ids of the DocumentReferences it gave, as a repeat of the msgid is answered
        # what the first was (a find's whole answer, kept a week, outgrew the row)
        row.answers[req["msgid"]] = {"retrieve": req["input"]["document_id"]} \
            if req["infno"] == Infno.EHR_RETRIEVE and answer["infcode"] == 0 else \
            _kept_find(answer) if req["infno"] == Infno.EHR_FIND else answer
        return answer, row

    def release(self, certno: str, row: RecordsRow
                ) -> list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]:
        """Answer the queries that waited for the publishes the row now holds: (the query,
        its answer, the AuditEvents it recorded) for each, in the order they were sent."""
        released = []
        for msgid in sorted(row.waiting, key=msgid_stamp):
            msg = row.waiting[msgid]
            if msg.get("docs_held", 0) <= len(row.docs):
                del row.waiting[msgid]
                audited = row.audited
                answer, row = self.handle(certno, msg, row)
                assert answer is not None
                released.append((msg, answer, row.audit_since(audited)))
        return released

    @staticmethod
    def _retrieved(row: RecordsRow, document_id: str, msgid: str) -> dict[str, Any]:
        return ok_answer(msgid, unpack_document(row.docs[document_id]["content"]))

    def _answer(self, certno: str, msg: dict[str, Any], row: RecordsRow) -> dict[str, Any]:
        req = msg["req"]
        inp, msgid = req["input"], req["msgid"]
        requester_province = province_of(req["mdtrtarea_admvs"])
        enrollment = self.ref.enrollments.get(certno)
        held_then = row.as_held(msg.get("docs_held"))
        sharing = sharing_in_force(held_then.consents(),
                                   enrollment.ehr_sharing if enrollment else None,
                                   req["inf_time"])
        operation = {Infno.EHR_FIND: "find", Infno.EHR_RETRIEVE: "retrieve",
                     Infno.EHR_LAB_LOOKUP: "lab-lookup"}[req["infno"]]
        permitted: list[tuple[str, Decision]] = []
        refusals: list[tuple[str, Decision]] = []
        asked = msg["sources"]
        held = held_then.docs.get(inp.get("document_id", "")) if operation == "retrieve" \
            else None
        if held is not None:  # decided where the document is, whatever the index said
            asked = [held["province"]]
        # decided and audited even where nothing is held (the search happened), by the
        # requester's own province; what was read is said as it was: nothing, or no document
        nothing_held = not asked
        asked = asked or [requester_province]
        missing = operation == "retrieve" and held is None
        for province in asked:
            decision = decide(sharing, inp["purpose"], requester_province, province)
            (permitted if decision.permitted else refusals).append((province, decision))
            read = decision.permitted and not missing
            row.record_access(audit_entry(
                msgid=msgid, operation=operation, certno=certno,
                requester=req["fixmedins_code"], requester_province=requester_province,
                source_province=province, purpose=inp["purpose"],
                outcome=SUCCESS if read else REFUSED,
                description=decision.reason if not decision.permitted else
                "no such document for this person" if missing else
                "no province holds records for this person: nothing to read" if nothing_held
                else decision.reason,
                recorded=req["inf_time"], document_id=inp.get("document_id", ""),
                break_glass=decision.break_glass))
        allowed = {p for p, _ in permitted}
        if refusals and (not permitted or operation == "retrieve"):
            # a retrieve is refused if any province asked refuses: for a made-up id, what a
            # real one held there would get, so that no one learns which ids exist
            reason = "; ".join(d.reason for _, d in refusals)
            return ehr_error(msgid, ErrorCode.CONSENT_REFUSED, f"refused: {reason}",
                             _refusal_outcome(refusals, "error"))
        if operation == "retrieve":
            if inp["document_id"] not in held_then.docs:
                return ehr_error(msgid, ErrorCode.UNKNOWN_DOCUMENT,
                                 "no such document for this person",
                                 operation_outcome("not-found", "no such document for this "
                                                   "person"))
            return self._retrieved(row, inp["document_id"], msgid)
        if operation == "lab-lookup":
            window = self.ref.lab_validity_days.get(requester_province,
                                                    DEFAULT_LAB_VALIDITY_DAYS)
            return ok_answer(msgid, _reusable(held_then, inp["loinc"], req["inf_time"],
                                              window, allowed, refusals))
        read_past = [(p, d) for p, d in permitted if d.break_glass]
        return ok_answer(msgid, _searchset(held_then, inp, allowed, refusals, read_past))


def _kept_find(answer: dict[str, Any]) -> dict[str, Any]:
    """A find's answer as the row keeps it: each DocumentReference it gave by its id (the
    repository holds it, unchanged, in docs); a refusal as it was."""
    out = answer.get("output")
    if answer["infcode"] != 0 or not isinstance(out, dict) or out.get("type") != "searchset":
        return answer
    entries = [{"docref": e["resource"]["id"]} if e["search"]["mode"] == "match" else e
               for e in out.get("entry", [])]
    return {"find": {**answer, "output": {**out, "entry": entries}}}


def _rebuilt_find(kept: dict[str, Any], row: RecordsRow) -> dict[str, Any]:
    """The find's answer again, as it was first given (`_kept_find`)."""
    out = kept["output"]
    entries = [{"fullUrl": f"DocumentReference/{e['docref']}",
                "resource": row.docs[e["docref"]]["docref"], "search": {"mode": "match"}}
               if "docref" in e else e for e in out["entry"]]
    return {**kept, "output": searchset_bundle(out["total"], entries)}


def _refusal_outcome(refusals: list[tuple[str, Any]],
                     severity: str = "warning") -> dict[str, Any]:
    """The sources whose consent refused: an `error` where that is the whole answer (E5002),
    a `warning` beside what the other sources gave (a searchset's outcome entry)."""
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": severity, "code": "forbidden", "diagnostics": d.reason,
         "details": {"coding": [{"system": PROVINCE_SYSTEM, "code": p}]}}
        for p, d in refusals]}


def _searchset(row: RecordsRow, inp: dict[str, Any], allowed: set[str],
               refusals: list[tuple[str, Any]],
               read_past: list[tuple[str, Any]]) -> dict[str, Any]:
    """ITI-67: the DocumentReferences of the permitted sources, newest first, filtered by
    type (a LOINC code) and date (from); refused sources named in an OperationOutcome, and
    the sources an emergency read past the consent of (break-the-glass, audited) too: the
    clinician is told, as emergency access works in practice."""
    matches = []
    for doc in row.docs.values():
        ref = doc["docref"]
        if doc["province"] not in allowed:
            continue
        if inp.get("type") and inp["type"] not in {c.get("code") for c in
                                                   (ref["type"].get("coding") or [])}:
            continue
        if inp.get("date_from") and ref["date"][:10] < inp["date_from"]:
            continue
        matches.append(ref)
    matches.sort(key=lambda r: (r["date"], r["id"]), reverse=True)
    entries: list[dict[str, Any]] = [{"fullUrl": f"DocumentReference/{r['id']}", "resource": r,
                                      "search": {"mode": "match"}} for r in matches]
    if refusals or read_past:
        outcome = _refusal_outcome(refusals)
        outcome["issue"] += [
            {"severity": "information", "code": "informational", "diagnostics": d.reason,
             "details": {"coding": [{"system": PROVINCE_SYSTEM, "code": p}]}}
            for p, d in read_past]
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    return searchset_bundle(len(matches), entries)


def searchset_bundle(total: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A searchset Bundle; without `entry` when nothing matched (FHIR JSON has no empty
    arrays: ele-1)."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total}
    if entries:
        bundle["entry"] = entries
    return bundle


def _reusable(row: RecordsRow, codes: list[str], inf_time: str, window_days: int,
              allowed: set[str], refusals: list[tuple[str, Any]]) -> dict[str, Any]:
    """For each asked LOINC code, the newest result within the validity window (the asking
    hospital's province's) from a permitted source, if any: the test need not be repeated
    (检查检验结果互认)."""
    now = datetime.fromisoformat(fhir_time(inf_time))
    since = now - timedelta(days=window_days)
    best: dict[str, dict[str, Any]] = {}
    for lab in row.labs:
        if lab["loinc"] not in codes or lab["province"] not in allowed:
            continue
        try:
            t = datetime.fromisoformat(lab["time"])
        except ValueError:
            continue
        if t.tzinfo is None or not since <= t <= now:
            continue
        if lab["loinc"] not in best or t > datetime.fromisoformat(best[lab["loinc"]]["time"]):
            best[lab["loinc"]] = lab
    reusable = [{**best[c], "saving": LAB_BY_CODE[c].price if c in LAB_BY_CODE else 0}
                for c in sorted(best)]
    out: dict[str, Any] = {"window_days": window_days, "reusable": reusable}
    if refusals:
        out["refused"] = _refusal_outcome(refusals)
    return out
