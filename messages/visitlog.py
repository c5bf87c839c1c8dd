"""The visit log (one visit per line, JSON) and the hospital's side of the protocol for one
visit: a plan of steps, each request built from the answers before it.

A step is an infno with optional marks:
    `~`  the answer is lost: send and go on without waiting (a 2601 usually follows)
    `!`  a refusal is expected: go on after it
    `=`  send the very same request twice (a duplicate) and wait for both answers
    `^`  (2601 only) reverse the *next* step's msgid in advance, before it is sent
    `d`  (fee uploads) resend the previous upload's items, feedetl_sn and all
    `x`  (cancellations) name a settlement that does not exist
A bare `2601` reverses the request sent just before it. A stay's items go in `batches` 2301
uploads; the 2301 after a 2302 (which cancels every item) uploads them all again.

The same `VisitSession` drives the Kafka hospitals and the offline oracle, so both send
byte-identical requests in the same order for the same visit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from messages.codes import (
    CANCELLATIONS,
    EHR,
    FEE_CANCELLATIONS,
    FEE_UPLOADS,
    REGISTRATIONS,
    REPEATED_MSGID,
    SETTLEMENTS,
    Infno,
)
from messages.envelope import Admdvs, FixmedinsCode, inf_time_stamp
from messages.identity import CERTNO_SYSTEM
from records.documents import clinical_content, provide_bundle, visit_document

#: 3: plans may hold the health-record steps 7001–7004; 4: and 2302 (a stay's fees cancelled,
#: a 2301 after it uploading every item again)
VISITLOG_VERSION = 4
READABLE_VERSIONS = frozenset({2, 3, 4})
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
OUTPATIENT_STEPS = ("1101", "2201", "2204", "2207")
#: Simulated time between two steps of a visit.
STEP_SECONDS = {"outpatient": 300, "inpatient": 6 * 3600}
EHR_STEP_SECONDS = 60


#: The transactions a visit's plan may hold (`VisitSession._input` builds each), and the
#: marks a step may carry (above).
PLANNED_INFNOS = frozenset({
    Infno.PERSON_INFO, *REGISTRATIONS, *FEE_UPLOADS, *FEE_CANCELLATIONS,
    Infno.OUTPATIENT_REGISTER_CANCEL, Infno.INPATIENT_DISCHARGE, *SETTLEMENTS,
    Infno.OUTPATIENT_PRESETTLE, Infno.INPATIENT_PRESETTLE, *CANCELLATIONS, Infno.REVERSAL,
    Infno.ACCUMULATORS, *EHR})
STEP_MARKS = frozenset("~!=^dx")
#: The largest amount a visit's item may come to (a quantity times a unit price in fen):
#: ¥1 billion, as the platform's amounts (messages/transactions.py: MAX_FEN).
MAX_ITEM_FEN = 100_000_000_000
#: The years a visit may begin in: its steps' times, a 7-day window before them and a year's
#: accumulators all stay within what dates can hold.
FIRST_YEAR, LAST_YEAR = 1990, 2099


class VisitItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str  # med_list_codg
    cnt: int = Field(gt=0, le=MAX_ITEM_FEN, strict=True)  # not 2.0, "2" or true
    pric: int = Field(gt=0, le=MAX_ITEM_FEN, strict=True)  # fen

    @model_validator(mode="after")
    def _amount_in_range(self) -> VisitItem:
        if self.cnt * self.pric > MAX_ITEM_FEN:
            raise ValueError(f"cnt × pric is over {MAX_ITEM_FEN:,} fen")
        return self


class Visit(BaseModel):
    """One outpatient visit or inpatient stay as a hospital will carry it out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = Field(VISITLOG_VERSION, strict=True)
    visit_no: int = Field(strict=True)
    # the shape, in ASCII digits (\d takes any script's); the check digit is the platform's
    certno: str = Field(pattern=r"^[0-9]{17}[0-9X]$")
    # of the shapes the platform takes: a visit of any other could not be carried out, its
    # requests dead-lettered as invalid (E1002) while the hospital waited for their answers
    fixmedins_code: FixmedinsCode
    mdtrtarea_admvs: Admdvs
    begntime: str
    seq: int = Field(ge=0, lt=10_000, strict=True)  # the msgid sequence at the first step
    kind: Literal["outpatient", "inpatient"] = "outpatient"
    med_type: Literal["11", "13", "21", "24"] = "11"
    acct_used_flag: Literal["0", "1"] = "1"
    items: list[VisitItem]
    batches: int = Field(default=1, ge=1)  # inpatient: 2301 uploads split the items
    steps: list[str] = Field(default_factory=lambda: list(OUTPATIENT_STEPS))

    @model_validator(mode="after")
    def _consistent(self) -> Visit:
        """What the platform would refuse on every request, or a step of a later version,
        refused as the log is read."""
        if self.mdtrtarea_admvs != self.fixmedins_code[1:7]:
            raise ValueError("mdtrtarea_admvs is not the hospital's city (the 6 digits after "
                             "the H of fixmedins_code): each request would be refused, E3003")
        if self.batches > len(self.items):
            raise ValueError(f"{self.batches} fee batches for {len(self.items)} items")
        self._each_upload_has_items()
        infnos = {parse_step(s)[0] for s in self.steps}
        if self.v < 4 and Infno.INPATIENT_FEE_UPLOAD_CANCEL in infnos:
            raise ValueError("a 2302 step is of visit version 4")
        if self.v < 3 and infnos & EHR:
            raise ValueError("a health-record step (7001–7004) is of visit version 3")
        return self

    def _each_upload_has_items(self) -> None:
        """A stay's n-th 2301 uploads its n-th share of the items (`VisitSession`), the one
        after a 2302 all of them: a 2301 whose share is empty would be refused (E1002)."""
        if self.kind != "inpatient":
            return
        uploads, cancelled = 0, False
        for n, step in enumerate(self.steps):
            infno, marks = parse_step(step)
            if infno == Infno.INPATIENT_FEE_UPLOAD and "d" not in marks:
                uploads += 1
                if not cancelled and uploads - 1 >= len(self.items):
                    raise ValueError(f"step {n}: a 2301 with no item left to upload (the "
                                     f"stay's {len(self.items)} items go in {self.batches} "
                                     "uploads; one after a 2302 uploads them all)")
                cancelled = False
            elif infno == Infno.INPATIENT_FEE_UPLOAD_CANCEL:
                cancelled = True

    @field_validator("v")
    @classmethod
    def _a_version_read_here(cls, v: int) -> int:
        if v not in READABLE_VERSIONS:  # a line of a later huimin may mean more than it says
            raise ValueError(f"visit version {v}: this huimin reads versions "
                             f"{' and '.join(map(str, sorted(READABLE_VERSIONS)))}")
        return v

    @field_validator("begntime")
    @classmethod
    def _a_time(cls, begntime: str) -> str:
        if len(begntime) != 19 or begntime[10] != " ":
            raise ValueError("begntime is not yyyy-MM-dd HH:mm:ss")
        try:
            when = datetime.fromisoformat(begntime)  # as the steps' times are read
        except ValueError as exc:  # what is wrong ("month must be in 1..12"), not the value
            raise ValueError(str(exc).split(":")[0] if begntime in str(exc) else str(exc)
                             ) from None
        if not FIRST_YEAR <= when.year <= LAST_YEAR:  # year 9999's steps overflowed
            raise ValueError(f"begntime is not in the years {FIRST_YEAR}–{LAST_YEAR}")
        return begntime

    @field_validator("steps")
    @classmethod
    def _a_plan(cls, steps: list[str]) -> list[str]:
        for n, step in enumerate(steps):
            infno, marks = parse_step(step)
            if infno not in PLANNED_INFNOS or not set(marks) <= STEP_MARKS:
                raise ValueError(f"step {n} is not a transaction a visit sends, with marks "
                                 f"of {''.join(sorted(STEP_MARKS))} (README, Replay and "
                                 "verify: what a visit log may hold)")
            for mark, kinds, what in (("^", {Infno.REVERSAL}, "a 2601"),
                                      ("d", FEE_UPLOADS, "a fee upload (2204/2301)"),
                                      ("x", CANCELLATIONS, "a cancellation (2208/2305)")):
                if mark in marks and infno not in kinds:
                    raise ValueError(f"step {n}: the mark {mark} is of {what}, not of {infno}")
            # what a 2601 reverses is sent for sure: not a 7003, skipped when 7002 found none
            target = n + 1 if "^" in marks else n - 1
            if infno == Infno.REVERSAL and not (
                    0 <= target < len(steps) and steps[target][:4] != Infno.EHR_RETRIEVE):
                raise ValueError(f"step {n}: a 2601 with nothing to reverse")
        return steps


