"""Code systems and the clinical vocabulary of the simulated documents (DOMAIN.md §6).

The lab tests carry a price (fen): what a hospital saves when it reuses a recognised result
(检查检验结果互认) instead of repeating the test.
"""

from __future__ import annotations

from dataclasses import dataclass

from messages.identity import CERTNO_SYSTEM  # noqa: F401  (re-exported)
from messages.transactions import LOINC_SYSTEM as LOINC  # noqa: F401  (re-exported: a 7002 type names it)

PSN_NO_SYSTEM = "urn:huimin:psn_no"  # the insured platform's person number
FIXMEDINS_SYSTEM = "urn:huimin:fixmedins_code"  # designated institution code
PROVINCE_SYSTEM = "urn:huimin:admdvs"  # GB/T 2260 division code
ICD10 = "http://hl7.org/fhir/sid/icd-10"
UCUM = "http://unitsofmeasure.org"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
IHE_EVENTS = "urn:ihe:event-type-code"
#: huimin's own transactions (a 7004 lab-result lookup is no IHE transaction) and requests
INFNO_SYSTEM = "urn:huimin:infno"
MSGID_SYSTEM = "urn:huimin:msgid"

#: Purposes of use a hospital may state (v3 ActReason). Emergency treatment reads past a
#: denial of cross-region sharing (break-the-glass) and is audited as such.
TREAT, ETREAT, HPAYMT, HRESCH = "TREAT", "ETREAT", "HPAYMT", "HRESCH"
PURPOSES = {TREAT: "treatment", ETREAT: "emergency treatment", HPAYMT: "healthcare payment",
            HRESCH: "healthcare research"}
#: v3-ActReason's purposes of use (its PurposeOfUse concepts): a request's `purpose` that is
#: one of them is named back in a refusal and its audit; any other, of the sender's own
#: making (the pattern lets a name in capitals through), is not
PURPOSE_OF_USE = frozenset((
    "BIORCH", "BTG", "CAREMGT", "CLINTRCH", "CLINTRCHNPC", "CLINTRCHPC", "CLINTRL", "CLMATTCH",
    "COC", "COMPT", "COVAUTH", "COVERAGE", "DECEASED", "DISASTER", "DONAT", "DSRCH",
    "ELIGDTRM", "ELIGVER", "ENROLLM", "ERTREAT", "ETREAT", "FAMRQT", "FRAUD", "GOV",
    "GOVMRKT", "HACCRED", "HCOMPL", "HDECD", "HDIRECT", "HDM", "HLEGAL", "HMARKT", "HOPERAT",
    "HOUTCOMS", "HPAYMT", "HPRGRP", "HQUALIMP", "HRESCH", "HSYSADMIN", "HTEST", "LABELING",
    "MEMADMIN", "METAMGT", "MILCDM", "MILDCRG", "PATADMIN", "PATRQT", "PATSFTY", "PERFMSR",
    "POARCH", "POPHLTH", "PRECLINTRCH", "PUBHLTH", "PWATRNY", "RECORDMGT", "REMITADV",
    "SRVC", "SUPNWK", "SYSDEV", "THREAT", "TRAIN", "TRANSRCH", "TREAT", "TRS"))

OUTPATIENT_NOTE = ("34133-9", "Summary of episode note")
DISCHARGE_SUMMARY = ("18842-5", "Discharge summary")


@dataclass(frozen=True, slots=True)
class LabTest:
    loinc: str
    display: str
    unit: str
    low: float  # reference range, for generating plausible values
    high: float
    price: int  # fen


LAB_TESTS = (
    LabTest("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 11.0, 17.0, 2_000),
    LabTest("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 4.0,
            10.0, 1_500),
    LabTest("15074-8", "Glucose [Moles/volume] in Blood", "mmol/L", 3.9, 6.1, 1_000),
    LabTest("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L", 44.0, 133.0,
            1_500),
    LabTest("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
            "U/L", 7.0, 40.0, 1_200),
    LabTest("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.0, 6.0, 6_000),
    LabTest("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma", "mmol/L", 2.8, 5.2,
            1_000),
    LabTest("30522-7", "C reactive protein [Mass/volume] in Serum or Plasma by High sensitivity "
            "method", "mg/L", 0.0, 3.0, 3_000),
)
LAB_BY_CODE = {t.loinc: t for t in LAB_TESTS}

DIAGNOSES = (
    ("J06.9", "Acute upper respiratory infection, unspecified"),
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("K29.7", "Gastritis, unspecified"),
    ("M54.5", "Low back pain"),
    ("J18.9", "Pneumonia, unspecified organism"),
    ("N39.0", "Urinary tract infection, site not specified"),
    ("I25.1", "Atherosclerotic heart disease"),
    ("S52.5", "Fracture of lower end of radius"),
    ("K35.8", "Acute appendicitis, other and unspecified"),
)
