"""The FHIR R4 document a hospital writes after a visit (DOMAIN.md §6), and the IHE MHD ITI-65
transaction it publishes it in.

A document Bundle: Composition first, then Patient (identified by certno), Organization,
Encounter, Condition (ICD-10), Observation (LOINC lab results) and MedicationRequest. Content is
derived from the visit alone (a seeded generator per visit), so the hospitals and the oracle
write byte-identical documents. Ids are UUIDs derived from the publishing msgid.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from records.codes import (
    CERTNO_SYSTEM,
    DIAGNOSES,
    DISCHARGE_SUMMARY,
    FIXMEDINS_SYSTEM,
    ICD10,
    LAB_BY_CODE,
    LAB_TESTS,
    LOINC,
    OUTPATIENT_NOTE,
    UCUM,
    LabTest,
)

_NS = uuid.UUID("6f1c2d1e-8a4b-4f7e-9a55-3c2f0b7d9e10")
MHD_PROVIDE = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Minimal.ProvideBundle"
#: Lab panels by diagnosis: a chronic patient's tests repeat, so results can be reused.
_PANELS = {"E11.9": ("15074-8", "4548-4", "14682-9"), "I10": ("14647-2", "14682-9", "1742-6"),
           "I25.1": ("14647-2", "718-7")}
_ACUTE_PANEL = ("718-7", "6690-2", "30522-7", "1742-6")


def fhir_time(inf_time: str) -> str:
    """`yyyy-MM-dd HH:mm:ss` (Beijing time) as a FHIR dateTime."""
    return datetime.fromisoformat(inf_time).strftime("%Y-%m-%dT%H:%M:%S+08:00")


def uid(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


@dataclass(frozen=True, slots=True)
class Clinical:
    """What happened clinically in one visit."""

    diagnoses: tuple[tuple[str, str], ...]
    labs: tuple[LabTest, ...]  # the tests the visit calls for (some may be reused)


def clinical_content(visit_no: int, certno: str, inpatient: bool) -> Clinical:
    """Deterministic per person and visit: a person keeps their chronic condition, if any, so
    their lab panel repeats across visits."""
    person = random.Random(f"person:{certno}")
    chronic = person.choice(("E11.9", "I10", "I25.1")) if person.random() < 0.3 else None
    r = random.Random(f"visit:{visit_no}:{certno}")
    codes = [chronic] if chronic and r.random() < 0.7 else []
    codes.append(r.choice([c for c, _ in DIAGNOSES if c != chronic]))
    panel = _PANELS.get(codes[0], _ACUTE_PANEL)
    n = min(len(panel), r.randint(1, 2 + inpatient))
    labs = tuple(LAB_BY_CODE[c] for c in sorted(r.sample(panel, n)))
    names = dict(DIAGNOSES)
    return Clinical(tuple((c, names[c]) for c in codes), labs)


def lab_value(test: LabTest, visit_no: int) -> float:
    r = random.Random(f"lab:{visit_no}:{test.loinc}")
    span = test.high - test.low
    return round(test.low + span * r.uniform(-0.1, 1.2), 1)


def _ref(full_url: str) -> dict[str, str]:
    return {"reference": full_url}


def visit_document(*, msgid: str, certno: str, gender: str, birth_date: str,
                   fixmedins_code: str, hospital_name: str, admdvs: str, inpatient: bool,
                   begntime: str, endtime: str, visit_no: int, clinical: Clinical,
                   performed: list[str], medications: list[tuple[str, int]]) -> dict[str, Any]:
    """The visit's document Bundle. `performed`: LOINC codes of the tests done at this visit
    (the others were reused); `medications`: (med_list_codg, quantity) of its drugs."""
    urls = {name: f"urn:uuid:{uid(msgid, name)}" for name in ("patient", "org", "encounter")}
    patient = {"resourceType": "Patient", "id": uid(msgid, "patient"),
               "identifier": [{"system": CERTNO_SYSTEM, "value": certno}],
               "gender": "male" if gender == "1" else "female", "birthDate": birth_date}
    org = {"resourceType": "Organization", "id": uid(msgid, "org"),
           "identifier": [{"system": FIXMEDINS_SYSTEM, "value": fixmedins_code}],
           "name": hospital_name,
           "address": [{"district": admdvs, "country": "CN"}]}
    encounter = {"resourceType": "Encounter", "id": uid(msgid, "encounter"), "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                           "code": "IMP" if inpatient else "AMB"},
                 "subject": _ref(urls["patient"]),
                 "period": {"start": fhir_time(begntime), "end": fhir_time(endtime)},
                 "serviceProvider": _ref(urls["org"])}
    entries: list[tuple[str, dict[str, Any]]] = []
    for i, (code, display) in enumerate(clinical.diagnoses):
        entries.append(("Condition", {
            "resourceType": "Condition", "id": uid(msgid, "condition", str(i)),
            "clinicalStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "active"}]},
            "code": {"coding": [{"system": ICD10, "code": code, "display": display}]},
            "subject": _ref(urls["patient"]), "encounter": _ref(urls["encounter"]),
            "recordedDate": fhir_time(begntime)}))
    for test in clinical.labs:
        if test.loinc not in performed:
            continue
        entries.append(("Observation", {
            "resourceType": "Observation", "id": uid(msgid, "obs", test.loinc),
            "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": test.loinc, "display": test.display}]},
            "subject": _ref(urls["patient"]), "encounter": _ref(urls["encounter"]),
            "effectiveDateTime": fhir_time(begntime), "performer": [_ref(urls["org"])],
            "valueQuantity": {"value": lab_value(test, visit_no), "unit": test.unit,
                              "system": UCUM, "code": test.unit}}))
    ordered: dict[str, int] = {}  # a drug billed in two batches of a stay: one request of
    for code, qty in medications:  # their total (one id a drug; a review found two entries
        ordered[code] = ordered.get(code, 0) + qty  # under one fullUrl, against bdl-7)
    for code, qty in ordered.items():
        entries.append(("MedicationRequest", {
            "resourceType": "MedicationRequest", "id": uid(msgid, "med", code),
            "status": "completed", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "urn:huimin:med_list_codg",
                                                      "code": code}]},
            "subject": _ref(urls["patient"]), "encounter": _ref(urls["encounter"]),
            "authoredOn": fhir_time(begntime),
            "dispenseRequest": {"quantity": {"value": qty}}}))
    doc_type = DISCHARGE_SUMMARY if inpatient else OUTPATIENT_NOTE
    full = [(f"urn:uuid:{r['id']}", r) for _, r in entries]
    sections = [{"title": title, "entry": [_ref(u) for u, r in full if r["resourceType"] == kind]}
                for title, kind in (("Diagnoses", "Condition"), ("Results", "Observation"),
                                    ("Medications", "MedicationRequest"))]
    composition = {
        "resourceType": "Composition", "id": uid(msgid, "composition"), "status": "final",
        "type": {"coding": [{"system": LOINC, "code": doc_type[0], "display": doc_type[1]}]},
        "subject": _ref(urls["patient"]), "encounter": _ref(urls["encounter"]),
        "date": fhir_time(endtime), "author": [_ref(urls["org"])], "title": doc_type[1],
        "custodian": _ref(urls["org"]),
        "section": [s for s in sections if s["entry"]]}
    return {
        "resourceType": "Bundle", "id": uid(msgid, "document"),
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uid(msgid, 'doc')}"},
        "type": "document", "timestamp": fhir_time(endtime),
        "entry": [{"fullUrl": f"urn:uuid:{composition['id']}", "resource": composition},
                  {"fullUrl": urls["patient"], "resource": patient},
                  {"fullUrl": urls["org"], "resource": org},
                  {"fullUrl": urls["encounter"], "resource": encounter},
                  *({"fullUrl": u, "resource": r} for u, r in full)]}


def provide_bundle(document: dict[str, Any], certno: str, fixmedins_code: str,
                   msgid: str, inf_time: str) -> dict[str, Any]:
    """ITI-65 Provide Document Bundle: a transaction with the SubmissionSet (List), the
    DocumentReference and the document itself."""
    doc_url = f"urn:uuid:{uid(msgid, 'doc')}"
    composition = document["entry"][0]["resource"]
    subject = {"identifier": {"system": CERTNO_SYSTEM, "value": certno}}
    author = {"identifier": {"system": FIXMEDINS_SYSTEM, "value": fixmedins_code}}
    docref = {"resourceType": "DocumentReference", "id": uid(msgid, "docref"),
              "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": doc_url},
              "status": "current", "type": composition["type"], "subject": subject,
              "date": fhir_time(inf_time), "author": [author],
              "content": [{"attachment": {"contentType": "application/fhir+json",
                                          "url": doc_url, "title": composition["title"]},
                           "format": {"system": "http://ihe.net/fhir/ihe.formatcode.fhir/"
                                                "CodeSystem/formatcode",
                                      "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient"}}]}
    submission = {"resourceType": "List", "id": uid(msgid, "submissionset"), "status": "current",
                  "mode": "working", "subject": subject, "date": fhir_time(inf_time),
                  "code": {"coding": [{"system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/"
                                                 "MHDlistTypes", "code": "submissionset"}]},
                  "entry": [{"item": _ref(f"urn:uuid:{docref['id']}")}]}
    return {"resourceType": "Bundle", "id": uid(msgid, "provide"), "type": "transaction",
            "meta": {"profile": [MHD_PROVIDE]},
            "entry": [
                {"fullUrl": f"urn:uuid:{submission['id']}", "resource": submission,
                 "request": {"method": "POST", "url": "List"}},
                {"fullUrl": f"urn:uuid:{docref['id']}", "resource": docref,
                 "request": {"method": "POST", "url": "DocumentReference"}},
                {"fullUrl": doc_url, "resource": document,
                 "request": {"method": "POST", "url": "Bundle"}}]}


__all__ = ["LAB_TESTS", "Clinical", "clinical_content", "provide_bundle", "visit_document"]
