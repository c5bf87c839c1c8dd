"""The insured-place side of the protocol (DOMAIN.md §2–§4), on settlement.insured
.InsuredPlatform directly: pre-settlement (2206/2303), cancellation (2208/2305), inpatient
settlement (2304), 2601 reversal in both orders, filings and emergencies, suspension, 5206 and
idempotency by msgid.

Every test uses the hand-built country of tests/handmade.py with the DOMAIN.md §3 default
policy. The people:
- EMP: 北京 employee (310) in service, balance 500,000 fen, no filing;
- RES: 上海 resident (390), no account;
- HOSP_BJ level 3 in 北京 (local for EMP), HOSP_SH level 1 in 上海 (cross-province for EMP).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messages.codec import encode
from messages.codes import CANCELLATIONS, ErrorCode, Infno
from messages.identity import mask_certno
from settlement.catalogue import FeeTotals
from settlement.insured import InsuredPlatform
from settlement.person import PersonRow
from settlement.reference import SUSPENDED, Enrollment, Filing, Hospital, ReferenceData
from tests.handmade import (
    BJ_CITY,
    EMP_CERTNO,
    EMPLOYEE_BALANCE,
    ENROLLMENTS,
    HOSP_BJ,
    HOSP_SH,
    RES_CERTNO,
    RETIRED_CERTNO,
    SH,
    accumulators_input,
    certno,
    forward_ctx,
    ok,
    person_info_input,
    reference_data,
    refused,
    request,
    reversal_input,
    settle_cancel_input,
    settle_input,
)

PROPS = settings(max_examples=60, deadline=None)
EMP = ENROLLMENTS[EMP_CERTNO]
RES = ENROLLMENTS[RES_CERTNO]
T = "2026-03-01 10:00:00"

#: A Beijing employee whose insurance is suspended (暂停参保).
SUSPENDED_CERTNO = certno("11010119600101003")
SUSP = dataclasses.replace(EMP, certno=SUSPENDED_CERTNO, psn_no=BJ_CITY + "4".zfill(20),
                           insu_stas=SUSPENDED)

Money = tuple[int, dict[str, dict[str, int]]]


def in_scope(fen: int) -> FeeTotals:
    return FeeTotals(medfee_sumamt=fen, inscp_scp_amt=fen)


def with_enrollments(*extra: Enrollment) -> ReferenceData:
    ref = reference_data()
    return dataclasses.replace(ref, enrollments={**ref.enrollments,
                                                 **{e.certno: e for e in extra}})


class Insured:
    """The insured-place platform with the rows it stores, as the stream processor keeps
    them; requests get fresh msgids from one sequence."""

    def __init__(self, ref: ReferenceData | None = None) -> None:
        self.ref = ref or reference_data()
        self.platform = InsuredPlatform(self.ref)
        self.rows: dict[str, PersonRow] = {}
        self.seq = 0

    def request(self, cert: str, infno: str, inp: dict[str, Any], inf_time: str = T,
                hospital: Hospital = HOSP_BJ) -> dict[str, Any]:
        self.seq += 1
        e = self.ref.enrollments[cert]
        insuplc = "" if infno == Infno.PERSON_INFO else e.insuplc_admdvs
        return request(infno, hospital, inf_time, self.seq, inp, insuplc)

    def handle(self, cert: str, req: dict[str, Any], hospital: Hospital = HOSP_BJ,
               fees: FeeTotals | None = None) -> dict[str, Any]:
        ctx = forward_ctx(req, hospital)
        if fees is not None:
            ctx["fees"] = fees.as_dict()
        answer, row = self.platform.handle(cert, self.rows.get(cert), copy.deepcopy(req), ctx)
        if row is not None:
            self.rows[cert] = row
        return answer

    def settle(self, cert: str, mdtrt_id: str, fees: FeeTotals, inf_time: str = T,
               hospital: Hospital = HOSP_BJ, infno: str = "2207", med_type: str | None = None,
               acct_used_flag: str = "1") -> tuple[dict[str, Any], dict[str, Any]]:
        med_type = med_type or ("21" if infno in ("2303", "2304") else "11")
        e = self.ref.enrollments[cert]
        req = self.request(cert, infno, settle_input(e, mdtrt_id, fees.medfee_sumamt,
                                                     acct_used_flag, med_type),
                           inf_time, hospital)
        return req, self.handle(cert, req, hospital, fees)

    def cancel(self, cert: str, setl_id: str, mdtrt_id: str, inf_time: str = T,
               infno: str = "2208", hospital: Hospital = HOSP_BJ) -> dict[str, Any]:
        e = self.ref.enrollments[cert]
        return self.handle(cert, self.request(cert, infno,
                                              settle_cancel_input(e, setl_id, mdtrt_id),
                                              inf_time, hospital), hospital)

    def reverse(self, cert: str, omsgid: str, oinfno: str,
                inf_time: str = T) -> dict[str, Any]:
        """2601 from the hospital that sent `omsgid` (its code begins the msgid)."""
        e = self.ref.enrollments[cert]
        hospital = self.ref.hospitals[omsgid[:12]]
        return self.handle(cert, self.request(cert, "2601", reversal_input(e, omsgid, oinfno),
                                              inf_time, hospital), hospital)

    def money(self, cert: str) -> Money:
        """Balance and year-to-date accumulators, exactly as the row holds them: what a
        settlement changes (an accumulator back at zero is removed, so undoing a settlement
        leaves the row as if it had never happened)."""
        row = self.rows.get(cert)
        if row is None:
            return self.ref.enrollments[cert].balance, {}
        return row.balance, row.ytd


NUMBERS = ("medfee_sumamt", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
           "inscp_scp_amt", "act_pay_dedc", "hifp_pay", "fund_pay_sumamt", "psn_part_amt",
           "acct_pay", "psn_cash_pay", "balc")


def numbers(setlinfo: dict[str, Any]) -> dict[str, int]:
    return {k: setlinfo[k] for k in NUMBERS}


# -- pre-settlement ------------------------------------------------------------------------------

def test_presettlement_gives_the_numbers_of_the_following_settlement_and_changes_no_money(
) -> None:
    ins = Insured()
    _, pre = ins.settle(EMP_CERTNO, "V1", in_scope(300_000), "2026-03-01 10:00:00",
                        infno="2206")
    pre_info = ok(pre)["setlinfo"]
    # 310 outpatient, level 3, local: deductible 180,000; (300,000 − 180,000) × 70 % = 84,000;
    # psn_part 216,000, all from the 500,000 account: balc 284,000.
    assert numbers(pre_info) == {
        "medfee_sumamt": 300_000, "fulamt_ownpay_amt": 0, "overlmt_selfpay": 0,
        "preselfpay_amt": 0, "inscp_scp_amt": 300_000, "act_pay_dedc": 180_000,
        "hifp_pay": 84_000, "fund_pay_sumamt": 84_000, "psn_part_amt": 216_000,
        "acct_pay": 216_000, "psn_cash_pay": 0, "balc": 284_000}
    assert pre_info["setl_id"] == ""  # a pre-settlement settles nothing
    # Nothing a settlement changes has changed: balance, accumulators, settlements.
    row = ins.rows[EMP_CERTNO]
    assert (row.balance, row.ytd, row.settlements, row.reversed) == (EMPLOYEE_BALANCE, {}, {},
                                                                     {})
    assert list(row.answers) == [pre["inf_refmsgid"]]  # only its answer, kept for duplicates
    _, settled = ins.settle(EMP_CERTNO, "V1", in_scope(300_000), "2026-03-01 10:05:00")
    info = ok(settled)["setlinfo"]
    assert numbers(info) == numbers(pre_info)
    assert info["setl_id"] != ""
    assert ins.money(EMP_CERTNO) == (284_000, {"2026": {"fund_11": 84_000, "dedc_11": 180_000}})


def test_inpatient_presettlement_gives_the_numbers_of_the_following_settlement() -> None:
    ins = Insured()
    _, pre = ins.settle(EMP_CERTNO, "S1", in_scope(300_000), infno="2303")
    # 310 inpatient, level 3: deductible 100,000 per admission; (300,000 − 100,000) × 85 %
    # = 170,000; psn_part 130,000 from the account: balc 370,000.
    assert (ok(pre)["setlinfo"]["hifp_pay"], ok(pre)["setlinfo"]["balc"]) == (170_000, 370_000)
    assert ins.money(EMP_CERTNO) == (EMPLOYEE_BALANCE, {})
    _, settled = ins.settle(EMP_CERTNO, "S1", in_scope(300_000), infno="2304")
    assert numbers(ok(settled)["setlinfo"]) == numbers(ok(pre)["setlinfo"])
    assert ins.money(EMP_CERTNO) == (370_000, {"2026": {"fund_21": 170_000}})


# -- cancellation --------------------------------------------------------------------------------

def test_cancellation_restores_balance_and_accumulators_and_a_second_one_is_refused() -> None:
    ins = Insured()
    _, first = ins.settle(EMP_CERTNO, "V1", in_scope(300_000), "2026-03-30 10:00:00")
    # V1 as above: hifp 84,000, dedc 180,000, acct 216,000 -> balance 284,000.
    after_first = ins.money(EMP_CERTNO)
    assert after_first == (284_000, {"2026": {"fund_11": 84_000, "dedc_11": 180_000}})
    _, second = ins.settle(EMP_CERTNO, "V2", in_scope(100_000), "2026-04-01 10:00:00")
    # V2: deductible used up, 100,000 × 70 % = 70,000; psn_part 30,000 from the account.
    assert ins.money(EMP_CERTNO) == (254_000, {"2026": {"fund_11": 154_000,
                                                        "dedc_11": 180_000}})
    setl_id = ok(second)["setlinfo"]["setl_id"]
    cancel = ok(ins.cancel(EMP_CERTNO, setl_id, "V2", "2026-04-02 10:00:00"))["setlinfo"]
    assert cancel["init_setl_id"] == setl_id
    assert cancel["setl_id"] not in ("", setl_id)
    assert (cancel["medfee_sumamt"], cancel["hifp_pay"], cancel["fund_pay_sumamt"],
            cancel["acct_pay"], cancel["psn_cash_pay"], cancel["balc"]) == (
        -100_000, -70_000, -70_000, -30_000, 0, 284_000)
    assert ins.money(EMP_CERTNO) == after_first  # exactly as before V2
    assert ins.rows[EMP_CERTNO].settlements[setl_id]["status"] == "cancelled"
    again = ins.cancel(EMP_CERTNO, setl_id, "V2", "2026-04-03 10:00:00")
    refused(again, ErrorCode.SETTLEMENT_ALREADY_CANCELLED)
    assert ins.money(EMP_CERTNO) == after_first  # the refusal changed nothing
    # V1 cancelled too: back to the enrollment's balance and nothing paid this year.
    ok(ins.cancel(EMP_CERTNO, ok(first)["setlinfo"]["setl_id"], "V1", "2026-04-04 10:00:00"))
    assert ins.money(EMP_CERTNO) == (EMPLOYEE_BALANCE, {})


def test_a_cancellation_dated_before_its_settlement_is_refused_and_changes_nothing() -> None:
    """It would be cleared, and reconciled, before what it undoes: a December statement
    owing back a settlement of January (DOMAIN.md §5)."""
    ins = Insured()
    _, settled = ins.settle(EMP_CERTNO, "V1", in_scope(300_000), "2027-01-01 00:10:00")
    before = ins.money(EMP_CERTNO)
    setl_id = ok(settled)["setlinfo"]["setl_id"]
    refused(ins.cancel(EMP_CERTNO, setl_id, "V1", "2026-12-31 23:50:00"),
            ErrorCode.WRONG_SEQUENCE)
    assert ins.money(EMP_CERTNO) == before
    ok(ins.cancel(EMP_CERTNO, setl_id, "V1", "2027-01-01 00:10:00"))  # the same second is not


def test_cancellation_of_an_unknown_settlement_is_refused() -> None:
    ins = Insured()
    ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    before = ins.money(EMP_CERTNO)
    refused(ins.cancel(EMP_CERTNO, "110100NOSUCHSETTLE", "V1"), ErrorCode.UNKNOWN_SETTLEMENT)
    assert ins.money(EMP_CERTNO) == before


def test_cancellation_naming_another_visit_is_refused_as_unknown() -> None:
    ins = Insured()
    _, ans = ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    refused(ins.cancel(EMP_CERTNO, ok(ans)["setlinfo"]["setl_id"], "V2"),
            ErrorCode.UNKNOWN_SETTLEMENT)


def test_inpatient_cancellation_of_an_outpatient_settlement_is_refused() -> None:
    ins = Insured()
    _, ans = ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    before = ins.money(EMP_CERTNO)
    setl_id = ok(ans)["setlinfo"]["setl_id"]
    refused(ins.cancel(EMP_CERTNO, setl_id, "V1", infno="2305"), ErrorCode.WRONG_SEQUENCE)
    assert ins.money(EMP_CERTNO) == before
    assert ins.rows[EMP_CERTNO].settlements[setl_id]["status"] == "settled"
    ok(ins.cancel(EMP_CERTNO, setl_id, "V1", infno="2208"))  # its own transaction works


def test_outpatient_cancellation_of_an_inpatient_settlement_is_refused() -> None:
    ins = Insured()
    _, ans = ins.settle(EMP_CERTNO, "S1", in_scope(300_000), infno="2304")
    setl_id = ok(ans)["setlinfo"]["setl_id"]
    refused(ins.cancel(EMP_CERTNO, setl_id, "S1", infno="2208"), ErrorCode.WRONG_SEQUENCE)
    ok(ins.cancel(EMP_CERTNO, setl_id, "S1", infno="2305"))
    assert ins.money(EMP_CERTNO) == (EMPLOYEE_BALANCE, {})


# -- inpatient -----------------------------------------------------------------------------------

def test_each_inpatient_stay_pays_its_own_deductible() -> None:
    ins = Insured()
    _, first = ins.settle(EMP_CERTNO, "S1", in_scope(300_000), "2026-03-01 10:00:00",
                          infno="2304")
    _, second = ins.settle(EMP_CERTNO, "S2", in_scope(300_000), "2026-05-01 10:00:00",
                           infno="2304")
    # 310 inpatient at level 3: deductible 1,000 yuan = 100,000 fen per admission, 85 %.
    # Each stay: act_pay_dedc 100,000; hifp (300,000 − 100,000) × 85 % = 170,000;
    # psn_part 130,000 from the account: 500,000 -> 370,000 -> 240,000.
    for ans in (first, second):
        s = ok(ans)["setlinfo"]
        assert (s["act_pay_dedc"], s["hifp_pay"], s["psn_part_amt"], s["clr_type"]) == (
            100_000, 170_000, 130_000, "21")
    # The inpatient deductible is not accumulated; the outpatient one is untouched.
    assert ins.money(EMP_CERTNO) == (240_000, {"2026": {"fund_21": 340_000}})
    _, outpatient = ins.settle(EMP_CERTNO, "V3", in_scope(200_000), "2026-06-01 10:00:00")
    # The annual outpatient deductible (180,000) is still whole after two stays.
    assert ok(outpatient)["setlinfo"]["act_pay_dedc"] == 180_000


def test_outpatient_cap_does_not_limit_inpatient_benefit() -> None:
    ins = Insured()
    _, out1 = ins.settle(RES_CERTNO, "V1", in_scope(600_000), hospital=HOSP_SH)
    # 390 outpatient, level 1 (local in Shanghai): (600,000 − 10,000) × 60 % = 354,000, capped
    # at the outpatient cap of 3,000 yuan = 300,000.
    assert ok(out1)["setlinfo"]["hifp_pay"] == 300_000
    _, stay = ins.settle(RES_CERTNO, "S1", in_scope(100_000), "2026-03-02 10:00:00",
                         hospital=HOSP_SH, infno="2304")
    # 390 inpatient, level 1: deductible 200 yuan = 20,000; (100,000 − 20,000) × 85 % = 68,000
    # in full: the outpatient cap reached does not touch the inpatient cap (300,000 yuan).
    assert ok(stay)["setlinfo"]["hifp_pay"] == 68_000
    _, out2 = ins.settle(RES_CERTNO, "V2", in_scope(50_000), "2026-03-03 10:00:00",
                         hospital=HOSP_SH)
    assert ok(out2)["setlinfo"]["hifp_pay"] == 0  # the outpatient cap stays reached
    assert ins.money(RES_CERTNO) == (0, {"2026": {"fund_11": 300_000, "dedc_11": 10_000,
                                                  "fund_21": 68_000}})


def test_inpatient_cap_does_not_limit_outpatient_benefit() -> None:
    ins = Insured()
    _, stay = ins.settle(RES_CERTNO, "S1", in_scope(40_000_000), hospital=HOSP_SH,
                         infno="2304")
    # 390 inpatient, level 1: (40,000,000 − 20,000) × 85 % = 33,983,000, capped at the
    # inpatient cap of 300,000 yuan = 30,000,000 fen.
    assert ok(stay)["setlinfo"]["hifp_pay"] == 30_000_000
    _, stay2 = ins.settle(RES_CERTNO, "S2", in_scope(100_000), "2026-03-02 10:00:00",
                          hospital=HOSP_SH, infno="2304")
    assert ok(stay2)["setlinfo"]["hifp_pay"] == 0  # the inpatient cap is reached
    _, out = ins.settle(RES_CERTNO, "V1", in_scope(30_000), "2026-03-03 10:00:00",
                        hospital=HOSP_SH)
    # 390 outpatient, level 1: (30,000 − 10,000) × 60 % = 12,000, in full.
    assert ok(out)["setlinfo"]["hifp_pay"] == 12_000


# -- 2601 reversal -------------------------------------------------------------------------------

def test_reversal_after_a_settlement_undoes_it() -> None:
    ins = Insured()
    req, ans = ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    setl_id = ok(ans)["setlinfo"]["setl_id"]
    # 310 outpatient level 3: dedc 180,000, hifp (300,000 − 180,000) × 70 % = 84,000,
    # acct 216,000 -> balance 284,000.
    assert ins.money(EMP_CERTNO) == (284_000, {"2026": {"fund_11": 84_000,
                                                        "dedc_11": 180_000}})
    out = ok(ins.reverse(EMP_CERTNO, req["msgid"], "2207"))
    assert out == {"omsgid": req["msgid"], "oinfno": "2207", "result": "undone",
                   "reversed_setl_id": setl_id}
    assert ins.money(EMP_CERTNO) == (EMPLOYEE_BALANCE, {})
    assert ins.rows[EMP_CERTNO].settlements[setl_id]["status"] == "reversed"
    refused(ins.cancel(EMP_CERTNO, setl_id, "V1"), ErrorCode.SETTLEMENT_ALREADY_CANCELLED)
    # The visit may be settled again (with a new msgid), from the restored accumulators: the
    # whole deductible again, so the same 84,000.
    _, again = ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    assert ok(again)["setlinfo"]["hifp_pay"] == 84_000


def test_a_reversal_of_a_request_dated_days_after_it_is_refused_at_the_insured_place() -> None:
    """The insured place checks it for itself (the treatment side refuses it first, so only a
    test of this side shows it): what a 2601 remembers in advance is kept until its original's
    date, so one dated years ahead could grow the row without end."""
    ins = Insured()
    ins.settle(EMP_CERTNO, "V1", in_scope(300_000))  # the person has a row
    ahead = f"{HOSP_BJ.fixmedins_code}29990101000000" + "0001"
    msg = refused(ins.reverse(EMP_CERTNO, ahead, "2207"), ErrorCode.NOT_REVERSIBLE)
    assert "more than 1 day after this 2601" in msg
    assert ins.rows[EMP_CERTNO].reversed == {}


@pytest.mark.parametrize("infno", ["2208", "2601", "5206"])
def test_a_request_declaring_another_insured_province_is_refused_as_a_settlement_is(
        infno: str) -> None:
    """Only the insured place answers for a person's money. A cancellation, a 2601 or a 5206
    declaring another insured province would travel the wrong route (a cross-province one
    taken as local, past the national platform): refused (E3004), as a settlement is, and
    nothing changes."""
    ins = Insured()
    req, ans = ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    setl_id = ok(ans)["setlinfo"]["setl_id"]
    inputs = {"2208": settle_cancel_input(EMP, setl_id, "V1"),
              "2601": reversal_input(EMP, req["msgid"], "2207"),
              "5206": accumulators_input(EMP, T[:7].replace("-", ""))}
    wrong = ins.request(EMP_CERTNO, infno, inputs[infno])
    wrong["insuplc_admdvs"] = HOSP_SH.admdvs
    before = ins.money(EMP_CERTNO)
    refused(ins.handle(EMP_CERTNO, wrong), ErrorCode.INSURED_PLACE_MISMATCH)
    assert ins.money(EMP_CERTNO) == before
    assert ins.rows[EMP_CERTNO].settlements[setl_id]["status"] == "settled"


def test_settlement_records_are_forgotten_a_window_after_their_last_change_not_the_money(
        ) -> None:
    """A row that kept every settlement outgrew a Kafka record after ~1,600 of them (years
    of dialysis), and the person could settle no more. A record past the window can no
    longer be cancelled or reversed, so it goes, by its last change (made, cancelled or
    reversed); balance and accumulators stay."""
    ins = Insured()
    _, first = ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    _, second = ins.settle(EMP_CERTNO, "V2", in_scope(100_000),
                           inf_time="2026-03-01 11:00:00")
    second_id = ok(second)["setlinfo"]["setl_id"]
    ok(ins.cancel(EMP_CERTNO, second_id, "V2", inf_time="2026-03-05 10:00:00"))
    money = ins.money(EMP_CERTNO)
    ok(ins.handle(EMP_CERTNO, ins.request(EMP_CERTNO, "5206", accumulators_input(
        EMP, "202603"), inf_time="2026-03-09 10:00:00")))
    row = ins.rows[EMP_CERTNO]
    assert list(row.settlements) == [second_id]  # the first made on 03-01, gone by 03-09;
    assert ins.money(EMP_CERTNO) == money  # the second cancelled on 03-05, still there
    ok(ins.handle(EMP_CERTNO, ins.request(EMP_CERTNO, "5206", accumulators_input(
        EMP, "202603"), inf_time="2026-03-13 10:00:00")))
    assert ins.rows[EMP_CERTNO].settlements == {} and ins.money(EMP_CERTNO) == money
    assert ok(first)["setlinfo"]["setl_id"] != second_id


def test_reversal_before_its_settlement_refuses_the_late_original() -> None:
    ins = Insured()
    late = ins.request(EMP_CERTNO, "2207", settle_input(EMP, "V1", 300_000))
    out = ok(ins.reverse(EMP_CERTNO, late["msgid"], "2207"))
    assert out == {"omsgid": late["msgid"], "oinfno": "2207", "result": "reversed-in-advance",
                   "reversed_setl_id": ""}
    msg = refused(ins.handle(EMP_CERTNO, late, fees=in_scope(300_000)), ErrorCode.REVERSED)
    assert late["msgid"] in msg
    assert ins.money(EMP_CERTNO) == (EMPLOYEE_BALANCE, {})
    assert ins.rows[EMP_CERTNO].settlements == {}


def test_reversal_of_a_presettlement_has_nothing_to_undo() -> None:
    ins = Insured()
    req, _ = ins.settle(EMP_CERTNO, "V1", in_scope(300_000), infno="2206")
    out = ok(ins.reverse(EMP_CERTNO, req["msgid"], "2206"))
    assert (out["result"], out["reversed_setl_id"]) == ("nothing-to-undo", "")
    assert ins.money(EMP_CERTNO) == (EMPLOYEE_BALANCE, {})


def test_reversal_naming_a_settlement_for_a_msgid_that_was_not_one_is_refused() -> None:
    # A 2601 whose oinfno (2207) does not match what omsgid was (a 2206 pre-settlement, a 2208
    # cancellation) must be answered, not crash the insured place.
    ins = Insured()
    pre, _ = ins.settle(EMP_CERTNO, "V1", in_scope(300_000), infno="2206")
    refused(ins.reverse(EMP_CERTNO, pre["msgid"], "2207"), ErrorCode.NOT_REVERSIBLE)
    _, ans = ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    setl_id = ok(ans)["setlinfo"]["setl_id"]
    cancel_req = ins.request(EMP_CERTNO, "2208", settle_cancel_input(EMP, setl_id, "V1"))
    ok(ins.handle(EMP_CERTNO, cancel_req))
    refused(ins.reverse(EMP_CERTNO, cancel_req["msgid"], "2207"), ErrorCode.NOT_REVERSIBLE)
    assert ins.money(EMP_CERTNO) == (EMPLOYEE_BALANCE, {})


@pytest.mark.parametrize("oinfno", ["2206", "1101", "5206", "2303"])
def test_a_reversal_naming_a_settlement_as_another_transaction_is_refused_and_undoes_nothing(
        oinfno: str) -> None:
    # Answered "nothing to undo", the hospital would take the money as never moved.
    ins = Insured()
    req, ans = ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    setl_id = ok(ans)["setlinfo"]["setl_id"]
    before = ins.money(EMP_CERTNO)
    msg = refused(ins.reverse(EMP_CERTNO, req["msgid"], oinfno), ErrorCode.NOT_REVERSIBLE)
    assert f"was a settlement, not a {oinfno}" in msg
    assert ins.money(EMP_CERTNO) == before != (EMPLOYEE_BALANCE, {})
    assert ins.rows[EMP_CERTNO].settlements[setl_id]["status"] == "settled"
    assert ok(ins.reverse(EMP_CERTNO, req["msgid"], "2207"))["result"] == "undone"


@pytest.mark.parametrize("reversal_first", [False, True])
def test_a_cancellation_cannot_be_reversed_in_either_order(reversal_first: bool) -> None:
    ins = Insured()
    _, ans = ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    setl_id = ok(ans)["setlinfo"]["setl_id"]
    cancel_req = ins.request(EMP_CERTNO, "2208", settle_cancel_input(EMP, setl_id, "V1"))
    if reversal_first:
        refused(ins.reverse(EMP_CERTNO, cancel_req["msgid"], "2208"), ErrorCode.NOT_REVERSIBLE)
        ok(ins.handle(EMP_CERTNO, cancel_req))
    else:
        ok(ins.handle(EMP_CERTNO, cancel_req))
        refused(ins.reverse(EMP_CERTNO, cancel_req["msgid"], "2208"), ErrorCode.NOT_REVERSIBLE)
    # Either way the cancellation stands.
    assert ins.money(EMP_CERTNO) == (EMPLOYEE_BALANCE, {})
    assert ins.rows[EMP_CERTNO].settlements[setl_id]["status"] == "cancelled"


# -- properties over random settlements ----------------------------------------------------------

settlement = st.tuples(
    st.sampled_from([EMP_CERTNO, RETIRED_CERTNO, RES_CERTNO]),
    st.sampled_from(["2026-02-01 09:00:00", "2026-11-30 15:00:00", "2027-01-05 08:30:00"]),
    st.sampled_from([HOSP_BJ, HOSP_SH]),
    st.integers(0, 200_000),  # own pay
    st.integers(0, 3_000_000),  # in scope
    st.sampled_from(["0", "1"]),  # acct_used_flag
    st.sampled_from(["11", "13", "21", "24"]),  # med_type
)
Settlement = tuple[str, str, Hospital, int, int, str, str]


def do_settle(ins: Insured, n: int, s: Settlement,
              req: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    cert, inf_time, hospital, own, scope, acct, med_type = s
    fees = FeeTotals(own + scope, own, 0, 0, scope)
    if req is None:
        infno = "2304" if med_type.startswith("2") else "2207"
        return ins.settle(cert, f"V{n}", fees, inf_time, hospital, infno, med_type, acct)
    return req, ins.handle(cert, req, hospital, fees)


@PROPS
@given(st.lists(st.tuples(settlement, st.booleans()), min_size=1, max_size=20))
def test_cancelling_a_settlement_restores_balance_and_accumulators_exactly(
        steps: list[tuple[Settlement, bool]]) -> None:
    ins = Insured()
    in_force: dict[str, list[dict[str, Any]]] = {}  # (the row forgets records, not money)
    # in the order of their time, and each cancelled by its own hospital, as the treatment
    # side lets them through (an older one is a replay to it past the person's horizon)
    steps = sorted(steps, key=lambda step: step[0][1])
    for n, (s, cancel) in enumerate(steps):
        cert = s[0]
        before = ins.money(cert)
        _, ans = do_settle(ins, n, s)
        info = ok(ans)["setlinfo"]
        if cancel:
            infno = "2305" if info["clr_type"] == "21" else "2208"
            ok(ins.cancel(cert, info["setl_id"], f"V{n}", s[1], infno, s[2]))
            assert ins.money(cert) == before
        else:
            in_force.setdefault(cert, []).append(info)
    # What remains is the sum of the settlements still settled.
    for cert, row in ins.rows.items():
        expected: dict[str, dict[str, int]] = {}
        for setl in in_force.get(cert, []):
            acc = expected.setdefault(setl["setl_time"][:4], {})
            acc[f"fund_{setl['clr_type']}"] = acc.get(f"fund_{setl['clr_type']}", 0) + \
                setl["hifp_pay"]
            if setl["clr_type"] == "11":
                acc["dedc_11"] = acc.get("dedc_11", 0) + setl["act_pay_dedc"]
        nonzero = {y: {k: v for k, v in a.items() if v} for y, a in expected.items()}
        assert ins.money(cert)[1] == {y: a for y, a in nonzero.items() if a}
        paid = sum(s["acct_pay"] for s in in_force.get(cert, []))
        assert row.balance == ins.ref.enrollments[cert].balance - paid


@PROPS
@given(st.lists(settlement, max_size=10), settlement)
def test_reversal_in_either_order_ends_in_the_same_balance_and_accumulators(
        history: list[Settlement], x: Settlement) -> None:
    first, late = Insured(), Insured()  # the same history, then x and its 2601 in each order
    # in the order of their time, x last, as the treatment side lets them through (an older
    # one is a replay to it past the person's horizon)
    history = sorted(history, key=lambda s: s[1])
    x = (x[0], max([x[1], *(s[1] for s in history)]), *x[2:])
    for ins in (first, late):
        for n, s in enumerate(history):
            ok(do_settle(ins, n, s)[1])
    cert = x[0]
    before = first.money(cert)
    assert late.money(cert) == before
    req, ans = do_settle(first, len(history), x)
    ok(ans)
    same_day = x[1][:11] + "23:59:59"  # 冲正 is a same-day operation (within the window)
    assert ok(first.reverse(cert, req["msgid"], req["infno"], same_day))["result"] == "undone"
    assert ok(late.reverse(cert, req["msgid"], req["infno"], same_day))["result"] == \
        "reversed-in-advance"
    refused(do_settle(late, len(history), x, req)[1], ErrorCode.REVERSED)
    assert first.money(cert) == late.money(cert) == before


# -- suspension ----------------------------------------------------------------------------------

def test_a_reversal_outside_the_operating_window_is_refused_and_changes_nothing() -> None:
    late, timely = Insured(), Insured()
    for ins in (late, timely):
        ok(ins.settle(EMP_CERTNO, "V1", in_scope(300_000), "2026-02-01 09:00:00")[1])
    omsgid = next(iter(late.rows[EMP_CERTNO].answers))
    before = late.money(EMP_CERTNO)
    refused(late.reverse(EMP_CERTNO, omsgid, "2207", "2026-02-09 09:00:00"),
            ErrorCode.NOT_REVERSIBLE)  # eight days later: outside the 7-day window
    assert late.money(EMP_CERTNO) == before
    out = ok(timely.reverse(EMP_CERTNO, omsgid, "2207", "2026-02-07 09:00:00"))
    assert out["result"] == "undone"  # six days later: still inside


def test_suspended_person_is_identified_but_not_settled() -> None:
    ins = Insured(with_enrollments(SUSP))
    info = ok(ins.handle(SUSPENDED_CERTNO, ins.request(
        SUSPENDED_CERTNO, "1101", person_info_input(SUSPENDED_CERTNO, T))))
    assert info["insuinfo"][0]["psn_insu_stas"] == "2"
    assert info["baseinfo"]["psn_no"] == SUSP.psn_no
    for infno in ("2206", "2207", "2303", "2304"):
        _, ans = ins.settle(SUSPENDED_CERTNO, "V1", in_scope(300_000), infno=infno)
        refused(ans, ErrorCode.INSURANCE_SUSPENDED)
    assert ins.money(SUSPENDED_CERTNO) == (SUSP.balance, {})
    assert ins.rows[SUSPENDED_CERTNO].settlements == {}


def test_person_info_of_an_active_person_says_status_1() -> None:
    ins = Insured()
    info = ok(ins.handle(EMP_CERTNO, ins.request(EMP_CERTNO, "1101",
                                                 person_info_input(EMP_CERTNO, T))))
    assert info["insuinfo"][0]["psn_insu_stas"] == "1"


# -- filings and emergencies ---------------------------------------------------------------------

LONG_TERM_SH = Filing("long-term", SH, "2026-01-01", "2028-12-31")

# Settled on 2026-03-01. Outpatient at HOSP_SH (level 1): 310 ratio 90 %, deductible 180,000;
# in scope 280,000 -> 100,000 after the deductible: 90,000 without the cut, 80,000 with it.
# Inpatient at HOSP_SH: 310 level 1 ratio 95 %, deductible 300 yuan = 30,000; in scope 130,000
# -> 100,000 after the deductible: 95,000 without the cut, 85,000 with it.
# Local at HOSP_BJ (level 3): 70 %, never cut -> 70,000.
CUT_CASES = [
    # (filings, med_type, hospital, expected hifp_pay)
    pytest.param((), "11", HOSP_SH, 80_000, id="cross-province-unfiled-cut"),
    pytest.param((LONG_TERM_SH,), "11", HOSP_SH, 90_000, id="long-term-filing"),
    pytest.param((Filing("referral", SH, "2026-02-01", "2026-03-01"),), "11", HOSP_SH, 90_000,
                 id="referral-ending-that-day"),
    pytest.param((Filing("referral", SH, "2026-03-01", "2026-04-30"),), "11", HOSP_SH, 90_000,
                 id="referral-starting-that-day"),
    pytest.param((Filing("long-term", "440000", "2026-01-01", "2028-12-31"),), "11", HOSP_SH,
                 80_000, id="filing-for-another-province"),
    pytest.param((Filing("referral", SH, "2026-01-01", "2026-02-28"),), "11", HOSP_SH, 80_000,
                 id="filing-ended-the-day-before"),
    pytest.param((Filing("referral", SH, "2026-03-02", "2026-06-30"),), "11", HOSP_SH, 80_000,
                 id="filing-starting-the-day-after"),
    pytest.param((), "13", HOSP_SH, 90_000, id="outpatient-emergency-unfiled"),
    pytest.param((), "21", HOSP_SH, 85_000, id="inpatient-unfiled-cut"),
    pytest.param((LONG_TERM_SH,), "21", HOSP_SH, 95_000, id="inpatient-filed"),
    pytest.param((), "24", HOSP_SH, 95_000, id="emergency-admission-unfiled"),
    pytest.param((), "11", HOSP_BJ, 70_000, id="local-never-cut"),
]


@pytest.mark.parametrize(("filings", "med_type", "hospital", "hifp_pay"), CUT_CASES)
def test_unfiled_cut_applies_only_to_cross_province_visits_without_a_filing_or_emergency(
        filings: tuple[Filing, ...], med_type: str, hospital: Hospital, hifp_pay: int) -> None:
    e = dataclasses.replace(EMP, filings=filings)
    ins = Insured(with_enrollments(e))
    inpatient = med_type.startswith("2")
    scope = 130_000 if inpatient else 280_000
    _, ans = ins.settle(EMP_CERTNO, "V1", in_scope(scope), "2026-03-01 10:00:00", hospital,
                        "2304" if inpatient else "2207", med_type)
    assert ok(ans)["setlinfo"]["hifp_pay"] == hifp_pay


def test_person_info_lists_the_filings() -> None:
    referral = Filing("referral", "440000", "2026-11-01", "2027-03-31")
    ins = Insured(with_enrollments(dataclasses.replace(EMP, filings=(LONG_TERM_SH, referral))))
    info = ok(ins.handle(EMP_CERTNO, ins.request(EMP_CERTNO, "1101",
                                                 person_info_input(EMP_CERTNO, T))))
    assert info["fileinfo"] == [
        {"fil_type": "long-term", "mdtrtarea_prov": SH, "begndate": "2026-01-01",
         "enddate": "2028-12-31"},
        {"fil_type": "referral", "mdtrtarea_prov": "440000", "begndate": "2026-11-01",
         "enddate": "2027-03-31"}]


# -- 5206 accumulators ---------------------------------------------------------------------------

def test_accumulators_query_returns_the_year_of_cum_ym_with_the_certno_masked() -> None:
    ins = Insured()
    ins.settle(EMP_CERTNO, "V1", in_scope(300_000), "2026-03-01 10:00:00")
    # 2026 outpatient: dedc 180,000, fund_11 (300,000 − 180,000) × 70 % = 84,000.
    ins.settle(EMP_CERTNO, "S1", in_scope(300_000), "2026-06-01 10:00:00", infno="2304")
    # 2026 inpatient: fund_21 (300,000 − 100,000) × 85 % = 170,000.
    ins.settle(EMP_CERTNO, "V2", in_scope(200_000), "2027-01-10 10:00:00")
    # 2027 outpatient from zero: dedc 180,000, fund_11 (200,000 − 180,000) × 70 % = 14,000.
    answers = {}
    for cum_ym in ("202612", "202701", "202501"):
        answers[cum_ym] = ins.handle(EMP_CERTNO, ins.request(
            EMP_CERTNO, "5206", accumulators_input(EMP, cum_ym), "2027-02-01 10:00:00"))
    assert ok(answers["202612"]) == {"psn": "110105********002X", "year": "2026", "cuminfo": [
        {"cum_type_code": "dedc_11", "cum": 180_000},
        {"cum_type_code": "fund_11", "cum": 84_000},
        {"cum_type_code": "fund_21", "cum": 170_000}]}
    assert ok(answers["202701"]) == {"psn": "110105********002X", "year": "2027", "cuminfo": [
        {"cum_type_code": "dedc_11", "cum": 180_000},
        {"cum_type_code": "fund_11", "cum": 14_000},
        {"cum_type_code": "fund_21", "cum": 0}]}  # every type is listed, zeros included
    assert ok(answers["202501"])["cuminfo"] == [
        {"cum_type_code": name, "cum": 0} for name in ("dedc_11", "fund_11", "fund_21")]
    for ans in answers.values():
        wire = encode(ans).decode()
        assert EMP_CERTNO not in wire
        assert EMP_CERTNO[6:14] not in wire  # the birth date is hidden too
        assert ok(ans)["psn"] == mask_certno(EMP_CERTNO)


def test_accumulators_query_changes_nothing() -> None:
    ins = Insured()
    ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    before = ins.money(EMP_CERTNO)
    ok(ins.handle(EMP_CERTNO, ins.request(EMP_CERTNO, "5206", accumulators_input(EMP, "202603"))))
    assert ins.money(EMP_CERTNO) == before


# -- idempotency by msgid ------------------------------------------------------------------------

def prepared(infno: str) -> tuple[Insured, dict[str, Any], FeeTotals | None]:
    """A platform in the state where `infno` makes sense, and the request to send twice."""
    ins = Insured()
    fees = in_scope(300_000)
    if infno == Infno.PERSON_INFO:
        return ins, ins.request(EMP_CERTNO, infno, person_info_input(EMP_CERTNO, T)), None
    if infno in ("2206", "2207", "2303", "2304"):
        med_type = "21" if infno in ("2303", "2304") else "11"
        return ins, ins.request(EMP_CERTNO, infno, settle_input(EMP, "V1", 300_000, "1",
                                                                med_type)), fees
    settle_infno = "2304" if infno == Infno.INPATIENT_SETTLE_CANCEL else "2207"
    settle_req, ans = ins.settle(EMP_CERTNO, "V1", fees, infno=settle_infno)
    setl_id = ok(ans)["setlinfo"]["setl_id"]
    if infno in CANCELLATIONS:
        return ins, ins.request(EMP_CERTNO, infno, settle_cancel_input(EMP, setl_id, "V1")), None
    if infno == Infno.REVERSAL:
        return ins, ins.request(EMP_CERTNO, infno,
                                reversal_input(EMP, settle_req["msgid"], "2207")), None
    assert infno == Infno.ACCUMULATORS
    return ins, ins.request(EMP_CERTNO, infno, accumulators_input(EMP, "202603")), None


@pytest.mark.parametrize("infno", ["1101", "2206", "2207", "2208", "2303", "2304", "2305",
                                   "5206", "2601"])
def test_duplicate_msgid_gets_the_identical_answer_and_changes_nothing(infno: str) -> None:
    ins, req, fees = prepared(infno)
    first = ins.handle(EMP_CERTNO, req, fees=fees)
    assert first["infcode"] == 0, first
    before = copy.deepcopy(ins.rows[EMP_CERTNO].to_dict())
    answer, changed = ins.platform.handle(EMP_CERTNO, ins.rows[EMP_CERTNO], copy.deepcopy(req),
                                          forward_ctx(req, HOSP_BJ) | (
                                              {"fees": fees.as_dict()} if fees else {}))
    assert answer == first
    assert changed is None
    assert ins.rows[EMP_CERTNO].to_dict() == before


def test_duplicate_of_a_refused_request_gets_the_same_refusal_after_the_cause_is_gone() -> None:
    ins = Insured()
    _, ans = ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    setl_id = ok(ans)["setlinfo"]["setl_id"]
    second, refusal = ins.settle(EMP_CERTNO, "V1", in_scope(300_000))
    refused(refusal, ErrorCode.VISIT_ALREADY_SETTLED)
    ok(ins.cancel(EMP_CERTNO, setl_id, "V1"))  # now the visit could be settled again...
    before = ins.money(EMP_CERTNO)
    # ...but the duplicate of the refused request is answered as it was the first time.
    assert ins.handle(EMP_CERTNO, second, fees=in_scope(300_000)) == refusal
    assert ins.money(EMP_CERTNO) == before
