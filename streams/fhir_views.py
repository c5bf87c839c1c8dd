"""Read-only FHIR REST views on a platform worker (Faust web views), for operators and
integration testers:

    GET /fhir/DocumentReference?patient.identifier=<system>|<certno>   searchset (&status=…)
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

import base64
import hmac
import os
import re
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import orjson
from aiohttp.web import Request  # what Faust's aiohttp driver passes: remote, host, scheme
from faust.web import Response, View

from messages import topics
from messages.identity import CERTNO_SYSTEM, is_valid_certno
from records.audit import SUCCESS, audit_entry
from records.codes import PSN_NO_SYSTEM
from records.exchange import IndexRow, RecordsRow, document_bytes
from records.pix import NamesSeveralPersons, identifiers_elsewhere, person_named, province_meant
from records.repositories import searchset_bundle
from records.validation import operation_outcome
from settlement.reference import ReferenceData
from streams.fhir_search import (
    asks_json,
    format_refusal,
    lenient,
    search_parameters,
    self_link,
    token,
)
from streams.partitioner import key_partition
from streams.record_totals import RecordsTotals

FHIR_JSON = "application/fhir+json"
#: What every FHIR answer says it is: UTF-8 said explicitly (R4 http.html), and not to be
#: taken for anything else by a browser (a published document's text is a hospital's)
FHIR_HEADERS = {"Content-Type": f"{FHIR_JSON}; charset=utf-8",
                "X-Content-Type-Options": "nosniff"}
BEIJING = timezone(timedelta(hours=8))
OPERATOR_TOKEN_ENV = "HUIMIN_OPERATOR_TOKEN"
DOCUMENT_STATUS_SYSTEM = "http://hl7.org/fhir/document-reference-status"
#: Seconds between two reads of the whole records table for documents not known yet.
RESCAN_S = 2.0
LOOPBACK = frozenset({"127.0.0.1", "::1"})


#: Host names of loopback: with no token set, a request must name one (see operator_refusal).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: Headers a proxy adds: a request carrying one came from elsewhere, whatever its TCP peer.
PROXY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP",
                 "Forwarded", "Via")


def operator_refusal(remote: str | None, authorization: str, token: str,
                     headers: Mapping[str, str] | None = None) -> str | None:
    """Why a request may not use the operator's views, or None if it may. With no token set,
    only loopback's own requests: from a loopback peer, naming a loopback host, through no
    proxy (a proxy on the same host made every remote client loopback's, and a page that
    rebinds its name to 127.0.0.1 had the operator's browser read records: a security
    review)."""
    if token:
        scheme, _, given = authorization.strip().partition(" ")
        # aiohttp decodes header bytes that are not UTF-8 as surrogates: encode them back
        # (a plain .encode() raised UnicodeEncodeError: a 500 before the gate answered)
        if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode("utf-8", "surrogateescape"), token.encode()):
            return None
        return f"an operator's bearer token ({OPERATOR_TOKEN_ENV}) is required"
    headers = headers or {}
    if remote not in LOOPBACK:
        return f"served to loopback only; set {OPERATOR_TOKEN_ENV} to serve other hosts"
    if any(name in headers for name in PROXY_HEADERS):
        return (f"served to loopback only, and this came through a proxy: set "
                f"{OPERATOR_TOKEN_ENV} to serve through one")
    if host_name(headers.get("Host", "localhost")) not in LOOPBACK_NAMES:
        return (f"served to loopback only, by a loopback name (localhost, 127.0.0.1, [::1]), "
                f"not another name for it; set {OPERATOR_TOKEN_ENV} to serve others")
    return None


def host_name(host: str) -> str:
    """A Host header's name, without its port or an IPv6 address's brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def operator_gate(remote: str | None, authorization: str, token: str,
                  headers: Mapping[str, str] | None = None
                  ) -> tuple[int, str, str, dict[str, str]] | None:
    """The refusal of a request that may not use the operator's views (its status, issue
    code, why and headers), or None if it may: where a token is due, 401 and a Bearer
    challenge (RFC 6750: `invalid_token` for a wrong one); from another host with no token
    set, 403 (no credentials would do)."""
    if (why := operator_refusal(remote, authorization, token, headers)) is None:
        return None
    if not token:
        return 403, "forbidden", why, {}
    scheme, _, given = authorization.strip().partition(" ")
    challenge = 'Bearer error="invalid_token"' if scheme.lower() == "bearer" and given.strip() \
        else "Bearer"  # none given, or another scheme (Basic): no error code (RFC 6750 §3.1)
    return 401, "login", why, {"WWW-Authenticate": challenge}


