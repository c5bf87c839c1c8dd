"""The health-record exchange (DOMAIN.md §6) as three pure roles, each keyed by the person:

1. the requesting hospital's **provincial platform** (7001–7004 arrive with the hospital's
   other requests): a publish (7001, IHE MHD ITI-65) is validated at this ingress, stored in
   the province's repository and registered (DocumentReference), and the national index is told
   where the person's documents are; find (7002, ITI-67), retrieve (7003, ITI-68) and lab-result
   lookup (7004) go on to the national platform;
2. the **national index** knows which provinces hold documents for the person (and which holds
   each document) and sends the query on to those sources;
3. the **source repositories** decide the person's Consent for each source province, answer
   with what is permitted, refuse the rest (OperationOutcome) and record an AuditEvent for
   every access and every refusal in the person's record.

The same functions answer for the streamed platform and for the offline oracle.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

import orjson

from messages.codes import ErrorCode, Infno
from messages.envelope import error_answer, ok_answer, province_of
from records.audit import REFUSED, SUCCESS, audit_event
from records.codes import (
    CERTNO_SYSTEM,
    FIXMEDINS_SYSTEM,
    LAB_BY_CODE,
    LOINC,
    PROVINCE_SYSTEM,
)
from records.consent import (
    Decision,
    SeveralConsents,
    decide,
    published_consent,
    sharing_in_force,
)
from records.documents import fhir_time, uid
from records.validation import InvalidResource, Validator, operation_outcome
from settlement.parameters import DEFAULT_LAB_VALIDITY_DAYS
from settlement.reference import ReferenceData
from settlement.retention import advance, day_cutoff, forget_answers, msgid_stamp

#: The AuditEvents a person's row keeps, newest last: for the person's `/fhir/AuditEvent`
#: view and for telling a repeated access. Every one is also written to `ehr.audit`, the
#: trail of record; a row that kept them all would outgrow a Kafka record after ~800
#: accesses (an operator's view polled, say), and the person's records would then be refused.
AUDIT_KEPT = 100
#: What a person's documents and lab index may come to, encoded: a publish past it is
#: refused (E5004), not stored. Their row is one Kafka record, under the ~900,000 bytes a
#: role writes (streams/role.py), with room for what accesses add: the latest AUDIT_KEPT
#: AuditEvents (~130 KB at most) and a week's answers, a find's kept by its documents' ids.
#: Past that the publish used to be taken in and its row refused as an internal error
#: (E9002).
PERSON_RECORDS_BYTES = 600_000
#: The longest identifier system or value a published Patient may give: each is kept in the
#: national index's row for the person, and a longer one cannot be looked up anyway (the
#: views take URLs of up to 8,190 bytes).
IDENTIFIER_CHARS = 1024


@dataclass
class RecordsRow:
    """A person's records in the provincial repositories (each document says which province
    holds it), the lab results indexed from them, and the latest AuditEvents of the accesses
    (all of them are counted, and written to `ehr.audit`)."""

    docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> province, docref, content
    labs: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)  # the last AUDIT_KEPT
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # msgid -> its answer
    audited: int = 0  # AuditEvents ever recorded for the person
    refusals_audited: int = 0  # of which refusals
    #: of which the platform operator's reads through the FHIR views (not the hospitals')
    operator_audited: int = 0
    #: the Consent the person published last (records/consent.py), None if none: it
    #: replaces the register's
    consent: dict[str, str] | None = None
    #: msgid -> a query that came to the sources before the publishes it was asked after
    #: (`SourceRepositories.handle`); nearly always empty
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: fixmedins_code -> the day of its newest query the sources were asked for the person
    #: (settlement/retention.py `advance`): what forgets their answers
    clocks: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"docs": self.docs, "labs": self.labs, "audit": self.audit,
             "answers": self.answers, "audited": self.audited,
             "refusals_audited": self.refusals_audited}
        if self.operator_audited:  # rows no operator read stay as they were
            d["operator_audited"] = self.operator_audited
        if self.consent is not None:  # rows of persons who never published one stay as they were
            d["consent"] = self.consent
        if self.waiting:
            d["waiting"] = self.waiting
        if self.clocks:
            d["clocks"] = self.clocks
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RecordsRow:
        if not d:
            return cls()
        row = cls(**d)
        if "audited" not in d:  # a row written before the counts were kept: it held them all
            row.audited = len(row.audit)
            row.refusals_audited = sum(a["outcome"] != SUCCESS for a in row.audit)
        return row

    def as_held(self, docs_held: int | None) -> RecordsRow:
        """The person's records as a query found them, asked after the first `docs_held`
        documents were published: those, the lab results from them and the Consent the
        person published among them (the audit is not in it: it is recorded on the row).
        A restarted worker can take a query again after publishes that came after it, the
        row having lost the query's answer: it is decided as it was the first time."""
        if docs_held is None or docs_held >= len(self.docs):
            return self
        docs = dict(islice(self.docs.items(), docs_held))
        if any("consent" in d for d in self.docs.values()):
            consents = [d["consent"] for d in docs.values() if "consent" in d]
            consent = consents[-1] if consents else None
        else:  # kept before each document noted its Consent: the last one is all there is
            consent = self.consent
        return RecordsRow(docs=docs, labs=[lab for lab in self.labs if lab.get("doc_id") in docs],
                          consent=consent)

    def consents(self) -> list[dict[str, str]]:
        """The Consents the person published, oldest first (rows kept before each document
        noted its Consent hold only the last)."""
        noted = [d["consent"] for d in self.docs.values() if "consent" in d]
        return noted or ([self.consent] if self.consent is not None else [])

    def record_access(self, event: dict[str, Any]) -> None:
        """Once per access: a duplicated query is the same access (its id is its msgid's)."""
        if any(a["id"] == event["id"] for a in self.audit[-20:]):
            return
        self.audit.append(event)
        del self.audit[:-AUDIT_KEPT]
        self.audited += 1
        self.refusals_audited += event["outcome"] != SUCCESS

    def audit_since(self, audited: int) -> list[dict[str, Any]]:
        """The AuditEvents recorded since the row counted `audited` (at most AUDIT_KEPT: one
        access records one a source province)."""
        new = self.audited - audited
        return self.audit[-new:] if new > 0 else []


