"""Transaction numbers (infno) and the platform's stable error codes."""

from __future__ import annotations

from enum import StrEnum


class Infno(StrEnum):
    """NHSA transaction numbers used by designated institutions (DOMAIN.md §2)."""

    SIGN_IN = "9001"
    PERSON_INFO = "1101"
    OUTPATIENT_REGISTER = "2201"
    OUTPATIENT_REGISTER_CANCEL = "2202"
    FEE_UPLOAD = "2204"
    FEE_UPLOAD_CANCEL = "2205"
    OUTPATIENT_PRESETTLE = "2206"
    OUTPATIENT_SETTLE = "2207"
    OUTPATIENT_SETTLE_CANCEL = "2208"
    INPATIENT_FEE_UPLOAD = "2301"
    INPATIENT_FEE_UPLOAD_CANCEL = "2302"
    INPATIENT_PRESETTLE = "2303"
    INPATIENT_SETTLE = "2304"
    INPATIENT_SETTLE_CANCEL = "2305"
    INPATIENT_ADMIT = "2401"
    INPATIENT_DISCHARGE = "2402"
    REVERSAL = "2601"
    RECONCILE_TOTALS = "3201"
    RECONCILE_DETAILS = "3202"
    CLEARING_APPLICATION = "3203"
    ACCUMULATORS = "5206"
    # Health-record exchange (DOMAIN.md §6): huimin's own numbers, not NHSA's; FHIR in and out.
    EHR_PUBLISH = "7001"  # IHE MHD ITI-65 Provide Document Bundle
    EHR_FIND = "7002"  # ITI-67 Find Document References
    EHR_RETRIEVE = "7003"  # ITI-68 Retrieve Document
    EHR_LAB_LOOKUP = "7004"  # reusable lab results (检查检验结果互认)


#: Computed by the insured place (参保地); the treatment side forwards them.
INSURED_SIDE = frozenset({
    Infno.PERSON_INFO, Infno.OUTPATIENT_PRESETTLE, Infno.OUTPATIENT_SETTLE,
    Infno.OUTPATIENT_SETTLE_CANCEL, Infno.INPATIENT_PRESETTLE, Infno.INPATIENT_SETTLE,
    Infno.INPATIENT_SETTLE_CANCEL, Infno.ACCUMULATORS,
})
SETTLEMENTS = frozenset({Infno.OUTPATIENT_SETTLE, Infno.INPATIENT_SETTLE})
PRESETTLEMENTS = frozenset({Infno.OUTPATIENT_PRESETTLE, Infno.INPATIENT_PRESETTLE})
CANCELLATIONS = frozenset({Infno.OUTPATIENT_SETTLE_CANCEL, Infno.INPATIENT_SETTLE_CANCEL})
REGISTRATIONS = frozenset({Infno.OUTPATIENT_REGISTER, Infno.INPATIENT_ADMIT})
FEE_UPLOADS = frozenset({Infno.FEE_UPLOAD, Infno.INPATIENT_FEE_UPLOAD})
FEE_CANCELLATIONS = frozenset({Infno.FEE_UPLOAD_CANCEL, Infno.INPATIENT_FEE_UPLOAD_CANCEL})
#: Reconciliation (by a hospital) and clearing application (by a treatment-province agency):
#: keyed by the sender and answered from the national clearing events.
RECONCILIATIONS = frozenset({Infno.RECONCILE_TOTALS, Infno.RECONCILE_DETAILS,
                             Infno.CLEARING_APPLICATION})
EHR = frozenset({Infno.EHR_PUBLISH, Infno.EHR_FIND, Infno.EHR_RETRIEVE, Infno.EHR_LAB_LOOKUP})
#: Transactions a 2601 can reverse: what they changed is undone (queries change nothing);
#: a registration's cancellation and a discharge reopen the visit (docs/design.md).
REVERSIBLE = SETTLEMENTS | PRESETTLEMENTS | REGISTRATIONS | FEE_UPLOADS | frozenset({
    Infno.PERSON_INFO, Infno.ACCUMULATORS, Infno.OUTPATIENT_REGISTER_CANCEL,
    Infno.INPATIENT_DISCHARGE})


INFCODE_OK = 0
INFCODE_FAIL = -1
#: How a visit ends at the hospital without the platform's answer (a result's `outcome`): it
#: gave up waiting for one, or did not send a request that had another visit's msgid.
TIMED_OUT = "TIMEOUT"
REPEATED_MSGID = "REPEATED_MSGID"


class ErrorCode(StrEnum):
    """Stable machine-readable reasons carried in a failed answer (`err_code`)."""

    MALFORMED_JSON = "E1001"
    SCHEMA_VIOLATION = "E1002"
    UNSUPPORTED_INFNO = "E1003"
    MESSAGE_TOO_LARGE = "E1004"
    MSGID_REUSED = "E1005"
    INVALID_CERTNO = "E2001"
    UNKNOWN_PERSON = "E2002"
    PERSON_MISMATCH = "E2003"
    INSURANCE_SUSPENDED = "E2004"
    UNKNOWN_HOSPITAL = "E3001"
    UNKNOWN_REGION = "E3002"
    WRONG_PROVINCE = "E3003"
    INSURED_PLACE_MISMATCH = "E3004"
    WRONG_SENDER = "E3005"
    UNKNOWN_VISIT = "E4001"
    VISIT_ALREADY_SETTLED = "E4002"
    NO_FEES = "E4003"
    AMOUNT_MISMATCH = "E4004"
    DUPLICATE_FEE_ITEM = "E4005"
    INVALID_AMOUNT = "E4006"
    AMOUNT_OVERFLOW = "E4007"
    UNKNOWN_SETTLEMENT = "E4008"
    SETTLEMENT_ALREADY_CANCELLED = "E4009"
    WRONG_SEQUENCE = "E4010"
    REVERSED = "E4011"
    NOT_REVERSIBLE = "E4012"
    INVALID_FHIR = "E5001"
    CONSENT_REFUSED = "E5002"
    UNKNOWN_DOCUMENT = "E5003"
    RECORDS_FULL = "E5004"
    UNSIGNED = "E6001"
    FORGED = "E6002"
    STALE = "E6003"
    INTERNAL_ERROR = "E9001"
    TOO_LARGE = "E9002"
