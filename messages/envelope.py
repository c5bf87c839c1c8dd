"""The hospital request envelope and the platform answer (DOMAIN.md §2).

Hospitals key every settlement request by the patient's certno (the partition key), send one
JSON `Request`, and receive one `Answer` on `hosp.responses`. Inside the platform a request
travels wrapped with the platform's own context (`ctx`) and the hop `trace`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, TypeGuard

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from messages.codes import INFCODE_FAIL, INFCODE_OK, ErrorCode
from messages.identity import holds_certno

# Digits are [0-9], not \d: pydantic's (Rust) regex takes any script's digits for \d, and
# an infno of Arabic-Indic digits was accepted.
Admdvs = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
#: `H…` a designated hospital; `J…` a treatment-province agency (经办机构, only for 3203).
FixmedinsCode = Annotated[str, StringConstraints(pattern=r"^[HJ][0-9]{11}$")]


#: The years a request's dates may name: the rules count back a 7-day window and forward a
#: year's accumulators, which near year 1 or 9999 went past what a date can hold (an
#: internal error, E9001, instead of a refusal).
FIRST_YEAR, LAST_YEAR = 1900, 2999


def _real_time(iso: str) -> None:
    """The shape is checked by pattern; this refuses 2026-02-30, month 13, year 0."""
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError("not a real date and time") from None  # the value is not echoed
    if not FIRST_YEAR <= when.year <= LAST_YEAR:
        raise ValueError(f"not a date and time in the years {FIRST_YEAR}–{LAST_YEAR}")


def _real_inf_time(value: str) -> str:
    _real_time(value)
    return value


def _real_day(value: str) -> str:
    _real_time(value + " 00:00:00")
    return value


def real_msgid_time(msgid: str) -> str:
    """The msgid, if its yyyyMMddHHmmss is a real time; else ValueError (not echoing it)."""
    t = msgid[12:26]
    _real_time(f"{t[:4]}-{t[4:6]}-{t[6:8]} {t[8:10]}:{t[10:12]}:{t[12:]}")
    return msgid


_MSGID_SHAPE = re.compile(r"[HJ][0-9]{29}")
_INF_TIME_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")


def is_inf_time(value: Any) -> bool:
    """Whether `value` is a time as requests give it (`InfTime`): yyyy-MM-dd HH:mm:ss, a real
    one. The exact shape first: `datetime.fromisoformat` alone also takes ISO week dates and
    offsets of the same length ("2026-W48-1 09:00:00"), whose first seven characters name
    no month."""
    if not (isinstance(value, str) and _INF_TIME_SHAPE.fullmatch(value)):
        return False
    try:
        _real_time(value)
    except ValueError:
        return False
    return True


def msgid_shaped(value: Any) -> TypeGuard[str]:
    """Of a msgid's shape: H (a hospital's) or J (an agency's) and 29 digits."""
    return isinstance(value, str) and _MSGID_SHAPE.fullmatch(value) is not None


def answerable_msgid(value: Any) -> TypeGuard[str]:
    """Whether a msgid may be echoed (a refusal's `inf_refmsgid` and ctx, a dead letter's
    listing): of a msgid's shape, stamped with a real time, and no citizen ID number can be
    read in it (`holds_certno`). A request whose msgid is not is dead-lettered, not
    answered: a sender that put a name or an ID number there would have it sent back."""
    if not msgid_shaped(value):
        return False
    try:
        real_msgid_time(value)
    except ValueError:
        return False
    return not holds_certno(value)


MsgId = Annotated[str, StringConstraints(pattern=r"^[HJ][0-9]{11}[0-9]{14}[0-9]{4}$"),
                  AfterValidator(real_msgid_time)]
InfTime = Annotated[str, StringConstraints(
    pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"),
    AfterValidator(_real_inf_time)]
Day = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
                AfterValidator(_real_day)]
_STAMP = str.maketrans("", "", "-: ")


def inf_time_stamp(inf_time: str) -> str:
    """`yyyy-MM-dd HH:mm:ss` as the `yyyyMMddHHmmss` a msgid carries (and rows compare)."""
    return inf_time.translate(_STAMP)


class Request(BaseModel):
    """A hospital's request. `msgid` = fixmedins_code (12) + yyyyMMddHHmmss (14) + seq (4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    infno: str = Field(pattern=r"^[0-9]{4}$")
    msgid: MsgId
    mdtrtarea_admvs: Admdvs
    insuplc_admdvs: Annotated[str, StringConstraints(pattern=r"^([0-9]{6})?$")] = ""
    fixmedins_code: FixmedinsCode
    inf_time: InfTime
    input: dict[str, Any]

    @model_validator(mode="after")
    def _msgid_names_sender_and_time(self) -> Request:
        """The msgid is the sender's own and stamped with the request's time: answers are
        remembered by msgid for the 7-day window (settlement/retention.py), so a msgid of
        another sender or time would collide with, or outlive, another request's answer."""
        if self.msgid[:12] != self.fixmedins_code:
            raise ValueError("msgid must begin with the sender's fixmedins_code")
        if self.msgid[12:26] != inf_time_stamp(self.inf_time):
            raise ValueError("msgid's yyyyMMddHHmmss must be the request's inf_time")
        return self


class Answer(BaseModel):
    """The platform's answer. `infcode` 0 is success, -1 failure with `err_code` and `err_msg`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    infcode: int
    inf_refmsgid: str
    err_code: str = ""
    err_msg: str = ""
    output: dict[str, Any] = Field(default_factory=dict)


def ok_answer(msgid: str, output: dict[str, Any]) -> dict[str, Any]:
    return {"infcode": INFCODE_OK, "inf_refmsgid": msgid, "err_code": "", "err_msg": "",
            "output": output}


def error_answer(msgid: str, code: ErrorCode, err_msg: str) -> dict[str, Any]:
    return {"infcode": INFCODE_FAIL, "inf_refmsgid": msgid, "err_code": code.value,
            "err_msg": err_msg, "output": {}}


def province_of(admdvs: str) -> str:
    """`PP0000` for any admdvs `PPCCXX`."""
    return admdvs[:2] + "0000"


def is_cross_province(mdtrtarea_admvs: str, insuplc_admdvs: str) -> bool:
    """Cross-province is decided only by the provinces of the two places (DOMAIN.md §2)."""
    return province_of(mdtrtarea_admvs) != province_of(insuplc_admdvs)