@dataclass
class IndexRow:
    """The national index entry of a person: where their documents are, and the other
    identifiers publishers gave for them (the identifier cross-reference)."""

    docs: dict[str, str] = field(default_factory=dict)  # document id -> province
    identifiers: list[dict[str, str]] = field(default_factory=list)

    @property
    def provinces(self) -> list[str]:
        return sorted(set(self.docs.values()))

    def to_dict(self) -> dict[str, Any]:
        return {"docs": self.docs, "identifiers": self.identifiers}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> IndexRow:
        return cls(**d) if d else cls()


@dataclass(frozen=True, slots=True)
class EhrAnswer:
    answer: dict[str, Any]
    repeat: bool = False  # the msgid's first answer, given again


@dataclass(frozen=True, slots=True)
class ToNational:
    """A query on its way to the national index, or a registration for it."""

    msg: dict[str, Any]


Step = EhrAnswer | ToNational


def ehr_error(msgid: str, code: ErrorCode, message: str,
              outcome: dict[str, Any] | None = None) -> dict[str, Any]:
    ans = error_answer(msgid, code, message)
    ans["output"] = outcome or operation_outcome(
        "forbidden" if code == ErrorCode.CONSENT_REFUSED else "processing", message)
    return ans


def _resources(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The resource and, for a Bundle, every resource inside it (depth first)."""
    return [item for _, item in _with_paths(resource, "")]


#: Where a resource names the person it is about by reference (Observation.subject,
#: Encounter.subject, Coverage.beneficiary, AllergyIntolerance.patient, Task.for,
#: DocumentReference.context.sourcePatientInfo; Account.subject is a list).
_ABOUT = ("subject", "patient", "beneficiary", "for", "sourcePatientInfo")


def _certnos(resource: dict[str, Any]) -> set[str]:
    """The citizen ID numbers of every person the resource is about: its Patients', wherever
    they are (in a Bundle, `contained`), and those its references to a subject name by
    identifier. A document filed under one person must be about that person only."""
    found: set[str] = set()
    todo: list[Any] = [resource]
    while todo:
        item = todo.pop()
        if isinstance(item, list):
            todo.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        named = [i for i in item.get("identifier") or [] if isinstance(i, dict)] \
            if item.get("resourceType") == "Patient" and isinstance(item.get("identifier"), list) \
            else []
        for k in _ABOUT:
            refs = item.get(k) if isinstance(item.get(k), list) else [item.get(k)]
            named += [r["identifier"] for r in refs
                      if isinstance(r, dict) and isinstance(r.get("identifier"), dict)]
        found.update(str(i["value"]) for i in named
                     if i.get("system") == CERTNO_SYSTEM and i.get("value"))
        todo.extend(v for v in item.values() if isinstance(v, dict | list))
    return found


def pack_document(content: dict[str, Any]) -> str:
    """A document as the repository keeps it in the person's row: its JSON, deflated and
    base64-encoded (a row is rewritten whole on every change; documents compress ~4×)."""
    return base64.b64encode(zlib.compress(orjson.dumps(content), 6)).decode()


def unpack_document(packed: str) -> dict[str, Any]:
    return orjson.loads(document_bytes(packed))


def document_bytes(packed: str) -> bytes:
    return zlib.decompress(base64.b64decode(packed))


class ProvincialGateway:
    """Role 1: the requesting hospital's provincial platform."""

    def __init__(self, validator: Validator | None = None) -> None:
        self.validator = validator or Validator()

    def handle(self, certno: str, req: dict[str, Any], ctx: dict[str, Any],
               row: RecordsRow) -> tuple[list[Step], RecordsRow | None]:
        msgid, inp = req["msgid"], req["input"]
        if req["infno"] != Infno.EHR_PUBLISH:  # with what the repositories held as it came
            return [ToNational({"op": "query", "req": req, "ctx": ctx,
                                "docs_held": len(row.docs)})], None
        if msgid in row.answers:  # a find, retrieve or lookup of the person's used it
            return [EhrAnswer(ehr_error(
                msgid, ErrorCode.MSGID_REUSED, "this msgid was a query's before (7002, 7003 "
                "or 7004): a request needs a msgid of its own"))], None
        resource = inp.get("resource")
        if (refusal := document_refusal(self.validator, resource)) is not None:
            return [EhrAnswer(ehr_error(msgid, ErrorCode.INVALID_FHIR, *refusal))], None
        if _certnos(resource) - {certno}:
            return [EhrAnswer(ehr_error(msgid, ErrorCode.PERSON_MISMATCH,
                                        "the document's Patient is another person than the "
                                        "message key"))], None
        province = province_of(req["mdtrtarea_admvs"])
        doc_id = uid(msgid, certno, "docref")  # a msgid another person's publish used is
        # another document: the same msgid is a duplicate only for the same person
        stored = row.docs.get(doc_id)
        content, docref = _document_and_reference(resource, doc_id, certno, req, province)
        if stored is not None:
            kept = unpack_document(stored["content"])
            if kept != content:  # not a duplicate: a msgid sent again with another document
                return [EhrAnswer(ehr_error(
                    msgid, ErrorCode.MSGID_REUSED, "this msgid published another document "
                    "before: a request needs a msgid of its own"))], None
            # a duplicate publish: the same answer, nothing stored twice; the registration
            # goes again, since a crash may have kept this row and lost it (the index takes
            # a registration twice as once)
            register = _registration(doc_id, stored["province"], kept)
            return [EhrAnswer(_publish_answer(msgid, doc_id), repeat=True),
                    ToNational(register)], None
        try:
            consent = published_consent(_resources(resource), certno, req["inf_time"])
        except SeveralConsents as exc:
            return [EhrAnswer(ehr_error(msgid, ErrorCode.INVALID_FHIR, f"not valid here: {exc}",
                                        operation_outcome("not-supported", str(exc))))], None
        held = {"province": province, "docref": docref, "content": pack_document(content)}
        labs = _labs(content, province, doc_id)
        # what publishes alone change, so that the oracle and the platform refuse alike
        # whatever queries and operator reads came between
        size = len(orjson.dumps([row.docs, row.labs, row.consent, held, labs]))
        if size > PERSON_RECORDS_BYTES:
            before = len(orjson.dumps([row.docs, row.labs, row.consent, None, []]))
            full = (f"the person's documents and lab index would come to {size:,} bytes with "
                    f"this document ({before:,} before it, deflated), over the "
                    f"{PERSON_RECORDS_BYTES:,} a person's records may hold")
            return [EhrAnswer(ehr_error(msgid, ErrorCode.RECORDS_FULL, full,
                                        operation_outcome("too-costly", full)))], None
        row.docs[doc_id] = held
        if consent is not None:  # the person's choice from now on, wherever records are held
            row.consent = row.docs[doc_id]["consent"] = consent  # the document's: `as_held`
        row.labs += labs
        register = _registration(doc_id, province, content)
        return [EhrAnswer(_publish_answer(msgid, doc_id)), ToNational(register)], row


def document_refusal(validator: Validator, resource: Any) -> tuple[str, dict[str, Any]] | None:
    """Why a 7001's document is refused as FHIR (E5001): its err_msg and OperationOutcome;
    None if it is taken. `huimin check-fhir` asks the same, so the two cannot drift apart
    (whose Patient it is, against the message key, is checked apart)."""
    try:
        validator.validate(resource)
    except InvalidResource as exc:
        return f"not valid FHIR R4: {exc}", exc.outcome
    if (too_long := identifier_too_long(resource)) is not None:
        return (f"not valid here: an identifier over {IDENTIFIER_CHARS:,} characters",
                operation_outcome("too-long", f"over {IDENTIFIER_CHARS:,} characters",
                                  too_long))
    return None


def identifier_too_long(resource: dict[str, Any]) -> str | None:
    """The path of the first Patient identifier whose system or value is over
    IDENTIFIER_CHARS (`Bundle.entry[2].resource.identifier[0].value`), or None."""
    for where, item in _with_paths(resource, str(resource.get("resourceType"))):
        if item.get("resourceType") != "Patient" or not isinstance(item.get("identifier"), list):
            continue
        for j, ident in enumerate(item["identifier"]):
            for part in ("system", "value"):
                if isinstance(ident, dict) and len(str(ident.get(part) or "")) > IDENTIFIER_CHARS:
                    return f"{where}.identifier[{j}].{part}"
    return None


def _with_paths(resource: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    """`_resources`, each with its path, as the validator names them."""
    out = [(path, resource)]
    if resource.get("resourceType") == "Bundle":
        for i, entry in enumerate(resource.get("entry") or []):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                out += _with_paths(entry["resource"], f"{path}.entry[{i}].resource")
    return out


def _registration(doc_id: str, province: str, content: dict[str, Any]) -> dict[str, Any]:
    """What the national index keeps of a published document: where it is, and the
    Patient's other identifiers (not the certno, which is the key)."""
    identifiers = [i for r in _resources(content) if r["resourceType"] == "Patient"
                   for i in r.get("identifier") or []
                   if isinstance(i, dict) and i.get("system") and i.get("value")
                   and i.get("system") != CERTNO_SYSTEM]
    return {"op": "register", "doc_id": doc_id, "province": province,
            "identifiers": [{"system": i["system"], "value": i["value"]} for i in identifiers]}


def _publish_answer(msgid: str, doc_id: str) -> dict[str, Any]:
    return ok_answer(msgid, {"resourceType": "Bundle", "type": "transaction-response",
                             "entry": [{"response": {"status": "201 Created",
                                                     "location": f"DocumentReference/{doc_id}"}}]})


def _document_and_reference(resource: dict[str, Any], doc_id: str, certno: str,
                            req: dict[str, Any], province: str
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ITI-65 transaction gives its DocumentReference and the document it points at;
    anything else (a document, batch or collection Bundle, a single resource) is the content
    itself, and the repository writes its DocumentReference."""
    given: dict[str, Any] | None = None
    content = resource
    if resource["resourceType"] == "Bundle" and resource.get("type") == "transaction":
        entries = [e for e in resource.get("entry") or [] if isinstance(e.get("resource"), dict)]
        refs = [e["resource"] for e in entries
                if e["resource"]["resourceType"] == "DocumentReference"]
        for ref in refs:
            url = (ref.get("content") or [{}])[0].get("attachment", {}).get("url")
            doc = next((e["resource"] for e in entries if e.get("fullUrl") == url), None)
            if doc is not None:
                given, content = ref, doc
                break
    kind = content["resourceType"]
    doc_type = (given or {}).get("type")
    if doc_type is None and kind == "Bundle" and content.get("type") == "document":
        first = (content.get("entry") or [{}])[0].get("resource") or {}
        doc_type = first.get("type")  # the Composition's CodeableConcept (bdl-11, validated)
    elif doc_type is None and kind == "Composition":  # published alone: its own type
        doc_type = content.get("type")
    docref = {
        "resourceType": "DocumentReference", "id": doc_id,
        "masterIdentifier": (given or {}).get("masterIdentifier") or {
            "system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{doc_id}"},
        "status": "current",
        "type": doc_type or {"text": content.get("type", kind) if kind == "Bundle" else kind},
        "subject": {"identifier": {"system": CERTNO_SYSTEM, "value": certno}},
        "date": fhir_time(req["inf_time"]),
        "author": [{"identifier": {"system": FIXMEDINS_SYSTEM,
                                   "value": req["fixmedins_code"]}}],
        "custodian": {"identifier": {"system": PROVINCE_SYSTEM, "value": province}},
        "content": [{"attachment": {"contentType": "application/fhir+json",
                                    "url": f"{kind}/{doc_id}"}}]}
    return content, docref


def _lab_time(observation: dict[str, Any]) -> str | None:
    """When a lab result was taken, as a time with its zone: `effectiveDateTime` or
    `effectiveInstant`, else the end (or start) of `effectivePeriod`; a date alone is taken
    as its first moment in Beijing time (the earliest it can be, so never reused past its
    window). None for a result with no time, or only a month or year."""
    period = observation.get("effectivePeriod")
    period = period if isinstance(period, dict) else {}
    for value in (observation.get("effectiveDateTime"), observation.get("effectiveInstant"),
                  period.get("end"), period.get("start")):
        if isinstance(value, str) and len(value) > 10:
            return value
        if isinstance(value, str) and len(value) == 10:
            return f"{value}T00:00:00+08:00"
        if value is not None:
            return None
    return None


def _labs(content: dict[str, Any], province: str, doc_id: str) -> list[dict[str, Any]]:
    """LOINC lab results with a time and a quantity: what other hospitals may reuse."""
    out = []
    for r in _resources(content):
        if r["resourceType"] != "Observation" or (when := _lab_time(r)) is None:
            continue
        quantity = r.get("valueQuantity") or {}
        for coding in (r.get("code") or {}).get("coding") or []:
            if coding.get("system") == LOINC and "value" in quantity:
                out.append({"loinc": coding.get("code"), "time": when,
                            "province": province, "doc_id": doc_id,
                            "value": quantity["value"], "unit": quantity.get("unit", "")})
    return out


class NationalIndex:
    """Role 2: where each person's documents are; queries go on to their sources."""

    def handle(self, msg: dict[str, Any], row: IndexRow
               ) -> tuple[EhrAnswer | dict[str, Any] | None, IndexRow | None]:
        """A registration updates the row (and answers nothing); a query returns either an
        answer (nothing to ask) or the message for the sources, with `sources` added."""
        if msg["op"] == "register":
            row.docs[msg["doc_id"]] = msg["province"]
            for ident in msg["identifiers"]:
                if ident not in row.identifiers:
                    row.identifiers.append(ident)
            return None, row
        req = msg["req"]
        if req["infno"] == Infno.EHR_RETRIEVE:
            province = row.docs.get(req["input"]["document_id"])
            if province is not None:
                return {**msg, "sources": [province]}, None
            # an id the index does not know is decided and audited as the person's records
            # are: an answer before consent would tell anyone which documents exist
        return {**msg, "sources": row.provinces}, None


class SourceRepositories:
    """Role 3: each source province decides the person's Consent, answers what it may, and
    audits every access and refusal in the person's record."""

    def __init__(self, ref: ReferenceData) -> None:
        self.ref = ref

    @staticmethod
    def published_under(certno: str, msgid: str, row: RecordsRow) -> bool:
        """Whether `msgid` published a document of the person's (its first answer, then)."""
        return uid(msgid, certno, "docref") in row.docs

    def audit_of(self, row: RecordsRow, msgid: str) -> list[dict[str, Any]]:
        """The AuditEvents the row keeps of one query (one a source province asked): what a
        redelivered query writes to the trail again, in case the first writes were lost."""
        ids = {uid(msgid, "audit", province) for province in self.ref.provinces}
        return [a for a in row.audit if a["id"] in ids]

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
        # by the clocks kept here (settlement/retention.py `advance`)
        sender = req["fixmedins_code"]
        for before, whose in ((day_cutoff(req["inf_time"]), sender),
                              (advance(row.clocks, sender, req["inf_time"]), "")):
            if before:
                forget_answers(row.answers, before, whose)
                forget_answers(row.waiting, before, whose)
        if self.published_under(certno, req["msgid"], row):
            published = uid(req["msgid"], certno, "docref")
            # the msgid published a document of the person's: its first answer, whatever
            # this asks (DOMAIN.md §4), nothing read and nothing audited
            return _publish_answer(req["msgid"], published), row
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
            row.record_access(audit_event(
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
               for e in out["entry"]]
    return {"find": {**answer, "output": {**out, "entry": entries}}}


def _rebuilt_find(kept: dict[str, Any], row: RecordsRow) -> dict[str, Any]:
    """The find's answer again, as it was first given (`_kept_find`)."""
    out = kept["output"]
    entries = [{"fullUrl": f"DocumentReference/{e['docref']}",
                "resource": row.docs[e["docref"]]["docref"], "search": {"mode": "match"}}
               if "docref" in e else e for e in out["entry"]]
    return {**kept, "output": {**out, "entry": entries}}


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
    return {"resourceType": "Bundle", "type": "searchset", "total": len(matches),
            "entry": entries}


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

