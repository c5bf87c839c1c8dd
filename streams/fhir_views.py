"""Read-only FHIR REST views on a platform worker (Faust web views), for operators and
integration testers:

    GET /fhir/DocumentReference?patient.identifier=<system>|<certno>   searchset
    GET /fhir/<type>/<id>                                              a stored document
    GET /fhir/DocumentReference/<id>                                   its DocumentReference
    GET /fhir/AuditEvent?entity.identifier=<system>|<certno>           searchset
    GET /fhir/Patient/$ihe-pix?sourceIdentifier=<system>|<value>       Parameters (PIXm)
    GET /ehr/stats/                                                    totals (JSON)

Each answers from the partitions this worker serves. A person another worker serves (or any,
while a rebalance is under way) is answered 503, naming the person's partition to look up in
the workers' GET /assignment/: a standby's copy may be behind, and an empty searchset would
read as "no records". Errors are OperationOutcomes. Reading a
document, searching a person's DocumentReferences and looking up their identifiers are
accesses like any other: each is audited in the person's record (through the `ehr.sources`
topic, as the operator, purpose HOPERAT). Listing the AuditEvents is not itself recorded.

The `/fhir/` views are the platform operator's, not the hospitals' (hospitals go through
7002/7003 and the person's Consent): they answer requests from loopback only, or, when
HUIMIN_OPERATOR_TOKEN is set, requests that carry `Authorization: Bearer <that token>`.
"""

from __future__ import annotations

import hmac
import os
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from faust.web import View

from messages import topics
from messages.identity import CERTNO_SYSTEM, is_valid_certno
from records.audit import SUCCESS, audit_event
from records.codes import PSN_NO_SYSTEM
from records.exchange import IndexRow, RecordsRow, document_bytes
from records.pix import NamesSeveralPersons, identifiers_elsewhere, person_named, province_meant
from records.validation import operation_outcome
from settlement.reference import ReferenceData
from streams.partitioner import key_partition
from streams.record_totals import RecordsTotals

FHIR_JSON = "application/fhir+json"
BEIJING = timezone(timedelta(hours=8))
OPERATOR_TOKEN_ENV = "HUIMIN_OPERATOR_TOKEN"
#: Seconds between two reads of the whole records table for documents not known yet.
RESCAN_S = 2.0
LOOPBACK = frozenset({"127.0.0.1", "::1"})


def operator_refusal(remote: str | None, authorization: str, token: str) -> str | None:
    """Why a request may not use the operator's views, or None if it may."""
    if token:
        scheme, _, given = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode()):
            return None
        return f"an operator's bearer token ({OPERATOR_TOKEN_ENV}) is required"
    if remote in LOOPBACK:
        return None
    return f"served to loopback only; set {OPERATOR_TOKEN_ENV} to serve other hosts"


#: A search parameter's name as FHIR spells them: a name typed otherwise, or holding a run
#: of digits (an ID number pasted in the wrong place), is not echoed
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_DIGITS = re.compile(r"\d{5}")
#: What every search takes besides its own: the format (JSON is all they give) and layout
GENERAL_PARAMETERS = ("_format", "_pretty")


def unsupported_parameters(given: Any, supported: tuple[str, ...]) -> str | None:
    """Why a search is refused for parameters it would pass over (a FHIR server ignoring
    `status` or `_count` answers more than was asked, unsaid), or None. `_format` is taken
    when it asks for JSON, and `_pretty` (the answer is compact all the same)."""
    if any("json" not in f for f in given.getall("_format", [])):
        return "_format: the views answer application/fhir+json only"
    others = sorted({p for p in given if p not in (*supported, *GENERAL_PARAMETERS)})
    if not others:
        return None
    named = [p if _PARAMETER.fullmatch(p) and not _DIGITS.search(p) else "(a parameter)"
             for p in others]
    return (f"search parameters not supported here: {', '.join(dict.fromkeys(named))} "
            f"(supported: {', '.join(supported)})")


def _split(token: str) -> tuple[str, str]:
    system, sep, value = token.partition("|")
    return (system, value) if sep else ("", token)


