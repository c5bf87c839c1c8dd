"""The visit log (one visit per line, JSON) and the hospital's side of the protocol for one
visit: 1101 -> 2201 -> 2204 -> 2207, each request built from the answers before it.

The same `VisitSession` drives the Kafka hospitals and the offline oracle, so both send
byte-identical requests for the same visit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from messages.codes import Infno

VISITLOG_VERSION = 1
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

#: Simulated seconds after the visit begins at which each step is sent.
STEP_OFFSETS = {Infno.PERSON_INFO: 0, Infno.OUTPATIENT_REGISTER: 60, Infno.FEE_UPLOAD: 600,
                Infno.OUTPATIENT_SETTLE: 900}
STEPS = tuple(STEP_OFFSETS)


class VisitItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str  # med_list_codg
    cnt: int = Field(gt=0)
    pric: int = Field(gt=0)  # fen


class Visit(BaseModel):
    """One outpatient visit as a hospital will carry it out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = VISITLOG_VERSION
    visit_no: int
    certno: str
    fixmedins_code: str
    mdtrtarea_admvs: str
    begntime: str
    seq: int = Field(ge=0, lt=10_000)  # the hospital's msgid sequence at the first step
    acct_used_flag: Literal["0", "1"] = "1"
    items: list[VisitItem]


def step_time(begntime: str, infno: str) -> str:
    t = datetime.strptime(begntime, TIME_FORMAT) + timedelta(seconds=STEP_OFFSETS[infno])
    return t.strftime(TIME_FORMAT)


def make_msgid(fixmedins_code: str, inf_time: str, seq: int) -> str:
    stamp = inf_time.replace("-", "").replace(" ", "").replace(":", "")
    return f"{fixmedins_code}{stamp}{seq % 10_000:04d}"


class VisitSession:
    """The hospital's state for one visit. `next_request()` gives the next request (or None when
    the visit is over); `on_answer()` takes its answer."""

    def __init__(self, visit: Visit) -> None:
        self.visit = visit
        self.step = 0
        self.failed: dict[str, Any] | None = None  # the first failed answer, if any
        self.answers: dict[str, dict[str, Any]] = {}  # infno -> answer
        self._pending: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.failed is not None or self.step >= len(STEPS)

    @property
    def infno(self) -> str:
        return STEPS[self.step]

    def next_request(self) -> dict[str, Any] | None:
        if self.done:
            return None
        v = self.visit
        infno = self.infno
        inf_time = step_time(v.begntime, infno)
        insuplc = ""
        if infno != Infno.PERSON_INFO:
            insuinfo = self.answers[Infno.PERSON_INFO]["output"]["insuinfo"][0]
            insuplc = insuinfo["insuplc_admdvs"]
        self._pending = {
            "infno": infno,
            "msgid": make_msgid(v.fixmedins_code, inf_time, v.seq + self.step),
            "mdtrtarea_admvs": v.mdtrtarea_admvs,
            "insuplc_admdvs": insuplc,
            "fixmedins_code": v.fixmedins_code,
            "inf_time": inf_time,
            "input": self._input(infno, inf_time),
        }
        return self._pending

    def _input(self, infno: str, inf_time: str) -> dict[str, Any]:
        v = self.visit
        if infno == Infno.PERSON_INFO:
            return {"mdtrt_cert_type": "02", "mdtrt_cert_no": v.certno, "begntime": v.begntime,
                    "psn_cert_type": "01", "certno": v.certno}
        info = self.answers[Infno.PERSON_INFO]["output"]
        psn_no = info["baseinfo"]["psn_no"]
        insutype = info["insuinfo"][0]["insutype"]
        if infno == Infno.OUTPATIENT_REGISTER:
            return {"psn_no": psn_no, "insutype": insutype, "begntime": v.begntime,
                    "mdtrt_cert_type": "02", "mdtrt_cert_no": v.certno,
                    "ipt_otp_no": f"MZ{v.visit_no:010d}", "med_type": "11"}
        mdtrt_id = self.answers[Infno.OUTPATIENT_REGISTER]["output"]["data"]["mdtrt_id"]
        if infno == Infno.FEE_UPLOAD:
            return {"feedetail": [
                {"feedetl_sn": f"{i + 1:04d}", "mdtrt_id": mdtrt_id, "psn_no": psn_no,
                 "med_type": "11", "fee_ocur_time": inf_time, "med_list_codg": it.code,
                 "medins_list_codg": it.code, "det_item_fee_sumamt": it.cnt * it.pric,
                 "cnt": it.cnt, "pric": it.pric}
                for i, it in enumerate(v.items)]}
        return {"psn_no": psn_no, "mdtrt_cert_type": "02", "mdtrt_cert_no": v.certno,
                "med_type": "11", "medfee_sumamt": sum(it.cnt * it.pric for it in v.items),
                "psn_setlway": "01", "mdtrt_id": mdtrt_id, "insutype": insutype,
                "acct_used_flag": v.acct_used_flag}

    def on_answer(self, answer: dict[str, Any]) -> None:
        if self._pending is None or answer.get("inf_refmsgid") != self._pending["msgid"]:
            return  # not the answer we wait for (e.g. a late duplicate)
        self._pending = None
        self.answers[self.infno] = answer
        if answer.get("infcode") != 0:
            self.failed = answer
        else:
            self.step += 1

    @property
    def settlement(self) -> dict[str, Any] | None:
        ans = self.answers.get(Infno.OUTPATIENT_SETTLE)
        return ans["output"]["setlinfo"] if ans and ans.get("infcode") == 0 else None
