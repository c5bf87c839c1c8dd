"""Hospitals at the counter, for the protocol tests: `Clinic` talks to the whole platform (the
oracle: treatment, national and insured roles in turn), `Desk` to the treatment side alone,
with the rows each keeps. The country is tests/handmade.py's: HOSP_BJ (北京, level 3) and
HOSP_SH (上海, level 1); EMP is an in-service Beijing employee with 500,000 fen in the account."""

from __future__ import annotations

import dataclasses
from typing import Any

from messages.codec import encode
from settlement.oracle import Oracle
from settlement.policy import EMPLOYEE
from settlement.reference import Enrollment, Filing, Hospital
from settlement.treatment import Outcome, Reply, TreatmentPlatform
from settlement.treatment_row import TreatmentRow
from tests.handmade import (
    BJ,
    EMP_CERTNO,
    ENROLLMENTS,
    HOSP_BJ,
    SH_CITY,
    admit_input,
    certno,
    fee_input,
    ok,
    reference_data,
    register_input,
    request,
    settle_input,
)

#: when a Clinic stamps every request (`sent_at` stamps one otherwise)
T = "2026-03-01 09:00:00"
EMP = ENROLLMENTS[EMP_CERTNO]  # insured in Beijing

#: The DOMAIN.md §3 worked example's patient: an in-service employee insured in Shanghai, filed
#: for Beijing, with 100,000 fen in the account.
WORKED_CERTNO = certno("31010119700101003")
WORKED = Enrollment(WORKED_CERTNO, SH_CITY + "5".zfill(20), EMPLOYEE, SH_CITY, retired=False,
                    balance=100_000,
                    filings=(Filing("long-term", BJ, "2026-01-01", "2028-12-31"),),
                    gend="1", brdy="1970-01-01")


class Clinic:
    """Hospitals talking to the platform (the oracle); every request gets a fresh msgid, and
    every answer is checked to be free of the patient's raw certno (DOMAIN.md §7)."""

    def __init__(self) -> None:
        ref = reference_data()
        ref = dataclasses.replace(ref, enrollments={**ref.enrollments, WORKED_CERTNO: WORKED})
        self.ref = ref
        self.oracle = Oracle(ref)
        self.seq = 0
        self.answers: list[dict[str, Any]] = []

    def request(self, cert: str, infno: str, inp: dict[str, Any],
                hospital: Hospital = HOSP_BJ) -> dict[str, Any]:
        self.seq += 1
        insuplc = "" if infno == "1101" else self.ref.enrollments[cert].insuplc_admdvs
        return request(infno, hospital, T, self.seq, inp, insuplc)

    def send(self, cert: str, req: dict[str, Any]) -> dict[str, Any]:
        answer = self.oracle.submit(cert, req)
        assert answer is not None, req
        assert answer["inf_refmsgid"] == req["msgid"]
        assert cert not in answer["err_msg"] and cert[6:14] not in answer["err_msg"]
        self.answers.append(answer)
        return answer

    def do(self, cert: str, infno: str, inp: dict[str, Any],
           hospital: Hospital = HOSP_BJ) -> dict[str, Any]:
        return self.send(cert, self.request(cert, infno, inp, hospital))

    # -- steps of a visit ---------------------------------------------------------------------
    def register(self, cert: str = EMP_CERTNO, hospital: Hospital = HOSP_BJ) -> str:
        e = self.ref.enrollments[cert]
        return ok(self.do(cert, "2201", register_input(e, T), hospital))["data"]["mdtrt_id"]

    def admit(self, cert: str = EMP_CERTNO, hospital: Hospital = HOSP_BJ) -> str:
        e = self.ref.enrollments[cert]
        return ok(self.do(cert, "2401", admit_input(e, T), hospital))["data"]["mdtrt_id"]

    def upload(self, mdtrt_id: str, items: list[tuple[str, str, int, int]],
               cert: str = EMP_CERTNO, infno: str = "2204", chrg_bchno: str = "1",
               hospital: Hospital = HOSP_BJ) -> dict[str, Any]:
        e = self.ref.enrollments[cert]
        med_type = "21" if infno == "2301" else "11"
        return self.do(cert, infno, fee_input(e, mdtrt_id, T, items, chrg_bchno, med_type),
                       hospital)

    def settle(self, mdtrt_id: str, medfee: int, cert: str = EMP_CERTNO, infno: str = "2207",
               hospital: Hospital = HOSP_BJ) -> dict[str, Any]:
        e = self.ref.enrollments[cert]
        med_type = "21" if infno in ("2303", "2304") else "11"
        return self.do(cert, infno, settle_input(e, mdtrt_id, medfee, "1", med_type), hospital)

    def fees(self, mdtrt_id: str, cert: str = EMP_CERTNO) -> set[str]:
        """The feedetl_sn the treatment side holds for a visit."""
        return set(self.oracle.treatment_rows[cert].visits[mdtrt_id]["fees"])


#: the first of the days a test dates its requests by (`sent_at`)
DAY0 = T


def sent_at(c: Clinic, when: str, infno: str, inp: dict[str, Any],
            cert: str = EMP_CERTNO) -> dict[str, Any]:
    """A request from HOSP_BJ stamped `when` (Clinic.do stamps every request T)."""
    c.seq += 1
    insuplc = "" if infno == "1101" else c.ref.enrollments[cert].insuplc_admdvs
    return c.send(cert, request(infno, HOSP_BJ, when, c.seq, inp, insuplc))


#: a visit's steps at the Desk: registered at T0 (the visit's time), acknowledged T1, fees T2,
#: settled T3
T0 = T
T1 = "2026-03-01 09:01:00"
T2 = "2026-03-01 09:10:00"
T3 = "2026-03-01 09:15:00"


class Desk:
    """The treatment platform with its stored rows, as the stream processor keeps them."""

    def __init__(self) -> None:
        self.platform = TreatmentPlatform(reference_data())
        self.rows: dict[str, TreatmentRow] = {}

    def send_raw(self, key: str | None, raw: bytes | None) -> Outcome:
        outcome, row = self.platform.handle_request(key, raw, self.rows.get(key or ""))
        if row is not None:
            self.rows[key or ""] = row
        return outcome

    def send(self, key: str, req: dict[str, Any]) -> Outcome:
        return self.send_raw(key, encode(req))

    def answer(self, key: str, req: dict[str, Any]) -> dict[str, Any]:
        outcome = self.send(key, req)
        assert isinstance(outcome, Reply), outcome
        return outcome.answer

    def register(self, certno: str, hospital: Hospital, seq: int = 1) -> str:
        e = ENROLLMENTS[certno]
        ans = self.answer(certno, request("2201", hospital, T1, seq, register_input(e, T0),
                                          e.insuplc_admdvs))
        assert ans["infcode"] == 0, ans
        return ans["output"]["data"]["mdtrt_id"]

    def upload(self, certno: str, hospital: Hospital, mdtrt_id: str,
               items: list[tuple[str, str, int, int]], seq: int = 2) -> dict[str, Any]:
        e = ENROLLMENTS[certno]
        return self.answer(certno, request("2204", hospital, T2, seq,
                                           fee_input(e, mdtrt_id, T2, items), e.insuplc_admdvs))

    def settle(self, certno: str, hospital: Hospital, mdtrt_id: str, medfee: int,
               seq: int = 3) -> Outcome:
        e = ENROLLMENTS[certno]
        return self.send(certno, request("2207", hospital, T3, seq,
                                         settle_input(e, mdtrt_id, medfee), e.insuplc_admdvs))