#: A host as X-Forwarded-Host may give it: a name or an IPv4 address, or an IPv6 one in
#: brackets, and a port.
_FORWARDED_HOST = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.\-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])"
                             r"(?::[0-9]{1,5})?")  # `_`: a container's name (huimin_worker_1)


def views_base(headers: Any, scheme: str, host: str) -> str:
    """Where the client reached the views, through a proxy (X-Forwarded-Proto and -Host, the
    first of each) too: a scheme other than http or https, or a host that is not one, is
    not taken (a review saw `javascript://…"><script>` in the self links)."""
    forwarded_scheme = headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    forwarded_host = headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    if forwarded_scheme in ("http", "https"):
        scheme = forwarded_scheme
    if _FORWARDED_HOST.fullmatch(forwarded_host):
        host = forwarded_host
    elif not _FORWARDED_HOST.fullmatch(host or ""):
        host = "localhost"  # a Host header that is no host (markup, bytes not UTF-8)
    return f"{scheme}://{host}/fhir"


def asks_for_resource(request: Request) -> bool:
    """A Binary read that asks for the Binary resource, not for the content itself (R4
    binary.html). Every document here is itself application/fhir+json, which is what an
    MHD consumer retrieving it (ITI-68) accepts, so only `_format` asks for the resource."""
    return any(asks_json(f) for f in request.query.getall("_format", []))


def with_id(resource: dict[str, Any], resource_id: str) -> dict[str, Any]:
    """`resource` with the id it is read by, after its resourceType."""
    return {"resourceType": resource["resourceType"], "id": resource_id,
            **{k: v for k, v in resource.items() if k not in ("resourceType", "id")}}


#: What `$ihe-pix` takes (IHE ITI-83)
PIX_PARAMETERS = ("sourceIdentifier", "targetSystem")


def capability_statement() -> dict[str, Any]:
    """What the views serve, as a FHIR client asks first (`GET /fhir/metadata`): the
    searches with the one parameter each takes, the reads, and PIX. Fixed: it says what this
    code does, not what a worker holds (no personal data; answered without a token)."""
    by_token = {"type": "token"}
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
                 "searchParam": [{"name": "patient.identifier", **by_token},
                                 {"name": "status", **by_token}]},
                {"type": "AuditEvent", "interaction": [{"code": "search-type"}],
                 "searchParam": [{"name": "entity.identifier", **by_token}],
                 "documentation": "the person's latest 100 AuditEvents, named by urn:uuid; "
                                  "all of them are on the ehr.audit topic"},
                {"type": "Patient", "operation": [{
                    "name": "ihe-pix",
                    "definition": "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/"
                                  "IHE.PIXm.pix"}]},
                {"type": "Binary", "interaction": read,
                 "documentation": "a published document, whatever its type, by its "
                                  "DocumentReference's id: as published (itself "
                                  "application/fhir+json, as MHD retrieves it), or as a "
                                  "Binary resource with _format=json"},
                {"type": "Bundle", "interaction": read,
                 "documentation": "a published document of this type, by its "
                                  "DocumentReference's id; a document of any other type "
                                  "(Coverage, Observation, …) is read so at its own type"}]}]}


ALLOWED = "GET, HEAD, OPTIONS"


class Searched(NamedTuple):
    """The person a search is of (their records row's key) and the parameters it takes."""

    key: bytes
    taken: dict[str, str]


