"""Transaction numbers (infno) and the platform's stable error codes."""

from __future__ import annotations

from enum import StrEnum


class Infno(StrEnum):
    """NHSA transaction numbers used by designated institutions (DOMAIN.md §2)."""

    SIGN_IN = "9001"
    PERSON_INFO = "1101"
    OUTPATIENT_REGISTER = "2201"
    FEE_UPLOAD = "2204"
    OUTPATIENT_SETTLE = "2207"


INFCODE_OK = 0
INFCODE_FAIL = -1


class ErrorCode(StrEnum):
    """Stable machine-readable reasons carried in a failed answer (`err_code`)."""

    MALFORMED_JSON = "E1001"
    SCHEMA_VIOLATION = "E1002"
    UNSUPPORTED_INFNO = "E1003"
    INVALID_CERTNO = "E2001"
    UNKNOWN_PERSON = "E2002"
    PERSON_MISMATCH = "E2003"
    UNKNOWN_HOSPITAL = "E3001"
    UNKNOWN_REGION = "E3002"
    WRONG_PROVINCE = "E3003"
    INSURED_PLACE_MISMATCH = "E3004"
    UNKNOWN_VISIT = "E4001"
    VISIT_ALREADY_SETTLED = "E4002"
    NO_FEES = "E4003"
    AMOUNT_MISMATCH = "E4004"
    DUPLICATE_FEE_ITEM = "E4005"
    INVALID_AMOUNT = "E4006"
