"""The requesting hospital's provincial platform, in the health-record exchange
(records/exchange.py): a publish (7001) checked at its ingress, stored and registered, and
the national index told; a query (7002–7004) sent on to the national platform."""

from __future__ import annotations

from typing import Any

import orjson

from messages.codes import ErrorCode, Infno
from messages.envelope import province_of
from records.codes import (
    CERTNO_SYSTEM,
    FIXMEDINS_SYSTEM,
    LOINC,
    PROVINCE_SYSTEM,
)
from records.consent import (
    SeveralConsents,
    published_consent,
)
from records.documents import fhir_time, uid
from records.exchange import (
    PERSON_RECORDS_BYTES,
    EhrAnswer,
    RecordsRow,
    Step,
    ToNational,
    certnos_in,
    ehr_error,
    pack_document,
    publish_answer,
    resources_in,
    resources_with_paths,
    unpack_document,
)
from records.validation import InvalidResource, Validator, operation_outcome

#: The longest identifier system or value a published Patient may give: each is kept in the
#: national index's row for the person, and a longer one cannot be looked up anyway (the
#: views take URLs of up to 8,190 bytes).
IDENTIFIER_CHARS = 1024


class ProvincialGateway:
    """Role 1: the requesting hospital's provincial platform."""

    def __init__(self, validator: Validator | None = None) -> None:
        self.validator = validator or Validator()

    def handle(self, certno: str, req: dict[str, Any], ctx: dict[str, Any],
               row: RecordsRow, aside: bool = False) -> tuple[list[Step], RecordsRow | None]:
        """`aside`: a query gone ahead of requests held on the treatment side, whose clock
        it left as it was (settlement/treatment.py `Forward.aside`)."""
        msgid, inp = req["msgid"], req["input"]
        if req["infno"] != Infno.EHR_PUBLISH:  # with what the repositories held as it came
            return [ToNational({"op": "query", "req": req, "ctx": ctx,
                                "docs_held": len(row.docs), **({"aside": True} if aside
                                                               else {})})], None
        if msgid in row.answers:  # a find, retrieve or lookup of the person's used it
            return [EhrAnswer(ehr_error(
                msgid, ErrorCode.MSGID_REUSED, "this msgid was a query's before (7002, 7003 "
                "or 7004): a request needs a msgid of its own"))], None
        resource = inp.get("resource")
        if (refusal := document_refusal(self.validator, resource, certno)) is not None:
            return [EhrAnswer(ehr_error(msgid, *refusal))], None
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
            return [EhrAnswer(publish_answer(msgid, doc_id), repeat=True),
                    ToNational(register)], None
        try:
            consent = published_consent(resources_in(resource), certno, req["inf_time"])
        except SeveralConsents as exc:
            return [EhrAnswer(ehr_error(msgid, ErrorCode.INVALID_FHIR, f"not valid here: {exc}",
                                        operation_outcome("not-supported", str(exc))))], None
        held = {"province": province, "docref": docref, "content": pack_document(content)}
        labs = _labs(content, province, doc_id)
        # what publishes alone change, so that the oracle and the platform refuse alike
        # whatever queries and operator reads came between
        size = len(orjson.dumps([row.docs, row.labs, row.consent, held, labs]))
        # a person whose records are full must still be able to withdraw consent or deny
        # sharing (DOMAIN.md §6; a privacy review found the withdrawal refused E5004 and
        # the records shared on): a small consent document may go past the bound
        small_consent = consent is not None and \
            len(held["content"]) * 3 // 4 <= CONSENT_DOCUMENT_BYTES  # base64 of the deflated
        limit = PERSON_RECORDS_BYTES + (CONSENT_HEADROOM if small_consent else 0)
        if size > limit:
            before = len(orjson.dumps([row.docs, row.labs, row.consent, None, []]))
            full = (f"the person's documents and lab index would come to {size:,} bytes with "
                    f"this document ({before:,} before it, deflated), over the {limit:,} "
                    "a person's records may hold" + (
                        f" (a Consent of at most {CONSENT_DOCUMENT_BYTES:,} bytes deflated "
                        f"may take them to {PERSON_RECORDS_BYTES + CONSENT_HEADROOM:,})"
                        if consent is not None and not small_consent else ""))
            return [EhrAnswer(ehr_error(msgid, ErrorCode.RECORDS_FULL, full,
                                        operation_outcome("too-costly", full)))], None
        row.docs[doc_id] = held
        if consent is not None:  # the person's choice from now on, wherever records are held
            row.consent = row.docs[doc_id]["consent"] = consent  # the document's: `as_held`
        row.labs += labs
        register = _registration(doc_id, province, content)
        return [EhrAnswer(publish_answer(msgid, doc_id)), ToNational(register)], row