class ReadOnlyView(View):
    """A FHIR view: a write (POST, PUT, PATCH, DELETE) is refused 405 with an OperationOutcome
    and the methods it takes, as FHIR clients read a refusal, not aiohttp's plain-text page;
    OPTIONS answers those methods (it listed the writes as allowed)."""

    async def _refuse_write(self, request: Request, **_: Any) -> Response:
        outcome = operation_outcome("not-supported", f"{request.method} is not supported: "
                                    "these views only read (GET)")
        return self.bytes(orjson.dumps(outcome), status=405,
                          headers={**FHIR_HEADERS, "Allow": ALLOWED})

    post = put = patch = delete = search = _refuse_write

    async def options(self, request: Request, **_: Any) -> Response:
        return self.bytes(b"", status=204, headers={"Allow": ALLOWED})


def register_fhir_views(app: Any, records: Any, index: Any, sources_topic: Any,
                        ref: ReferenceData) -> None:
    doc_owner: dict[str, bytes] = {}  # document id -> person key, rebuilt from the table
    scanned = [-RESCAN_S]  # when the table was last read for it
    # a token read from a secrets file keeps its newline, which no header can carry
    operator_token = os.environ.get(OPERATOR_TOKEN_ENV, "").strip()
    totals = RecordsTotals()

    def fhir(web: View, body: dict[str, Any], status: int = 200,
             headers: dict[str, str] | None = None) -> Response:
        return web.bytes(orjson.dumps(body), status=status,
                         headers={**FHIR_HEADERS, **(headers or {})})

    def problem(web: View, status: int, code: str, text: str,
                headers: dict[str, str] | None = None) -> Response:
        return fhir(web, operation_outcome(code, text), status, headers)

    def active_partitions() -> set[int]:
        return {tp.partition for tp in app.assignor.assigned_actives()
                if tp.topic == topics.HOSP_REQUESTS}

    def serves_all() -> bool:
        return len(active_partitions()) == app.conf.topic_partitions

    def rebalancing(web: View) -> Response:
        return problem(web, 503, "transient", "a rebalance is under way: ask again once it "
                                              "is over")

    def elsewhere(web: View, key: bytes) -> Response | None:
        """The 503 for a person this worker does not serve now, or None if it does."""
        if app.rebalancing:
            return rebalancing(web)
        if (partition := key_partition(key, app.conf.topic_partitions)) in active_partitions():
            return None
        return problem(web, 503, "transient", f"this worker does not serve the person's "
                       f"partition ({partition} of {topics.HOSP_REQUESTS}) now: ask the worker "
                       "whose GET /assignment/ lists it, or this one again shortly if the "
                       "workers are starting")

    def not_found(web: View, what: str) -> Response:
        """404; with several workers, saying that only this one's persons were looked in, and
        during a rebalance 503: what it holds then is not yet what it will serve."""
        if app.rebalancing:
            return rebalancing(web)
        if not serves_all():
            what += (" among the persons this worker serves (partitions "
                     f"{sorted(active_partitions())} of {topics.HOSP_REQUESTS}): ask the "
                     "other workers too")
        return problem(web, 404, "not-found", what)

    def refused(web: View, request: Request) -> Response | None:
        """The answer refusing a request of someone other than the operator (`operator_gate`:
        401 or 403), or asking for a format these views do not give (406); None if the
        request may go on."""
        gate = operator_gate(request.remote, request.headers.get("Authorization", ""),
                             operator_token, request.headers)
        if gate is not None:
            return problem(web, *gate)
        if (why := format_refusal(request.query)) is not None:
            return problem(web, 406, "not-supported", why)
        return None

    async def audit(key: bytes, operation: str, province: str, document_id: str = "") -> None:
        """The operator's access, in the person's record (a real-time action, not part of
        the simulation: its id and time are the wall clock's)."""
        now = datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        entry = audit_entry(msgid=str(uuid.uuid4()), operation=operation,
                            certno=key.decode(), requester="platform-operator",
                            requester_province=province, source_province=province,
                            purpose="HOPERAT", outcome=SUCCESS,
                            description="through the platform's FHIR view", recorded=now,
                            document_id=document_id)
        await sources_topic.send(key=key, value=orjson.dumps({"op": "audit", "entry": entry}))

    def home_of(key: bytes) -> str:
        enrollment = ref.enrollments.get(key.decode())
        return enrollment.province if enrollment else ""

    def records_of(key: bytes) -> RecordsRow:
        cur = records.get(key)
        return RecordsRow.from_dict(orjson.loads(cur) if cur else None)

    def base_url(request: Request) -> str:
        return views_base(request.headers, request.scheme, request.host)

    def searchset(request: Request, kind: str, taken: dict[str, str],
                  resources: list[dict[str, Any]], resolvable: bool = True,
                  outcome: dict[str, Any] | None = None) -> dict[str, Any]:
        """The searchset of `resources`, with the search as carried out (its self link).
        Each entry's fullUrl is where it is read here, or, not `resolvable`, its urn:uuid."""
        base = base_url(request)
        entries = [{"fullUrl": f"{base}/{kind}/{r['id']}" if resolvable
                    else f"urn:uuid:{r['id']}", "resource": r, "search": {"mode": "match"}}
                   for r in resources]
        if outcome is not None:
            entries.append({"resource": outcome, "search": {"mode": "outcome"}})
        return {**searchset_bundle(len(resources), entries),
                "link": self_link(base, kind, taken)}

    def searched_person(web: View, request: Request, kind: str, param: str,
                        others: tuple[str, ...] = ()) -> Searched | Response:
        """The person a search is of and the parameters it takes, or the answer: refusing it
        (401, 403, 406, 400, 503), or the empty searchset of an identifier of another
        system (every identifier here is a citizen ID under CERTNO_SYSTEM)."""
        if (no := refused(web, request)) is not None:
            return no
        taken, why = search_parameters(request.query, (param, *others),
                                       lenient(request.headers))
        if why is not None:
            return problem(web, 400, "not-supported", why)
        wanted = f"{param}={CERTNO_SYSTEM}|<certno>"
        if param not in taken:
            return problem(web, 400, "required", f"{wanted} is required")
        system, value = token(taken[param])
        if "," in taken[param] or not value:
            return problem(web, 400, "not-supported", f"{param}: one person at a time "
                           f"({wanted}; no list, no search of everyone)")
        if system is not None and system != CERTNO_SYSTEM:
            return fhir(web, searchset(request, kind, taken, []))
        if not is_valid_certno(value):  # no audit trail for a typo
            return problem(web, 400, "value", f"{wanted}: not a valid citizen ID number")
        key = value.encode()
        return no if (no := elsewhere(web, key)) is not None else Searched(key, taken)

    @app.page("/fhir/DocumentReference", base=ReadOnlyView)
    async def document_references(web: View, request: Request) -> Response:
        found = searched_person(web, request, "DocumentReference", "patient.identifier",
                                ("status",))
        if not isinstance(found, Searched):
            return found
        key, taken = found
        row = records_of(key)
        doc_owner.update(dict.fromkeys(row.docs, key))  # read at their fullUrls next
        held = row.docs.values()
        statuses = None if "status" not in taken else {
            code for system, code in map(token, taken["status"].split(","))
            if system in (None, "", DOCUMENT_STATUS_SYSTEM)}  # a code has no system of its own
        docs = sorted((d["docref"] for d in held
                       if statuses is None or d["docref"].get("status") in statuses),
                      key=lambda r: (r["date"], r["id"]), reverse=True)
        for province in sorted({d["province"] for d in held}) or [home_of(key)]:
            await audit(key, "operator-search", province)  # one a source, as a 7002's
        return fhir(web, searchset(request, "DocumentReference", taken, docs))

    @app.page("/fhir/AuditEvent", base=ReadOnlyView)
    async def audit_events(web: View, request: Request) -> Response:
        """The latest AUDIT_KEPT of the person's AuditEvents, the matches this worker can
        give (no page holds the rest: they are on `ehr.audit`, the trail of record, which an
        outcome entry says when there are more). Each is named by its urn:uuid: AuditEvents
        are not read one by one here."""
        found = searched_person(web, request, "AuditEvent", "entity.identifier")
        if not isinstance(found, Searched):
            return found
        key, taken = found
        row = records_of(key)
        more = None if row.audited <= len(row.audit) else operation_outcome(
            "informational", f"{row.audited} accesses to the person's records are audited; "
                             f"the latest {len(row.audit)} are kept here, and every one on "
                             f"the {topics.EHR_AUDIT} topic (the trail of record)",
            severity="information")
        return fhir(web, searchset(request, "AuditEvent", taken, row.audit_events(),
                                   resolvable=False, outcome=more))

    @app.page("/fhir/Patient/$ihe-pix", base=ReadOnlyView)
    async def pix(web: View, request: Request) -> Response:
        if (no := refused(web, request)) is not None:
            return no
        taken, why = search_parameters(request.query, PIX_PARAMETERS, lenient(request.headers),
                                       repeatable=("targetSystem",))
        if why is not None:
            return problem(web, 400, "not-supported", why)
        system, value = token(taken.get("sourceIdentifier", ""))
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
        wanted = {s for s in taken.get("targetSystem", "").split(",") if s}
        await audit(certno.encode(), "operator-search", home_of(certno.encode()))
        found = [{"name": "targetIdentifier", "valueIdentifier": t}
                 for t in identifiers_elsewhere(certno, enrollment, row, (system, value), wanted)]
        # no identifier elsewhere: Parameters with none (FHIR JSON has no empty arrays)
        return fhir(web, {"resourceType": "Parameters", **({"parameter": found} if found
                                                           else {})})

    @app.page("/fhir/metadata", base=ReadOnlyView)
    async def metadata(web: View, request: Request) -> Response:
        if (why := format_refusal(request.query)) is not None:
            return problem(web, 406, "not-supported", why)
        return fhir(web, capability_statement())

    @app.page("/fhir/{kind}/{doc_id}", base=ReadOnlyView)
    async def read_document(web: View, request: Request, kind: str, doc_id: str) -> Response:
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
        # its DocumentReference (a searchset entry's fullUrl), the document as published
        # under its own type, or as MHD's Binary whatever its type (a published
        # DocumentReference is otherwise the repository's at that path)
        if key is None or doc is None or not (
                kind in ("Binary", "DocumentReference")
                or doc["docref"]["content"][0]["attachment"]["url"].startswith(f"{kind}/")):
            # the path's words are not echoed: whatever was typed there may be personal; and
            # whether the id is a document of another type is not said unread
            return not_found(web, "no document of that type with that id: a document is read "
                                  "at /fhir/<its resourceType>/<id> (a Bundle, a Coverage, …) "
                                  "or at /fhir/Binary/<id> whatever its type")
        await audit(key, "operator-read", doc["province"], doc_id)
        if kind == "DocumentReference":
            return fhir(web, doc["docref"])
        content = document_bytes(doc["content"])
        if kind == "Binary":  # the document itself, unless a FHIR resource is asked for
            if not asks_for_resource(request):
                return web.bytes(content, headers=FHIR_HEADERS)
            return fhir(web, {"resourceType": "Binary", "id": doc_id,
                              "contentType": FHIR_JSON,
                              "data": base64.b64encode(content).decode()})
        # read at its type, a resource has the id it is read by (R4 http.html): the
        # platform's, as a server gives a resource it takes; Bundle.identifier stays
        return fhir(web, with_id(orjson.loads(content), doc_id))

    @app.page("/ehr/stats/")
    async def stats(web: View, request: Request) -> Response:
        """Totals over the persons this worker serves (not its standby copies of others')."""
        return web.json(await totals.count(records, active_partitions(),
                                           app.conf.topic_partitions))
