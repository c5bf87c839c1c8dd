"""AuditEvents (IHE BALP style) for every query, retrieval and refusal of a person's records.
Each goes to the `ehr.audit` topic, the trail of record; the person's record keeps the latest
(`AUDIT_KEPT`), which `GET /fhir/AuditEvent?entity.identifier=…` lists."""

from __future__ import annotations

from typing import Any

from records.codes import (
    ACT_REASON,
    AUDIT_TYPE,
    CERTNO_SYSTEM,
    FIXMEDINS_SYSTEM,
    IHE_EVENTS,
    INFNO_SYSTEM,
    MSGID_SYSTEM,
    PROVINCE_SYSTEM,
    PURPOSE_OF_USE,
    RESTFUL,
)
from records.documents import fhir_time, uid

#: (restful interaction, action, the transaction's coding or None) per operation.
OPERATIONS: dict[str, tuple[str, str, dict[str, str] | None]] = {
    "find": ("search-type", "E", {"system": IHE_EVENTS, "code": "ITI-67"}),
    "retrieve": ("read", "R", {"system": IHE_EVENTS, "code": "ITI-68"}),
    "lab-lookup": ("search-type", "E", {"system": INFNO_SYSTEM, "code": "7004"}),
    "operator-read": ("read", "R", None), "operator-search": ("search-type", "E", None)}
SUCCESS, REFUSED = "0", "4"  # AuditEvent.outcome: success, minor failure


def audit_entry(*, msgid: str, operation: str, certno: str, requester: str,
                requester_province: str, source_province: str, purpose: str, outcome: str,
                description: str, recorded: str, document_id: str = "",
                break_glass: bool = False) -> dict[str, Any]:
    """An access as the person's row keeps it: the facts its AuditEvent is made of
    (`audit_event_of`). The row is read and written whole on every access, and the events
    themselves were half of all rows' bytes and most of their decoding: an entry is a fifth
    of its event."""
    entry: dict[str, Any] = {
        # one a person and source province: a msgid may query two persons (each answered
        # for their own), and a store keeping AuditEvents by id must keep both
        "id": uid(msgid, certno, "audit", source_province), "msgid": msgid, "op": operation,
        "certno": certno, "by": requester, "by_at": requester_province,
        # a code of the sender's own making is not kept (a name in pinyin, say): it names no
        # purpose, and the event says so
        "at": source_province, "purpose": purpose if purpose in PURPOSE_OF_USE else "",
        "outcome": outcome, "why": description, "recorded": recorded}
    if document_id:
        entry["doc"] = document_id
    if break_glass:
        entry["btg"] = True
    return entry


def audit_event(**facts: Any) -> dict[str, Any]:
    """The AuditEvent of an access (`audit_entry`'s keywords)."""
    return audit_event_of(audit_entry(**facts))


def audit_event_of(entry: dict[str, Any]) -> dict[str, Any]:
    """The AuditEvent of an access a person's row keeps; rows written before 2026-12-07
    kept the events themselves, which are given as they are."""
    if "resourceType" in entry:
        return entry
    interaction, action, transaction = OPERATIONS[entry["op"]]
    subtype = [{"system": RESTFUL, "code": interaction}]
    if transaction:
        subtype.append(dict(transaction))  # each event its own: the table's is shared
    entity: list[dict[str, Any]] = [{
        "what": {"identifier": {"system": CERTNO_SYSTEM, "value": entry["certno"]}},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                 "code": "1"},
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}},
        # the request audited: the hospital's msgid, to find its own access by (a system
        # object in the role of the query)
        {"what": {"identifier": {"system": MSGID_SYSTEM, "value": entry["msgid"]}},
         "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                  "code": "2"},
         "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                  "code": "24"}}]
    if "doc" in entry:
        entity.append({"what": {"reference": f"DocumentReference/{entry['doc']}"},
                       "type": {"system": "http://terminology.hl7.org/CodeSystem/"
                                          "audit-entity-type", "code": "2"}})
    # a code of the sender's own making is not kept in the trail: it names no purpose
    purpose = entry["purpose"]
    purpose_codes = [{"system": ACT_REASON, "code": purpose} if purpose in PURPOSE_OF_USE
                     else {"display": "not a v3-ActReason purpose of use"}]
    if entry.get("btg"):
        purpose_codes.append({"system": ACT_REASON, "code": "BTG"})
    requester_province, source_province = entry["by_at"], entry["at"]
    return {
        "resourceType": "AuditEvent",
        "id": entry["id"],
        "type": {"system": AUDIT_TYPE, "code": "rest"},
        "subtype": subtype,
        "action": action,
        "recorded": fhir_time(entry["recorded"]),
        "outcome": entry["outcome"],
        "outcomeDesc": entry["why"],
        "purposeOfEvent": [{"coding": purpose_codes}],
        "agent": [{"who": {"identifier": {"system": FIXMEDINS_SYSTEM, "value": entry["by"]}},
                   "requestor": True, **({"location": _province(requester_province)}
                                         if requester_province else {})}],
        "source": {"observer": _province(source_province) if source_province
                   else {"display": "the national platform"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                       "security-source-type", "code": "4"}]},
        "entity": entity,
    }


def _province(admdvs: str) -> dict[str, Any]:
    return {"identifier": {"system": PROVINCE_SYSTEM, "value": admdvs}}