#: How far past PERSON_RECORDS_BYTES a consent document may take a person's records, and how
#: large (deflated) it may be to: dozens of changes of mind after the records filled, well
#: within the room the row keeps (records/exchange.py).
CONSENT_HEADROOM = 65_536
CONSENT_DOCUMENT_BYTES = 8_192


def document_refusal(validator: Validator, resource: Any, certno: str | None = None
                     ) -> tuple[ErrorCode, str, dict[str, Any] | None] | None:
    """Why a 7001's document is refused: its code, err_msg and OperationOutcome; None if it
    is taken. Not valid FHIR (E5001); about another person than `certno`, the message key
    (E2003; not asked without one); an identifier too long to index (E5001). `huimin
    check-fhir` asks the same, so the two cannot drift apart."""
    try:
        validator.validate(resource)
    except InvalidResource as exc:
        return ErrorCode.INVALID_FHIR, f"not valid FHIR R4: {exc}", exc.outcome
    if certno is not None and certnos_in(resource) - {certno}:
        return (ErrorCode.PERSON_MISMATCH, "the document's Patient is another person than the "
                "message key", None)
    if (too_long := identifier_too_long(resource)) is not None:
        return (ErrorCode.INVALID_FHIR,
                f"not valid here: an identifier over {IDENTIFIER_CHARS:,} characters",
                operation_outcome("too-long", f"over {IDENTIFIER_CHARS:,} characters",
                                  too_long))
    return None


def identifier_too_long(resource: dict[str, Any]) -> str | None:
    """The path of the first Patient identifier whose system or value is over
    IDENTIFIER_CHARS (`Bundle.entry[2].resource.identifier[0].value`), or None."""
    for where, item in resources_with_paths(resource, str(resource.get("resourceType"))):
        if item.get("resourceType") != "Patient" or not isinstance(item.get("identifier"), list):
            continue
        for j, ident in enumerate(item["identifier"]):
            for part in ("system", "value"):
                if isinstance(ident, dict) and len(str(ident.get(part) or "")) > IDENTIFIER_CHARS:
                    return f"{where}.identifier[{j}].{part}"
    return None


def _registration(doc_id: str, province: str, content: dict[str, Any]) -> dict[str, Any]:
    """What the national index keeps of a published document: where it is, and the
    Patient's other identifiers (not the certno, which is the key)."""
    identifiers = [i for r in resources_in(content) if r["resourceType"] == "Patient"
                   for i in r.get("identifier") or []
                   if isinstance(i, dict) and i.get("system") and i.get("value")
                   and i.get("system") != CERTNO_SYSTEM]
    return {"op": "register", "doc_id": doc_id, "province": province,
            "identifiers": [{"system": i["system"], "value": i["value"]} for i in identifiers]}


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
        # where the document is read: at its type, or as MHD's Binary for a published
        # DocumentReference (at its type, the path reads the repository's, this one)
        "content": [{"attachment": {"contentType": "application/fhir+json", "url":
                                    f"{'Binary' if kind == 'DocumentReference' else kind}/"
                                    f"{doc_id}"}}]}
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


#: An Observation's statuses that are a result (FHIR R4 observation-status): not one
#: registered or preliminary, cancelled, or entered in error, which no one may reuse.
RESULT_STATUSES = frozenset({"final", "amended", "corrected"})


def _labs(content: dict[str, Any], province: str, doc_id: str) -> list[dict[str, Any]]:
    """LOINC lab results with a time and a quantity, final (or amended, corrected): what
    other hospitals may reuse."""
    out = []
    for r in resources_in(content):
        if r["resourceType"] != "Observation" or r.get("status") not in RESULT_STATUSES \
                or (when := _lab_time(r)) is None:
            continue
        quantity = r.get("valueQuantity") or {}
        for coding in (r.get("code") or {}).get("coding") or []:
            if coding.get("system") == LOINC and "value" in quantity:
                out.append({"loinc": coding.get("code"), "time": when,
                            "province": province, "doc_id": doc_id,
                            "value": quantity["value"], "unit": quantity.get("unit", "")})
    return out
