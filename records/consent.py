"""Consent decisions (DOMAIN.md §6): who may read a person's records, for what purpose.

Health records are shared for treatment only (谁使用、谁负责: the reader states a purpose and
answers for it). Within the province that holds them they are readable for treatment; across
provinces too, unless the person's Consent denies cross-region sharing. Emergency treatment
reads past that denial (break-the-glass), and is audited as such. Payment and research
purposes are refused: DOMAIN.md shares records for care, not for other uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from records.codes import ACT_REASON, CERTNO_SYSTEM, ETREAT, PROVINCE_SYSTEM, PURPOSES, TREAT
from settlement.reference import DENY_CROSS_REGION


@dataclass(frozen=True, slots=True)
class Decision:
    permitted: bool
    reason: str  # says why, without personal data
    break_glass: bool = False


def decide(sharing: str, purpose: str, requester_province: str,
           source_province: str) -> Decision:
    if purpose not in (TREAT, ETREAT):
        name = PURPOSES.get(purpose, purpose)
        return Decision(False, f"purpose of use {purpose} ({name}) is not permitted: records "
                               "are shared for treatment only")
    if requester_province == source_province:
        return Decision(True, "treatment within the province that holds the records")
    if sharing != DENY_CROSS_REGION:
        return Decision(True, "cross-region treatment, permitted by the person's consent")
    if purpose == ETREAT:
        return Decision(True, "emergency treatment overrides the denial of cross-region "
                              "sharing (break-the-glass)", break_glass=True)
    return Decision(False, f"the person's consent denies sharing records held in "
                           f"{source_province} with {requester_province}")


def consent_resource(certno: str, sharing: str, province: str) -> dict[str, Any]:
    """The person's Consent as FHIR R4: permit for treatment, with a deny provision for
    readers outside the home province when cross-region sharing is denied."""
    provision: dict[str, Any] = {
        "type": "permit",
        "purpose": [{"system": ACT_REASON, "code": TREAT}, {"system": ACT_REASON, "code": ETREAT}]}
    if sharing == DENY_CROSS_REGION:
        provision["provision"] = [{
            "type": "deny", "purpose": [{"system": ACT_REASON, "code": TREAT}],
            "actor": [{"role": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                "code": "IRCP"}]},
                "reference": {"display": f"any institution outside {province}",
                              "identifier": {"system": PROVINCE_SYSTEM, "value": province}}}]}]
    return {"resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                            "consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"identifier": {"system": CERTNO_SYSTEM, "value": certno}},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                 "v3-ActCode", "code": "OPTIN"}]},
            "provision": provision}
