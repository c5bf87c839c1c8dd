"""The hospital request envelope and the platform answer (DOMAIN.md §2).

Hospitals key every settlement request by the patient's certno (the partition key), send one
JSON `Request`, and receive one `Answer` on `hosp.responses`. Inside the platform a request
travels wrapped with the platform's own context (`ctx`) and the hop `trace`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from messages.codes import INFCODE_FAIL, INFCODE_OK, ErrorCode

Admdvs = Annotated[str, StringConstraints(pattern=r"^\d{6}$")]
#: `H…` a designated hospital; `J…` a treatment-province agency (经办机构, only for 3203).
FixmedinsCode = Annotated[str, StringConstraints(pattern=r"^[HJ]\d{11}$")]
MsgId = Annotated[str, StringConstraints(pattern=r"^[HJ]\d{11}\d{14}\d{4}$")]
InfTime = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")]


class Request(BaseModel):
    """A hospital's request. `msgid` = fixmedins_code (12) + yyyyMMddHHmmss (14) + seq (4)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    infno: str = Field(pattern=r"^\d{4}$")
    msgid: MsgId
    mdtrtarea_admvs: Admdvs
    insuplc_admdvs: Annotated[str, StringConstraints(pattern=r"^(\d{6})?$")] = ""
    fixmedins_code: FixmedinsCode
    inf_time: InfTime
    input: dict[str, Any]


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