#: What `$ihe-pix` takes (IHE ITI-83)
PIX_PARAMETERS = ("sourceIdentifier", "targetSystem")


def capability_statement() -> dict[str, Any]:
    """What the views serve, as a FHIR client asks first (`GET /fhir/metadata`): the
    searches with the one parameter each takes, the reads, and PIX. Fixed: it says what this
    code does, not what a worker holds (no personal data; answered without a token)."""
    token = {"type": "token"}
    read = [{"code": "read"}]
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": "2026-12-05",
        "publisher": "huimin", "kind": "instance", "fhirVersion": "4.0.1",
        "format": ["json"], "implementation": {
            "description": "huimin platform worker: the operator's read-only views of the "
                           "health records of the persons this worker serves"},
        "rest": [{"mode": "server", "security": {
            "description": "Loopback only, unless HUIMIN_OPERATOR_TOKEN is set: then "
                           "Authorization: Bearer <token>. Every document search, read and "
                           "PIX lookup is audited in the person's record (purpose HOPERAT); "
                           "listing the AuditEvents is not."},
            "resource": [
                {"type": "DocumentReference", "interaction": [*read, {"code": "search-type"}],
                 "searchParam": [{"name": "patient.identifier", **token}]},
                {"type": "AuditEvent", "interaction": [{"code": "search-type"}],
                 "searchParam": [{"name": "entity.identifier", **token}]},
                {"type": "Patient", "operation": [{
                    "name": "ihe-pix",
                    "definition": "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/"
                                  "IHE.PIXm.pix"}]},
                {"type": "Binary", "interaction": read,
                 "documentation": "a published document as published, whatever its type"},
                {"type": "Bundle", "interaction": read,
                 "documentation": "a published document of this type, by its "
                                  "DocumentReference's id; a document of any other type "
                                  "(Coverage, Observation, …) is read so at its own type"}]}]}


ALLOWED = "GET, HEAD, OPTIONS"


class ReadOnlyView(View):
    """A FHIR view: a write (POST, PUT, PATCH, DELETE) is refused 405 with an OperationOutcome
    and the methods it takes, as FHIR clients read a refusal, not aiohttp's plain-text page;
    OPTIONS answers those methods (it listed the writes as allowed)."""

    async def _refuse_write(self, request: Any, **_: Any) -> Any:
        outcome = operation_outcome("not-supported", f"{request.method} is not supported: "
                                    "these views only read (GET)")
        return self.bytes(orjson.dumps(outcome), content_type=FHIR_JSON, status=405,
                          headers={"Allow": ALLOWED})

    post = put = patch = delete = search = _refuse_write

    async def options(self, request: Any, **_: Any) -> Any:
        return self.bytes(b"", status=204, headers={"Allow": ALLOWED})


