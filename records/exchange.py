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

The same functions answer for the streamed platform and for the offline oracle. This module
holds what the three share: the rows they keep and the steps they return; the roles are
records/gateway.py, records/national_index.py and records/repositories.py.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson

from messages.codes import ErrorCode
from messages.envelope import error_answer, ok_answer
from records.audit import SUCCESS, audit_event_of
from records.codes import (
    CERTNO_SYSTEM,
)
from records.validation import operation_outcome

#: The AuditEvents a person's row keeps, newest last: for the person's `/fhir/AuditEvent`
#: view and for telling a repeated access. Every one is also written to `ehr.audit`, the
#: trail of record; a row that kept them all would outgrow a Kafka record after ~800
#: accesses (an operator's view polled, say), and the person's records would then be refused.
AUDIT_KEPT = 100
#: What a person's documents and lab index may come to, encoded: a publish past it is
#: refused (E5004), not stored. Their row is one Kafka record, under the ~900,000 bytes a
#: role writes (streams/role.py), with room for what accesses add: the latest AUDIT_KEPT
#: accesses (~42 KB at most; ~172 KB in a row kept before 2026-12-07, which held whole
#: AuditEvents) and a week's answers, a find's kept by its documents' ids.
#: Past that the publish used to be taken in and its row refused as an internal error
#: (E9002).
PERSON_RECORDS_BYTES = 600_000


@dataclass
class RecordsRow:
    """A person's records in the provincial repositories (each document says which province
    holds it), the lab results indexed from them, and the latest AuditEvents of the accesses
    (all of them are counted, and written to `ehr.audit`)."""

    docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> province, docref, content
    labs: list[dict[str, Any]] = field(default_factory=list)
    #: the last AUDIT_KEPT accesses, each as `audit_entry` keeps it (`audit_events` gives
    #: their AuditEvents)
    audit: list[dict[str, Any]] = field(default_factory=list)
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

    def record_access(self, entry: dict[str, Any]) -> None:
        """Once per access (`audit_entry`): a duplicated query is the same access (its id is
        its msgid's)."""
        if any(a["id"] == entry["id"] for a in self.audit[-20:]):
            return
        self.audit.append(entry)
        del self.audit[:-AUDIT_KEPT]
        self.audited += 1
        self.refusals_audited += entry["outcome"] != SUCCESS

    def audit_events(self) -> list[dict[str, Any]]:
        """The AuditEvents of the accesses the row keeps, oldest first."""
        return [audit_event_of(a) for a in self.audit]

    def audit_since(self, audited: int) -> list[dict[str, Any]]:
        """The AuditEvents recorded since the row counted `audited` (at most AUDIT_KEPT: one
        access records one a source province)."""
        new = self.audited - audited
        return [audit_event_of(a) for a in self.audit[-new:]] if new > 0 else []


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


def resources_in(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The resource and, for a Bundle, every resource inside it (depth first)."""
    return [item for _, item in resources_with_paths(resource, "")]


#: Where a resource names the person it is about by reference (Observation.subject,
#: Encounter.subject, Coverage.beneficiary, AllergyIntolerance.patient, Task.for,
#: DocumentReference.context.sourcePatientInfo; Account.subject is a list).
_ABOUT = ("subject", "patient", "beneficiary", "for", "sourcePatientInfo")


def certnos_in(resource: dict[str, Any]) -> set[str]:
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
            refs = r if isinstance(r := item.get(k), list) else [r]
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


def resources_with_paths(resource: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    """`resources_in`, each with its path, as the validator names them."""
    out = [(path, resource)]
    if resource.get("resourceType") == "Bundle":
        for i, entry in enumerate(resource.get("entry") or []):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                out += resources_with_paths(entry["resource"], f"{path}.entry[{i}].resource")
    return out


def publish_answer(msgid: str, doc_id: str) -> dict[str, Any]:
    return ok_answer(msgid, {"resourceType": "Bundle", "type": "transaction-response",
                             "entry": [{"response": {"status": "201 Created",
                                                     "location": f"DocumentReference/{doc_id}"}}]})