def make_msgid(fixmedins_code: str, inf_time: str, seq: int) -> str:
    return f"{fixmedins_code}{inf_time_stamp(inf_time)}{seq % 10_000:04d}"


def parse_step(step: str) -> tuple[str, str]:
    return step[:4], step[4:]


class VisitSession:
    """The hospital's state for one visit. `advance()` gives the requests to send now;
    `on_answer()` takes every answer to this visit's requests."""

    #: how late after its arrival the hospitals took it up, ms (a bench adds it to its latency)
    start_lag_ms: float = 0.0
    #: its place among a run's arrivals, from 0 (a replay writes its results in that order)
    arrival: int = -1

    def __init__(self, visit: Visit) -> None:
        self.visit = visit
        self.index = 0
        self.failed: dict[str, Any] | None = None  # the unexpected refusal that ended it
        self.answers: dict[str, list[dict[str, Any]]] = {}  # msgid -> answers received
        self.sent: list[tuple[str, str]] = []  # (msgid, infno), once per distinct request
        self.sends = 0  # requests put on the wire, duplicates included
        self.awaiting: dict[str, int] = {}  # msgid -> answers still awaited
        self.lost: set[str] = set()  # msgids whose answer the HIS never saw (`~`)
        self._expect_refusal = False
        self._learned: dict[str, Any] = {}
        self._fees: dict[str, int] = {}  # feedetl_sn -> amount, as the platform holds them
        self._uploads = 0
        self._stay_fees_cancelled = False  # a 2302 took them all: the next 2301 gives them all
        self._last_upload: list[dict[str, Any]] = []
        self._uploaded: dict[str, list[str]] = {}  # a fee upload's msgid -> its feedetl_sn
        self._reused: set[str] = set()  # LOINC codes of lab results reused, not repeated
        self._offsets: list[int] | None = None  # seconds from begntime to each step
        self.skipped: list[int] = []  # steps not sent (a 7003 when 7002 found nothing)

    @property
    def done(self) -> bool:
        return self.failed is not None or (self.index >= len(self.visit.steps)
                                           and not self.awaiting)

    def step_time(self, index: int) -> str:
        """Each step follows the one before by the visit kind's step time; a health-record
        step (7001–7004) takes a minute."""
        if self._offsets is None:
            self._offsets, t = [], 0
            for step in self.visit.steps:
                self._offsets.append(t)
                t += EHR_STEP_SECONDS if step[:4] in EHR else STEP_SECONDS[self.visit.kind]
        offsets = self._offsets or [0]
        offset = offsets[index] if index < len(offsets) else \
            offsets[-1] + (index - len(offsets) + 1) * STEP_SECONDS[self.visit.kind]
        begin = datetime.fromisoformat(self.visit.begntime)
        return (begin + timedelta(seconds=offset)).isoformat(sep=" ")

    def msgid_at(self, index: int) -> str:
        return make_msgid(self.visit.fixmedins_code, self.step_time(index),
                          self.visit.seq + index)

    def advance(self) -> list[dict[str, Any]]:
        """The requests to send now, in order; empty while an answer is awaited."""
        out: list[dict[str, Any]] = []
        while not self.awaiting and self.failed is None and self.index < len(self.visit.steps):
            infno, marks = parse_step(self.visit.steps[self.index])
            if infno == Infno.EHR_RETRIEVE and "document_id" not in self._learned:
                self.skipped.append(self.index)  # the search found nothing to retrieve
                self.index += 1
                continue
            req = self._request(infno, marks)
            copies = 2 if "=" in marks else 1
            out.extend([req] * copies)
            self.sends += copies
            self.sent.append((req["msgid"], infno))
            if "~" in marks:
                self.lost.add(req["msgid"])
                self.index += 1
                continue
            self.awaiting[req["msgid"]] = copies
            self._expect_refusal = "!" in marks
        return out

    def on_answer(self, answer: dict[str, Any]) -> None:
        msgid = answer.get("inf_refmsgid", "")
        self.answers.setdefault(msgid, []).append(answer)
        if msgid not in self.awaiting:
            return  # the answer to a lost request: recorded, not acted on
        self.awaiting[msgid] -= 1
        if self.awaiting[msgid] > 0:
            return
        del self.awaiting[msgid]
        infno, _ = parse_step(self.visit.steps[self.index])
        if answer.get("infcode") == 0:
            self._learn(msgid, infno, answer["output"])
        elif not self._expect_refusal and infno not in EHR:  # a refused record access is
            self.failed = answer  # an outcome (audited), not the end of the visit
            return
        self.index += 1

    def end_unsent(self, unsent: set[str], first: str) -> None:
        """Requests `unsent` (from `first`) have another visit's msgid (a hand-made log): not
        sent, and the visit ends there (`REPEATED_MSGID`), alike in the hospitals and in the
        oracle: their answers would go to the other visit, and this one would wait for ever."""
        self.sent = [(m, i) for m, i in self.sent if m not in unsent]
        for msgid in unsent:
            self.awaiting.pop(msgid, None)
            self.lost.discard(msgid)
        self.failed = {"infcode": -1, "inf_refmsgid": first, "err_code": REPEATED_MSGID,
                       "output": {}, "err_msg": "another visit's msgid: not sent"}

    def give_up(self, msgid: str, failed: dict[str, Any]) -> None:
        """The HIS gave up on request `msgid` at its time-out (`failed` says so): the visit
        ends there, and an answer that comes after is recorded, not acted on, and kept out of
        the HIS's books as a lost one is (`lost`): what it settled, the platform's books have
        and a reconciliation finds (3202), as README says. Acted on, a settlement answered
        late made its visit `settled` and its day 平 at once (a fault review)."""
        self.failed = failed
        self.awaiting.pop(msgid, None)
        self.lost.add(msgid)

    def exchanges(self, seen_only: bool = False) -> list[tuple[str, str, list[dict[str, Any]]]]:
        """(msgid, infno, answers) of each distinct request in the order sent: every answer
        that came back (the platform's view), or with `seen_only` only those the HIS saw (its
        own books: a lost answer is not in them)."""
        return [(m, i, self.answers.get(m, [])) for m, i in self.sent
                if not (seen_only and m in self.lost)]

    # -- building requests ------------------------------------------------------------------
    def _request(self, infno: str, marks: str) -> dict[str, Any]:
        v = self.visit
        inf_time = self.step_time(self.index)
        return {
            "infno": infno,
            "msgid": self.msgid_at(self.index),
            "mdtrtarea_admvs": v.mdtrtarea_admvs,
            "insuplc_admdvs": self._learned.get("insuplc_admdvs", ""),
            "fixmedins_code": v.fixmedins_code,
            "inf_time": inf_time,
            "input": self._input(infno, marks, inf_time),
        }

    def _input(self, infno: str, marks: str, inf_time: str) -> dict[str, Any]:
        v, k = self.visit, self._learned
        if infno == Infno.PERSON_INFO:
            return {"mdtrt_cert_type": "02", "mdtrt_cert_no": v.certno, "begntime": v.begntime,
                    "psn_cert_type": "01", "certno": v.certno}
        psn_no, mdtrt_id = k.get("psn_no", ""), k.get("mdtrt_id", "")
        if infno == Infno.OUTPATIENT_REGISTER:
            return {"psn_no": psn_no, "insutype": k.get("insutype", ""), "begntime": v.begntime,
                    "mdtrt_cert_type": "02", "mdtrt_cert_no": v.certno,
                    "ipt_otp_no": f"MZ{v.visit_no:010d}", "med_type": v.med_type}
        if infno == Infno.INPATIENT_ADMIT:
            return {"psn_no": psn_no, "insutype": k.get("insutype", ""), "mdtrt_cert_type": "02",
                    "mdtrt_cert_no": v.certno, "med_type": v.med_type,
                    "ipt_no": f"ZY{v.visit_no:010d}", "begntime": v.begntime}
        if infno in FEE_UPLOADS:
            if "d" in marks:  # resend the previous upload's items: duplicate feedetl_sn
                return {"feedetail": self._last_upload}
            self._uploads += 1
            # a stay's items go in `batches` uploads; the one after a 2302 uploads them all
            items = v.items if v.kind == "outpatient" or self._stay_fees_cancelled \
                else v.items[self._uploads - 1::v.batches]
            self._stay_fees_cancelled = False
            self._last_upload = [
                {"feedetl_sn": f"{self._uploads:02d}{j + 1:04d}", "mdtrt_id": mdtrt_id,
                 "psn_no": psn_no, "chrg_bchno": str(self._uploads), "med_type": v.med_type,
                 "fee_ocur_time": inf_time, "med_list_codg": it.code,
                 "medins_list_codg": it.code, "det_item_fee_sumamt": it.cnt * it.pric,
                 "cnt": it.cnt, "pric": it.pric}
                for j, it in enumerate(items)]
            return {"feedetail": self._last_upload}
        if infno == Infno.FEE_UPLOAD_CANCEL:
            return {"mdtrt_id": mdtrt_id, "chrg_bchno": "0000", "psn_no": psn_no}
        if infno == Infno.INPATIENT_FEE_UPLOAD_CANCEL:
            return {"feedetl_sn": "0000", "mdtrt_id": mdtrt_id, "psn_no": psn_no}
        if infno == Infno.OUTPATIENT_REGISTER_CANCEL:
            return {"psn_no": psn_no, "mdtrt_id": mdtrt_id, "ipt_otp_no": f"MZ{v.visit_no:010d}"}
        if infno == Infno.INPATIENT_DISCHARGE:
            return {"mdtrt_id": mdtrt_id, "psn_no": psn_no, "endtime": inf_time, "dscg_way": "1"}
        if infno in (Infno.OUTPATIENT_PRESETTLE, Infno.OUTPATIENT_SETTLE,
                     Infno.INPATIENT_PRESETTLE, Infno.INPATIENT_SETTLE):
            inp = {"psn_no": psn_no, "mdtrt_cert_type": "02", "mdtrt_cert_no": v.certno,
                   "med_type": v.med_type, "medfee_sumamt": sum(self._fees.values()),
                   "psn_setlway": "01", "mdtrt_id": mdtrt_id, "insutype": k.get("insutype", ""),
                   "acct_used_flag": v.acct_used_flag}
            if v.kind == "inpatient":
                inp["mid_setl_flag"] = "0"
            return inp
        if infno in CANCELLATIONS:
            setl_id = "NOSUCHSETTLEMENT" if "x" in marks else \
                k.get("setl_id") or k.get("last_setl_id", "")
            return {"setl_id": setl_id,
                    "mdtrt_id": mdtrt_id, "psn_no": psn_no}
        if infno == Infno.REVERSAL:
            if "^" in marks:
                omsgid = self.msgid_at(self.index + 1)
                oinfno, _ = parse_step(self.visit.steps[self.index + 1])
            else:
                omsgid, oinfno = self.sent[-1]
            return {"psn_no": psn_no, "omsgid": omsgid, "oinfno": oinfno}
        if infno == Infno.ACCUMULATORS:
            return {"psn_no": psn_no, "cum_ym": inf_time[:4] + inf_time[5:7]}
        if infno in EHR:
            return self._ehr_input(infno, inf_time)
        raise ValueError(f"no request for step {infno}")

    @property
    def purpose(self) -> str:
        """Why the hospital reads the person's records: treatment, or emergency treatment."""
        return "ETREAT" if self.visit.med_type in ("13", "24") else "TREAT"

    def _ehr_input(self, infno: str, inf_time: str) -> dict[str, Any]:
        v = self.visit
        clinical = clinical_content(v.visit_no, v.certno, v.kind == "inpatient")
        if infno == Infno.EHR_LAB_LOOKUP:
            return {"loinc": [t.loinc for t in clinical.labs], "purpose": self.purpose}
        if infno == Infno.EHR_FIND:
            return {"patient_identifier": f"{CERTNO_SYSTEM}|{v.certno}",
                    "purpose": self.purpose}
        if infno == Infno.EHR_RETRIEVE:
            return {"document_id": self._learned["document_id"], "purpose": self.purpose}
        msgid = self.msgid_at(self.index)
        document = visit_document(
            msgid=msgid, certno=v.certno, gender="1" if int(v.certno[16]) % 2 else "2",
            birth_date=f"{v.certno[6:10]}-{v.certno[10:12]}-{v.certno[12:14]}",
            fixmedins_code=v.fixmedins_code, hospital_name=f"医院 {v.fixmedins_code}",
            admdvs=v.mdtrtarea_admvs, inpatient=v.kind == "inpatient", begntime=v.begntime,
            endtime=inf_time, visit_no=v.visit_no, clinical=clinical,
            performed=[t.loinc for t in clinical.labs if t.loinc not in self._reused],
            medications=[(it.code, it.cnt) for it in v.items if it.code.startswith("XD")])
        return {"resource": provide_bundle(document, v.certno, v.fixmedins_code, msgid,
                                           inf_time)}

    def _learn(self, msgid: str, infno: str, out: dict[str, Any]) -> None:
        k = self._learned
        if infno == Infno.EHR_LAB_LOOKUP:
            self._reused = {r["loinc"] for r in out["reusable"]}
        elif infno == Infno.EHR_FIND:
            own = self.visit.mdtrtarea_admvs[:2] + "0000"
            refs = [e["resource"] for e in out.get("entry", [])
                    if e["resource"]["resourceType"] == "DocumentReference"]
            # the newest document from another province, else the newest of all
            refs.sort(key=lambda r: r["custodian"]["identifier"]["value"] == own)
            if refs:
                k["document_id"] = refs[0]["id"]
        elif infno == Infno.PERSON_INFO:
            k["psn_no"] = out["baseinfo"]["psn_no"]
            k["insutype"] = out["insuinfo"][0]["insutype"]
            k["insuplc_admdvs"] = out["insuinfo"][0]["insuplc_admdvs"]
        elif infno in REGISTRATIONS:
            k["mdtrt_id"] = out["data"]["mdtrt_id"]
        elif infno in FEE_UPLOADS:
            self._uploaded[msgid] = [r["feedetl_sn"] for r in out["result"]]
            for r in out["result"]:
                self._fees[r["feedetl_sn"]] = r["det_item_fee_sumamt"]
        elif infno == Infno.REVERSAL and out.get("result") == "undone" \
                and out.get("oinfno") in FEE_UPLOADS:  # that upload's fees are gone: a
            for sn in self._uploaded.pop(out.get("omsgid", ""), []):  # settlement counting
                self._fees.pop(sn, None)  # them was refused E4004 (an inpatient review)
        elif infno in FEE_CANCELLATIONS:  # the simulated hospitals cancel all ("0000")
            self._fees.clear()
            self._stay_fees_cancelled = infno == Infno.INPATIENT_FEE_UPLOAD_CANCEL
        elif infno in SETTLEMENTS:
            k["setl_id"] = k["last_setl_id"] = out["setlinfo"]["setl_id"]
        elif infno in CANCELLATIONS or (infno == Infno.REVERSAL and out.get("reversed_setl_id")):
            k["setl_id"] = ""

    @property
    def settlement(self) -> dict[str, Any] | None:
        """The visit's final settlement, if it ended settled."""
        setl_id = self._learned.get("setl_id")
        if not setl_id:
            return None
        for msgid, infno in reversed(self.sent):
            if infno in SETTLEMENTS:
                for ans in self.answers.get(msgid, []):
                    if ans.get("infcode") == 0 and ans["output"]["setlinfo"]["setl_id"] == setl_id:
                        return ans["output"]["setlinfo"]
        return None