def register_fhir_views(app: Any, records: Any, index: Any, sources_topic: Any,
                        ref: ReferenceData) -> None:
    doc_owner: dict[str, bytes] = {}  # document id -> person key, rebuilt from the table
    scanned = [-RESCAN_S]  # when the table was last read for it
    token = os.environ.get(OPERATOR_TOKEN_ENV, "")
    totals = RecordsTotals()

    def fhir(web: Any, body: dict[str, Any], status: int = 200) -> Any:
        return web.bytes(orjson.dumps(body), content_type=FHIR_JSON, status=status)

    def problem(web: Any, status: int, code: str, text: str) -> Any:
        return fhir(web, operation_outcome(code, text), status)

    def person_key(request: Any, param: str) -> bytes | None:
        """The certno asked for (a valid one only: no audit trail for a typo)."""
        system, value = _split(request.query.get(param, ""))
        if system not in ("", CERTNO_SYSTEM) or not is_valid_certno(value):
            return None
        return value.encode()

    def active_partitions() -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives()
                if tp.topic == topics.HOSP_REQUESTS}

    def serves_all() -> bool:
        return len(active_partitions()) == app.conf.topic_partitions

    def rebalancing(web: Any) -> Any:
        return problem(web, 503, "transient", "a rebalance is under way: ask again once it "
                                              "is over")

    def elsewhere(web: Any, key: bytes) -> Any | None:
        """The 503 for a person this worker does not serve now, or None if it does."""
        if app.rebalancing:
            return rebalancing(web)
        if (partition := key_partition(key, app.conf.topic_partitions)) in active_partitions():
            return None
        return problem(web, 503, "transient", f"this worker does not serve the person's "
                       f"partition ({partition} of {topics.HOSP_REQUESTS}): ask the worker "
                       "whose GET /assignment/ lists it")

    def not_found(web: Any, what: str) -> Any:
        """404; with several workers, saying that only this one's persons were looked in, and
        during a rebalance 503: what it holds then is not yet what it will serve."""
        if app.rebalancing:
            return rebalancing(web)
        if not serves_all():
            what += (" among the persons this worker serves (partitions "
                     f"{sorted(active_partitions())} of {topics.HOSP_REQUESTS}): ask the "
                     "other workers too")
        return problem(web, 404, "not-found", what)

    def refused(web: Any, request: Any) -> Any | None:
        why = operator_refusal(request.remote, request.headers.get("Authorization", ""), token)
        return None if why is None else problem(web, 403, "forbidden", why)

    async def audit(key: bytes, operation: str, province: str, document_id: str = "") -> None:
        """The operator's access, in the person's record (a real-time action, not part of
        the simulation: its id and time are the wall clock's)."""
        now = datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        event = audit_event(msgid=str(uuid.uuid4()), operation=operation,
                            certno=key.decode(), requester="platform-operator",
                            requester_province=province, source_province=province,
                            purpose="HOPERAT", outcome=SUCCESS,
                            description="through the platform's FHIR view", recorded=now,
                            document_id=document_id)
        await sources_topic.send(key=key, value=orjson.dumps({"op": "audit", "event": event}))

    def home_of(key: bytes) -> str:
        enrollment = ref.enrollments.get(key.decode())
        return enrollment.province if enrollment else ""

    def records_of(key: bytes) -> RecordsRow:
        cur = records.get(key)
        return RecordsRow.from_dict(orjson.loads(cur) if cur else None)

    def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
                "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r,
                           "search": {"mode": "match"}} for r in resources]}

    def searched_person(web: Any, request: Any, param: str) -> tuple[bytes | None, Any]:
        """The person a search is of, or None and the answer refusing it (403, 400, 503)."""
        if (no := refused(web, request)) is not None:
            return None, no
        if (why := unsupported_parameters(request.query, (param,))) is not None:
            return None, problem(web, 400, "not-supported", why)
        key = person_key(request, param)
        if key is None:
            return None, problem(web, 400, "required", f"{param}={CERTNO_SYSTEM}|<certno> "
                                 "(a valid citizen ID number) is required")
        return (None, no) if (no := elsewhere(web, key)) is not None else (key, None)

    @app.page("/fhir/DocumentReference", base=ReadOnlyView)
    async def document_references(web: Any, request: Any) -> Any:
        key, no = searched_person(web, request, "patient.identifier")
        if key is None:
            return no
        held = records_of(key).docs.values()
        docs = sorted((d["docref"] for d in held), key=lambda r: (r["date"], r["id"]),
                      reverse=True)
        for province in sorted({d["province"] for d in held}) or [home_of(key)]:
            await audit(key, "operator-search", province)  # one a source, as a 7002's
        return fhir(web, searchset(docs))

    @app.page("/fhir/AuditEvent", base=ReadOnlyView)
    async def audit_events(web: Any, request: Any) -> Any:
        """The latest AUDIT_KEPT of the person's AuditEvents; `total` counts them all (the
        rest are on `ehr.audit`, the trail of record)."""
        key, no = searched_person(web, request, "entity.identifier")
        if key is None:
            return no
        row = records_of(key)
        return fhir(web, {**searchset(row.audit), "total": max(row.audited, len(row.audit))})

    @app.page("/fhir/Patient/$ihe-pix", base=ReadOnlyView)
    async def pix(web: Any, request: Any) -> Any:
        if (no := refused(web, request)) is not None:
            return no
        if (why := unsupported_parameters(request.query, PIX_PARAMETERS)) is not None:
            return problem(web, 400, "not-supported", why)
        system, value = _split(request.query.get("sourceIdentifier", ""))
        if not system or not value:
            return problem(web, 400, "required", "sourceIdentifier=<system>|<value> is required")
        try:
            certno, row = person_named(
                system, value, ref,
                lambda: ((k.decode(), IndexRow.from_dict(orjson.loads(v)))
                         for k, v in index.items()),
                lambda c: IndexRow.from_dict(orjson.loads(cur))
                if (cur := index.get(c.encode())) else None)
        except NamesSeveralPersons:
            return problem(web, 409, "multiple-matches", "sourceIdentifier Patient Identifier "
                           "was published for more than one person: look them up by "
                           "citizen ID")
        if certno is not None and (no := elsewhere(web, certno.encode())) is not None:
            return no
        enrollment = ref.enrollments.get(certno) if certno else None
        if certno is None or (row is None and enrollment is None):
            if (province := province_meant(system, ref.provinces)) is not None:
                return not_found(web, "sourceIdentifier Patient Identifier not found: an "
                                 "insurance number's system names the province "
                                 f"({PSN_NO_SYSTEM}:{province}), not the city")
            return not_found(web, "sourceIdentifier Patient Identifier not found")
        wanted = {s for given in request.query.getall("targetSystem", [])
                  for s in given.split(",") if s}
        await audit(certno.encode(), "operator-search", home_of(certno.encode()))
        return fhir(web, {"resourceType": "Parameters", "parameter": [
            {"name": "targetIdentifier", "valueIdentifier": t}
            for t in identifiers_elsewhere(certno, enrollment, row, (system, value), wanted)]})

    @app.page("/fhir/metadata", base=ReadOnlyView)
    async def metadata(web: Any, request: Any) -> Any:
        return fhir(web, capability_statement())

    @app.page("/fhir/{kind}/{doc_id}", base=ReadOnlyView)
    async def read_document(web: Any, request: Any, kind: str, doc_id: str) -> Any:
        if (no := refused(web, request)) is not None:
            return no
        key = doc_owner.get(doc_id)
        if key is None and time.monotonic() - scanned[0] >= RESCAN_S:
            # what the table holds now (this worker's partitions since the last rebalance):
            # at most one pass over it every RESCAN_S, however many unknown ids are asked for
            doc_owner.clear()
            for k, v in records.items():
                for d in orjson.loads(v)["docs"]:
                    doc_owner[d] = k
            scanned[0] = time.monotonic()
            key = doc_owner.get(doc_id)
        if key is not None and (no := elsewhere(web, key)) is not None:
            return no
        doc = records_of(key).docs.get(doc_id) if key else None
        if doc is not None and kind == "DocumentReference":  # a searchset entry's fullUrl
            await audit(key, "operator-read", doc["province"], doc_id)
            return fhir(web, doc["docref"])
        # the document as published under its own type, or as MHD's Binary whatever its
        # type (a published DocumentReference is otherwise the repository's at that path)
        if doc is None or not (kind == "Binary" or doc["docref"]["content"][0]["attachment"][
                "url"].startswith(f"{kind}/")):
            # the path's words are not echoed: whatever was typed there may be personal; and
            # whether the id is a document of another type is not said unread
            return not_found(web, "no document of that type with that id: a document is read "
                                  "at /fhir/<its resourceType>/<id> (a Bundle, a Coverage, …) "
                                  "or at /fhir/Binary/<id> whatever its type")
        await audit(key, "operator-read", doc["province"], doc_id)
        return web.bytes(document_bytes(doc["content"]), content_type=FHIR_JSON)

    @app.page("/ehr/stats/")
    async def stats(web: Any, request: Any) -> Any:
        """Totals over the persons this worker serves (not its standby copies of others')."""
        return web.json(await totals.count(records, active_partitions(),
                                           app.conf.topic_partitions))
