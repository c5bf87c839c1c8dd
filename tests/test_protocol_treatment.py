"""The treatment-place side of the protocol (DOMAIN.md §2, §4), through settlement.oracle.Oracle
(treatment, national and insured roles in sequence): registration cancellation (2202), fee
cancellation (2205, 2302), the inpatient path (2401 → 2301 → 2402 → 2303 → 2304), 2601 of
treatment-side transactions in both orders, and the refusals on the way.

The country is tests/handmade.py: HOSP_BJ (北京, level 3) and HOSP_SH (上海, level 1); EMP is an
in-service Beijing employee with 500,000 fen in the account.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messages.codec import decode, encode
from messages.codes import ErrorCode
from messages.envelope import Answer, Request
from messages.transactions import OUTPUT_MODELS, VisitAck
from messages.visitlog import make_msgid
from settlement.national import BackToTreatment, ToInsured
from settlement.oracle import Oracle
from settlement.reference import Enrollment
from settlement.treatment import MAX_REQUEST_BYTES, DeadLetter, Forward, Reply
from tests.clinic import DAY0, EMP, WORKED, WORKED_CERTNO, Clinic, T, sent_at
from tests.handmade import (
    EMP_CERTNO,
    ENROLLMENTS,
    HOSP_BJ,
    HOSP_SH,
    RETIRED_CERTNO,
    SH_CITY,
    accumulators_input,
    admit_input,
    certno,
    discharge_input,
    fee_cancel_input,
    fee_input,
    ok,
    person_info_input,
    refused,
    register_cancel_input,
    register_input,
    request,
    reversal_input,
    settle_cancel_input,
    settle_input,
)

# -- 2202 registration cancellation --------------------------------------------------------------


def test_registration_cancellation_ends_the_visit_and_later_fees_are_refused() -> None:
    c = Clinic()
    m = c.register()
    ok(c.upload(m, [("0001", "DA", 1, 1_000)]))
    out = ok(c.do(EMP_CERTNO, "2202", register_cancel_input(EMP, m)))
    assert out == {"mdtrt_id": m, "status": "cancelled"}
    assert VisitAck.model_validate(out).cancelled_items == 0
    refused(c.upload(m, [("0002", "DA", 1, 1_000)]), ErrorCode.WRONG_SEQUENCE)
    refused(c.settle(m, 1_000), ErrorCode.WRONG_SEQUENCE)
    refused(c.do(EMP_CERTNO, "2202", register_cancel_input(EMP, m)), ErrorCode.WRONG_SEQUENCE)
    assert EMP_CERTNO not in c.oracle.person_rows  # the insured place never heard of it


def test_registration_cancellation_of_a_settled_visit_is_refused_until_it_is_cancelled(
) -> None:
    c = Clinic()
    m = c.register()
    ok(c.upload(m, [("0001", "DA", 1, 1_000)]))
    setl_id = ok(c.settle(m, 1_000))["setlinfo"]["setl_id"]
    refused(c.do(EMP_CERTNO, "2202", register_cancel_input(EMP, m)),
            ErrorCode.VISIT_ALREADY_SETTLED)
    ok(c.do(EMP_CERTNO, "2208", settle_cancel_input(EMP, setl_id, m)))
    ok(c.do(EMP_CERTNO, "2202", register_cancel_input(EMP, m)))


# -- 2205 fee cancellation -----------------------------------------------------------------------

def test_cancelling_all_fees_empties_the_visit_and_the_old_total_no_longer_settles() -> None:
    c = Clinic()
    m = c.register()
    ok(c.upload(m, [("0001", "DA", 2, 1_000), ("0002", "DB", 1, 3_000)], chrg_bchno="1"))
    ok(c.upload(m, [("0003", "CC", 1, 500)], chrg_bchno="2"))
    old_total = 2 * 1_000 + 3_000 + 500  # 5,500
    out = ok(c.do(EMP_CERTNO, "2205", fee_cancel_input(EMP, m, "0000")))
    assert out == {"mdtrt_id": m, "status": "fees-cancelled", "cancelled_items": 3}
    assert c.fees(m) == set()
    # With no fees left, the visit cannot be settled at all (E4003 comes before the amount).
    refused(c.settle(m, old_total), ErrorCode.NO_FEES)
    ok(c.upload(m, [("0004", "DA", 1, 1_000)], chrg_bchno="3"))
    msg = refused(c.settle(m, old_total), ErrorCode.AMOUNT_MISMATCH)
    assert "5500" in msg and "1000" in msg
    assert ok(c.settle(m, 1_000))["setlinfo"]["medfee_sumamt"] == 1_000


def test_cancelling_one_batch_keeps_the_others() -> None:
    c = Clinic()
    m = c.register()
    ok(c.upload(m, [("0001", "DA", 2, 1_000), ("0002", "DB", 1, 3_000)], chrg_bchno="1"))
    ok(c.upload(m, [("0003", "CC", 1, 500)], chrg_bchno="2"))
    assert ok(c.do(EMP_CERTNO, "2205", fee_cancel_input(EMP, m, "2")))["cancelled_items"] == 1
    assert c.fees(m) == {"0001", "0002"}
    refused(c.do(EMP_CERTNO, "2205", fee_cancel_input(EMP, m, "2")), ErrorCode.NO_FEES)
    # 2 × 1,000 + 3,000 = 5,000 remain.
    assert ok(c.settle(m, 5_000))["setlinfo"]["medfee_sumamt"] == 5_000


# -- 2302 inpatient fee cancellation -------------------------------------------------------------

def stay_fee_cancel(e: Enrollment, mdtrt_id: str, feedetl_sn: str = "0000") -> dict[str, Any]:
    return {"feedetl_sn": feedetl_sn, "mdtrt_id": mdtrt_id, "psn_no": e.psn_no}


def test_a_stays_fee_item_is_cancelled_by_its_feedetl_sn_and_all_of_them_by_0000() -> None:
    """2302 (住院费用明细撤销) corrects a stay's fees as 2205 corrects a visit's: one item, or
    all, and the stay settles on what is left."""
    c = Clinic()
    m = c.admit()
    ok(c.upload(m, [("0001", "DA", 2, 1_000), ("0002", "DB", 1, 3_000)], infno="2301"))
    ok(c.upload(m, [("0003", "CC", 1, 500)], infno="2301", chrg_bchno="2"))
    out = ok(c.do(EMP_CERTNO, "2302", stay_fee_cancel(EMP, m, "0002")))
    assert out == {"mdtrt_id": m, "status": "fees-cancelled", "cancelled_items": 1}
    assert c.fees(m) == {"0001", "0003"}
    msg = refused(c.do(EMP_CERTNO, "2302", stay_fee_cancel(EMP, m, "0002")), ErrorCode.NO_FEES)
    assert "feedetl_sn 0002" in msg
    assert ok(c.do(EMP_CERTNO, "2302", stay_fee_cancel(EMP, m)))["cancelled_items"] == 2
    assert c.fees(m) == set()
    ok(c.upload(m, [("0004", "DA", 1, 7_000)], infno="2301", chrg_bchno="3"))
    ok(c.do(EMP_CERTNO, "2402", discharge_input(EMP, m, T)))
    assert ok(c.settle(m, 7_000, infno="2304"))["setlinfo"]["medfee_sumamt"] == 7_000
    refused(c.do(EMP_CERTNO, "2302", stay_fee_cancel(EMP, m)), ErrorCode.VISIT_ALREADY_SETTLED)


def test_2302_is_for_stays_and_2205_for_outpatient_visits_and_neither_is_reversible() -> None:
    c = Clinic()
    stay, visit = c.admit(), c.register()
    ok(c.upload(stay, [("0001", "DA", 1, 1_000)], infno="2301"))
    ok(c.upload(visit, [("0001", "DA", 1, 1_000)]))
    refused(c.do(EMP_CERTNO, "2302", stay_fee_cancel(EMP, visit)), ErrorCode.WRONG_SEQUENCE)
    refused(c.do(EMP_CERTNO, "2205", fee_cancel_input(EMP, stay)), ErrorCode.WRONG_SEQUENCE)
    cancel = c.request(EMP_CERTNO, "2302", stay_fee_cancel(EMP, stay))
    ok(c.send(EMP_CERTNO, cancel))
    refused(c.do(EMP_CERTNO, "2601", reversal_input(EMP, cancel["msgid"], "2302")),
            ErrorCode.NOT_REVERSIBLE)
    assert c.fees(stay) == set() and c.fees(visit) == {"0001"}


# -- inpatient -----------------------------------------------------------------------------------

def test_inpatient_stay_admission_two_fee_batches_discharge_and_settlement() -> None:
    """The DOMAIN.md §3 worked example, end to end: the Shanghai employee filed for Beijing,
    in hospital at the level-3 Beijing hospital, fees uploaded in two batches."""
    c = Clinic()
    m = c.admit(WORKED_CERTNO)
    batch1 = ok(c.upload(m, [("0001", "DA", 10, 1_250), ("0002", "DB", 3, 8_005)],
                         WORKED_CERTNO, "2301", "1"))
    batch2 = ok(c.upload(m, [("0003", "SV", 1, 500_000), ("0004", "CC", 2, 3_000)],
                         WORKED_CERTNO, "2301", "2"))
    assert [r["feedetl_sn"] for r in batch1["result"] + batch2["result"]] == [
        "0001", "0002", "0003", "0004"]
    assert c.fees(m, WORKED_CERTNO) == {"0001", "0002", "0003", "0004"}
    total = 10 * 1_250 + 3 * 8_005 + 500_000 + 2 * 3_000  # 542,515
    refused(c.settle(m, total, WORKED_CERTNO, "2304"), ErrorCode.WRONG_SEQUENCE)  # not out yet
    assert ok(c.do(WORKED_CERTNO, "2402", discharge_input(WORKED, m, T))) == {
        "mdtrt_id": m, "status": "discharged"}
    pre = ok(c.settle(m, total, WORKED_CERTNO, "2303"))["setlinfo"]
    s = ok(c.settle(m, total, WORKED_CERTNO, "2304"))["setlinfo"]
    # DOMAIN.md §3 worked example: medfee 542,515 = own 6,000 (CC) + over ceiling 50,000 (SV)
    # + class-B self-pay rhu(24,015 × 10 %) = 2,402 + in scope 484,113; deductible 100,000
    # (310 inpatient, level 3); hifp rhu(384,113 × 85 %) = 326,496 (filed: no cut);
    # psn_part 216,019; the account pays its 100,000; cash 116,019; balc 0.
    expected = {"medfee_sumamt": 542_515, "fulamt_ownpay_amt": 6_000, "overlmt_selfpay": 50_000,
                "preselfpay_amt": 2_402, "inscp_scp_amt": 484_113, "act_pay_dedc": 100_000,
                "hifp_pay": 326_496, "fund_pay_sumamt": 326_496, "psn_part_amt": 216_019,
                "acct_pay": 100_000, "psn_cash_pay": 116_019, "balc": 0}
    assert {k: s[k] for k in expected} == expected
    assert {k: pre[k] for k in expected} == expected
    assert (pre["setl_id"], s["clr_type"], s["med_type"]) == ("", "21", "21")
    assert (s["insuplc_admdvs"], s["mdtrtarea_admvs"]) == (SH_CITY, HOSP_BJ.admdvs)
    row = c.oracle.person_rows[WORKED_CERTNO]
    assert (row.balance, row.ytd) == (0, {"2026": {"fund_21": 326_496}})
    refused(c.settle(m, total, WORKED_CERTNO, "2304"), ErrorCode.VISIT_ALREADY_SETTLED)
    ok(c.do(WORKED_CERTNO, "2305", settle_cancel_input(WORKED, s["setl_id"], m)))
    row = c.oracle.person_rows[WORKED_CERTNO]  # read again: rows are stored encoded
    assert (row.balance, row.accumulator("2026", "fund_21")) == (100_000, 0)


@pytest.mark.parametrize("infno", ["2303", "2304"])
def test_inpatient_settlement_before_discharge_is_refused(infno: str) -> None:
    c = Clinic()
    m = c.admit()
    ok(c.upload(m, [("0001", "DA", 1, 1_000)], infno="2301"))
    refused(c.settle(m, 1_000, infno=infno), ErrorCode.WRONG_SEQUENCE)
    assert EMP_CERTNO not in c.oracle.person_rows


def test_outpatient_fees_for_an_inpatient_stay_are_refused_and_vice_versa() -> None:
    c = Clinic()
    stay = c.admit()
    visit = c.register()
    refused(c.upload(stay, [("0001", "DA", 1, 1_000)], infno="2204"), ErrorCode.WRONG_SEQUENCE)
    refused(c.upload(visit, [("0001", "DA", 1, 1_000)], infno="2301"),
            ErrorCode.WRONG_SEQUENCE)
    refused(c.do(EMP_CERTNO, "2402", discharge_input(EMP, visit, T)), ErrorCode.WRONG_SEQUENCE)
    assert c.fees(stay) == c.fees(visit) == set()


def test_second_discharge_is_refused() -> None:
    c = Clinic()
    m = c.admit()
    ok(c.do(EMP_CERTNO, "2402", discharge_input(EMP, m, T)))
    refused(c.do(EMP_CERTNO, "2402", discharge_input(EMP, m, T)), ErrorCode.WRONG_SEQUENCE)


# -- 2601 of treatment-side transactions ---------------------------------------------------------

def test_reversal_of_a_registration_makes_the_visit_unknown() -> None:
    c = Clinic()
    reg = c.request(EMP_CERTNO, "2201", register_input(EMP, T))
    m = ok(c.send(EMP_CERTNO, reg))["data"]["mdtrt_id"]
    out = ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, reg["msgid"], "2201")))
    assert out == {"omsgid": reg["msgid"], "oinfno": "2201", "result": "undone",
                   "reversed_setl_id": ""}
    refused(c.upload(m, [("0001", "DA", 1, 1_000)]), ErrorCode.UNKNOWN_VISIT)
    refused(c.settle(m, 1_000), ErrorCode.UNKNOWN_VISIT)
    refused(c.do(EMP_CERTNO, "2202", register_cancel_input(EMP, m)), ErrorCode.UNKNOWN_VISIT)


def test_a_reversal_naming_a_settlement_for_a_registration_is_refused_not_taken_ahead() -> None:
    # The registration was answered here: forwarded as a 2207's reversal, the insured place
    # would have held it "reversed in advance" and told the hospital so, undoing nothing.
    c = Clinic()
    reg = c.request(EMP_CERTNO, "2201", register_input(EMP, T))
    m = ok(c.send(EMP_CERTNO, reg))["data"]["mdtrt_id"]
    for oinfno in ("2207", "2206", "1101", "5206"):
        assert "not a " + oinfno in refused(
            c.do(EMP_CERTNO, "2601", reversal_input(EMP, reg["msgid"], oinfno)),
            ErrorCode.NOT_REVERSIBLE)
    ok(c.upload(m, [("0001", "DA", 1, 1_000)]))  # the visit is still open
    assert ok(c.settle(m, 1_000))["setlinfo"]["medfee_sumamt"] == 1_000


def test_reversal_of_an_admission_makes_the_stay_unknown() -> None:
    c = Clinic()
    adm = c.request(EMP_CERTNO, "2401", admit_input(EMP, T))
    m = ok(c.send(EMP_CERTNO, adm))["data"]["mdtrt_id"]
    assert ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, adm["msgid"], "2401")))[
        "result"] == "undone"
    refused(c.upload(m, [("0001", "DA", 1, 1_000)], infno="2301"), ErrorCode.UNKNOWN_VISIT)


def test_reversal_of_a_registration_with_fees_is_refused() -> None:
    c = Clinic()
    reg = c.request(EMP_CERTNO, "2201", register_input(EMP, T))
    m = ok(c.send(EMP_CERTNO, reg))["data"]["mdtrt_id"]
    ok(c.upload(m, [("0001", "DA", 1, 1_000)]))
    refused(c.do(EMP_CERTNO, "2601", reversal_input(EMP, reg["msgid"], "2201")),
            ErrorCode.NOT_REVERSIBLE)
    assert ok(c.settle(m, 1_000))["setlinfo"]["medfee_sumamt"] == 1_000  # still registered


def test_reversal_of_a_fee_upload_removes_exactly_its_items() -> None:
    c = Clinic()
    m = c.register()
    first = c.request(EMP_CERTNO, "2204",
                      fee_input(EMP, m, T, [("0001", "DA", 1, 100), ("0002", "DB", 1, 200)]))
    ok(c.send(EMP_CERTNO, first))
    ok(c.upload(m, [("0003", "DA", 1, 400)], chrg_bchno="2"))
    out = ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, first["msgid"], "2204")))
    assert out["result"] == "undone"
    assert c.fees(m) == {"0003"}
    refused(c.settle(m, 100 + 200 + 400), ErrorCode.AMOUNT_MISMATCH)
    assert ok(c.settle(m, 400))["setlinfo"]["medfee_sumamt"] == 400


def test_reversal_of_a_fee_upload_of_a_settled_visit_is_refused() -> None:
    c = Clinic()
    m = c.register()
    up = c.request(EMP_CERTNO, "2204", fee_input(EMP, m, T, [("0001", "DA", 1, 100)]))
    ok(c.send(EMP_CERTNO, up))
    ok(c.settle(m, 100))
    refused(c.do(EMP_CERTNO, "2601", reversal_input(EMP, up["msgid"], "2204")),
            ErrorCode.VISIT_ALREADY_SETTLED)
    assert c.fees(m) == {"0001"}


@pytest.mark.parametrize("infno", ["2201", "2401"])
def test_reversal_before_a_registration_refuses_the_late_registration(infno: str) -> None:
    c = Clinic()
    inp = register_input(EMP, T) if infno == "2201" else admit_input(EMP, T)
    late = c.request(EMP_CERTNO, infno, inp)
    out = ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, late["msgid"], infno)))
    assert out == {"omsgid": late["msgid"], "oinfno": infno, "result": "reversed-in-advance",
                   "reversed_setl_id": ""}
    msg = refused(c.send(EMP_CERTNO, late), ErrorCode.REVERSED)
    assert late["msgid"] in msg
    assert c.oracle.treatment_rows[EMP_CERTNO].visits == {}


def test_reversal_before_a_fee_upload_refuses_the_late_upload() -> None:
    c = Clinic()
    m = c.register()
    late = c.request(EMP_CERTNO, "2204", fee_input(EMP, m, T, [("0001", "DA", 1, 100)]))
    assert ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, late["msgid"], "2204")))[
        "result"] == "reversed-in-advance"
    refused(c.send(EMP_CERTNO, late), ErrorCode.REVERSED)
    assert c.fees(m) == set()


@pytest.mark.parametrize("oinfno", ["2201", "2207"])  # refused here, before the insured place
def test_a_reversal_of_a_request_dated_days_after_it_is_refused_and_not_remembered(
        oinfno: str) -> None:
    """A 2601 may come a step before its original, not years: what it would remember in
    advance is kept until its original's date, so a row could be grown without end."""
    c = Clinic()
    c.register()
    ahead = f"{HOSP_BJ.fixmedins_code}29990101000000" + "0001"
    msg = refused(c.do(EMP_CERTNO, "2601", reversal_input(EMP, ahead, oinfno)),
                  ErrorCode.NOT_REVERSIBLE)
    assert "more than 1 day after this 2601" in msg
    assert c.oracle.treatment_rows[EMP_CERTNO].reversed == {}
    assert EMP_CERTNO not in c.oracle.person_rows  # never forwarded (the insured place's own
    # check: tests/test_protocol_insured.py)
    a_step_ahead = f"{HOSP_BJ.fixmedins_code}20260301150000" + "0001"  # 6 hours: a stay's step
    assert ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, a_step_ahead, oinfno)))[
        "result"] == "reversed-in-advance"


def test_a_discharge_dated_before_its_admission_is_refused() -> None:
    c = Clinic()
    m = c.admit()
    msg = refused(c.do(EMP_CERTNO, "2402", discharge_input(EMP, m, "2026-02-28 09:00:00")),
                  ErrorCode.WRONG_SEQUENCE)
    assert "before the stay's begntime" in msg
    ok(c.do(EMP_CERTNO, "2402", discharge_input(EMP, m, T)))  # the same moment is not before


@pytest.mark.parametrize(("infno", "field", "value", "said"), [
    ("2201", "ipt_otp_no", "MZ\u202e0001", "line-separator or bidirectional-override character"),
    ("2201", "dept_code", "内科\x00", "line-separator or bidirectional-override character"),
    ("2201", "dept_code", "内科\u2028", "line-separator or bidirectional-override character"),
    ("2201", "dept_code", "内" * 31, "at most 30 characters"),
    ("5206", "cum_ym", "000001", "a month, yyyyMM, of the years 1900–2999"),
])
def test_text_a_his_writes_is_bounded_and_plain(infno: str, field: str, value: str,
                                                said: str) -> None:
    c = Clinic()
    inp = register_input(EMP, T) if infno == "2201" else accumulators_input(EMP, "202603")
    msg = refused(c.do(EMP_CERTNO, infno, {**inp, field: value}), ErrorCode.SCHEMA_VIOLATION)
    assert f"input.{field}: " in msg and said in msg and value not in msg


@pytest.mark.parametrize("oinfno", ["2205", "2402", "9001"])  # 2402: not what it was
def test_reversal_of_a_transaction_that_cannot_be_reversed_is_refused(oinfno: str) -> None:
    c = Clinic()
    m = c.register()
    ok(c.upload(m, [("0001", "DA", 1, 100)]))
    ok(c.do(EMP_CERTNO, "2205", fee_cancel_input(EMP, m)))
    cancel = c.request(EMP_CERTNO, "2202", register_cancel_input(EMP, m))
    ok(c.send(EMP_CERTNO, cancel))
    refused(c.do(EMP_CERTNO, "2601", reversal_input(EMP, cancel["msgid"], oinfno)),
            ErrorCode.NOT_REVERSIBLE)
    assert c.oracle.treatment_rows[EMP_CERTNO].visits[m]["status"] == "cancelled"


def test_reversal_naming_the_wrong_transaction_for_its_msgid_is_refused() -> None:
    """A 2601 whose oinfno is not what omsgid was must be answered, not crash the platform."""
    c = Clinic()
    info = c.request(EMP_CERTNO, "1101", person_info_input(EMP_CERTNO, T))
    ok(c.send(EMP_CERTNO, info))
    reg = c.request(EMP_CERTNO, "2201", register_input(EMP, T))
    m = ok(c.send(EMP_CERTNO, reg))["data"]["mdtrt_id"]
    up = c.request(EMP_CERTNO, "2204", fee_input(EMP, m, T, [("0001", "DA", 1, 100)]))
    ok(c.send(EMP_CERTNO, up))
    for omsgid, oinfno in ((info["msgid"], "2201"), (reg["msgid"], "2204"),
                           (up["msgid"], "2401"), (info["msgid"], "2301")):
        refused(c.do(EMP_CERTNO, "2601", reversal_input(EMP, omsgid, oinfno)),
                ErrorCode.NOT_REVERSIBLE)
    assert c.fees(m) == {"0001"}
    assert c.oracle.treatment_rows[EMP_CERTNO].visits[m]["status"] == "open"


def test_reversal_of_a_settlement_through_the_treatment_side_frees_the_visit() -> None:
    c = Clinic()
    m = c.register()
    ok(c.upload(m, [("0001", "DA", 1, 100)]))
    settle = c.request(EMP_CERTNO, "2207", settle_input(EMP, m, 100))
    setl_id = ok(c.send(EMP_CERTNO, settle))["setlinfo"]["setl_id"]
    out = ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, settle["msgid"], "2207")))
    assert (out["result"], out["reversed_setl_id"]) == ("undone", setl_id)
    assert c.oracle.treatment_rows[EMP_CERTNO].visits[m]["setl_id"] == ""
    assert ok(c.settle(m, 100))["setlinfo"]["setl_id"] not in ("", setl_id)


# -- other refusals ------------------------------------------------------------------------------

def test_fee_item_for_another_patient_is_refused() -> None:
    c = Clinic()
    m = c.register()
    other = ENROLLMENTS[RETIRED_CERTNO]
    ans = c.do(EMP_CERTNO, "2204", fee_input(other, m, T, [("0001", "DA", 1, 100)]))
    msg = refused(ans, ErrorCode.PERSON_MISMATCH)
    assert "input.feedetail[0].psn_no" in msg
    assert other.psn_no not in msg
    assert c.fees(m) == set()


@pytest.mark.parametrize("change, code", [
    ({"psn_no": "1".zfill(26)}, ErrorCode.PERSON_MISMATCH),
    ({"insutype": "390"}, ErrorCode.PERSON_MISMATCH),
    ({"insuplc_admdvs": SH_CITY}, ErrorCode.INSURED_PLACE_MISMATCH),
])
@pytest.mark.parametrize("infno", ["2201", "2401"])
def test_a_registration_naming_the_person_otherwise_than_1101_does_is_refused_at_once(
        infno: str, change: dict[str, str], code: ErrorCode) -> None:
    """A wrong psn_no, insutype or insured city is refused at the desk (it was registered,
    and refused only at the settlement, after the fees)."""
    c = Clinic()
    inp = (register_input if infno == "2201" else admit_input)(EMP, T)
    req = c.request(EMP_CERTNO, infno, {**inp, **{k: v for k, v in change.items()
                                                  if k in inp}})
    req["insuplc_admdvs"] = change.get("insuplc_admdvs", req["insuplc_admdvs"])
    msg = refused(c.send(EMP_CERTNO, req), code)
    assert EMP.psn_no not in msg
    row = c.oracle.treatment_rows.get(EMP_CERTNO)
    assert row is None or not row.visits


def test_a_registration_of_a_person_nobody_insures_is_refused() -> None:
    c = Clinic()
    stranger = certno("11010519491231003")
    req = c.request(EMP_CERTNO, "2201", register_input(EMP, T))
    req["input"]["mdtrt_cert_no"] = stranger
    refused(c.send(stranger, req), ErrorCode.UNKNOWN_PERSON)


def test_a_request_in_another_city_than_the_hospitals_is_refused() -> None:
    """mdtrtarea_admvs is the hospital's own city: another city of its province, or one that
    does not exist, is refused (only the province was compared)."""
    c = Clinic()
    for city in (HOSP_BJ.admdvs[:4] + "99", "110000"):
        req = c.request(EMP_CERTNO, "2201", register_input(EMP, T))
        req["mdtrtarea_admvs"] = city
        msg = refused(c.send(EMP_CERTNO, req), ErrorCode.WRONG_PROVINCE)
        assert f"is in {HOSP_BJ.admdvs}" in msg


@pytest.mark.parametrize("infno", ["2202", "2205", "2207"])
def test_a_request_on_a_visit_for_another_patient_or_insured_place_is_refused(
        infno: str) -> None:
    c = Clinic()
    m = c.register()
    ok(c.upload(m, [("0001", "DA", 1, 100)]))
    inp = {"2202": register_cancel_input(EMP, m), "2205": fee_cancel_input(EMP, m),
           "2207": settle_input(EMP, m, 100)}[infno]
    other = ENROLLMENTS[RETIRED_CERTNO]
    msg = refused(c.do(EMP_CERTNO, infno, {**inp, "psn_no": other.psn_no}),
                  ErrorCode.PERSON_MISMATCH)
    assert "input.psn_no is not the patient" in msg
    req = c.request(EMP_CERTNO, infno, inp)
    req["insuplc_admdvs"] = SH_CITY
    refused(c.send(EMP_CERTNO, req), ErrorCode.INSURED_PLACE_MISMATCH)
    assert c.fees(m) == {"0001"}
    ok(c.do(EMP_CERTNO, infno, inp))


@pytest.mark.parametrize("infno", ["2302", "2402", "2304", "2305", "2208"])
def test_a_stays_or_settled_visits_request_for_another_patient_or_insured_place_is_refused(
        infno: str) -> None:
    c = Clinic()
    inpatient = infno != "2208"
    m = c.admit() if inpatient else c.register()
    ok(c.upload(m, [("0001", "DA", 1, 100)], infno="2301" if inpatient else "2204"))
    if infno in ("2304", "2305"):
        ok(c.do(EMP_CERTNO, "2402", discharge_input(EMP, m, T)))
    setl_id = ok(c.settle(m, 100, infno="2304" if inpatient else "2207"))["setlinfo"][
        "setl_id"] if infno in ("2305", "2208") else ""
    inp = {"2302": {"feedetl_sn": "0000", "mdtrt_id": m, "psn_no": EMP.psn_no},
           "2402": discharge_input(EMP, m, T), "2304": settle_input(EMP, m, 100, "1", "21"),
           "2305": settle_cancel_input(EMP, setl_id, m),
           "2208": settle_cancel_input(EMP, setl_id, m)}[infno]
    other = ENROLLMENTS[RETIRED_CERTNO]
    refused(c.do(EMP_CERTNO, infno, {**inp, "psn_no": other.psn_no}), ErrorCode.PERSON_MISMATCH)
    req = c.request(EMP_CERTNO, infno, inp)
    req["insuplc_admdvs"] = EMP.insuplc_admdvs[:4] + "99"  # another city of the same province
    refused(c.send(EMP_CERTNO, req), ErrorCode.INSURED_PLACE_MISMATCH)
    ok(c.do(EMP_CERTNO, infno, inp))


def test_a_registration_naming_another_city_of_the_insured_province_is_refused() -> None:
    """The insured city, not only its province: 1101 answers it, and the settlement's
    setlinfo carries it (a city that does not exist was registered and settled)."""
    c = Clinic()
    req = c.request(EMP_CERTNO, "2201", register_input(EMP, T))
    req["insuplc_admdvs"] = EMP.insuplc_admdvs[:4] + "99"
    refused(c.send(EMP_CERTNO, req), ErrorCode.INSURED_PLACE_MISMATCH)


def test_a_fee_item_of_another_medical_type_than_the_visits_is_refused() -> None:
    c = Clinic()
    m = c.register()
    e = EMP
    msg = refused(c.do(EMP_CERTNO, "2204", fee_input(e, m, T, [("0001", "DA", 1, 100)],
                                                     med_type="21")), ErrorCode.WRONG_SEQUENCE)
    assert "input.feedetail[0].med_type 21" in msg
    item = fee_input(e, m, T, [("0001", "DA", 1, 100)])
    del item["feedetail"][0]["med_type"]  # left out: the visit's
    ok(c.do(EMP_CERTNO, "2204", item))


@pytest.mark.parametrize("field", ["feedetl_sn", "chrg_bchno"])
def test_a_fee_item_named_0000_is_refused_as_0000_cancels_them_all(field: str) -> None:
    """A 2302 of feedetl_sn 0000 meant for that one item cancelled every item of the stay."""
    c = Clinic()
    m = c.admit()
    upload = fee_input(EMP, m, T, [("0001", "DA", 1, 100)], med_type="21")
    upload["feedetail"][0][field] = "0000"
    msg = refused(c.do(EMP_CERTNO, "2301", upload), ErrorCode.SCHEMA_VIOLATION)
    assert f"input.feedetail.0.{field}" in msg and "0000 names all" in msg


def test_a_list_or_an_object_of_the_wrong_json_type_is_named_in_jsons_words() -> None:
    """Not pydantic's ("Input should be a valid dictionary or instance of FeeItem")."""
    c = Clinic()
    m = c.admit()
    upload = fee_input(EMP, m, T, [("0001", "DA", 1, 100)], med_type="21")
    for feedetail, said in (({"0": upload["feedetail"][0]}, "input.feedetail: not a JSON array"),
                            ([5], "input.feedetail.0: not a JSON object")):
        msg = refused(c.do(EMP_CERTNO, "2301", {**upload, "feedetail": feedetail}),
                      ErrorCode.SCHEMA_VIOLATION)
        assert msg == said


def test_a_discharge_dated_after_its_request_is_refused() -> None:
    c = Clinic()
    m = c.admit()
    msg = refused(c.do(EMP_CERTNO, "2402", discharge_input(EMP, m, "2026-03-04 10:00:00")),
                  ErrorCode.WRONG_SEQUENCE)
    assert "a discharge is sent once it has happened" in msg
    ok(c.do(EMP_CERTNO, "2402", discharge_input(EMP, m, T)))


def padded_person_info(c: Clinic, size: int) -> bytes:
    """A valid 1101 of exactly `size` bytes (white space after the JSON takes the padding:
    every text field is bounded)."""
    raw = encode(c.request(EMP_CERTNO, "1101", person_info_input(EMP_CERTNO, T)))
    raw += b" " * (size - len(raw))
    assert len(raw) == size
    return raw


def test_a_request_over_the_size_limit_is_refused_e1004_and_one_at_the_limit_is_read(
) -> None:
    """One over the limit is read for its envelope only and refused to its sender, so its
    visit learns of it at once (it was dead-lettered unanswered, and the visit timed out);
    one naming no one to answer, or not JSON, is still a dead letter, E1004 either way."""
    c = Clinic()
    too_big = padded_person_info(c, MAX_REQUEST_BYTES + 1)
    outcome, row = c.oracle.treatment.handle_request(EMP_CERTNO, too_big, None)
    assert isinstance(outcome, Reply) and row is None
    assert outcome.answer["err_code"] == ErrorCode.MESSAGE_TOO_LARGE
    assert outcome.answer["inf_refmsgid"] == decode(too_big)["msgid"]
    assert outcome.answer["err_msg"] == "request of 262,145 bytes is over the limit of 262,144"
    nameless = too_big.replace(b'"fixmedins_code"', b'"fixmedins_cod_"')
    not_json = b"[" + too_big
    for unanswerable in (nameless, not_json):
        outcome, row = c.oracle.treatment.handle_request(EMP_CERTNO, unanswerable, None)
        assert isinstance(outcome, DeadLetter) and row is None
        assert outcome.error_code == ErrorCode.MESSAGE_TOO_LARGE
        assert EMP_CERTNO not in outcome.reason
    at_limit = padded_person_info(c, MAX_REQUEST_BYTES)
    outcome, _ = c.oracle.treatment.handle_request(EMP_CERTNO, at_limit, None)
    assert isinstance(outcome, Forward)  # read, validated and sent on to the insured place
    Request.model_validate_json(at_limit)


def test_no_error_message_carries_the_raw_certno() -> None:
    """Provoke one refusal of each kind the treatment side and the insured place give for a
    known patient, and read every err_msg (DOMAIN.md §7)."""
    c = Clinic()
    m = c.register()
    stay = c.admit()
    bad_key = EMP_CERTNO[:17] + "0"  # wrong check character
    refusals = [
        c.do(EMP_CERTNO, "1101", person_info_input(ENROLLMENTS[RETIRED_CERTNO].certno, T)),
        c.do(bad_key, "1101", person_info_input(bad_key, T)),
        c.do(EMP_CERTNO, "1101", {**person_info_input(EMP_CERTNO, T), "mdtrt_cert_type": "03"}),
        c.settle("110100FFFFFFFFFFFFFFFF", 100),
        c.settle(m, 100),
        c.upload(stay, [("0001", "DA", 1, 100)]),
        c.upload(m, [("0001", "DA", 1, 100), ("0001", "DA", 1, 100)]),
        c.do(EMP_CERTNO, "2204", fee_input(ENROLLMENTS[RETIRED_CERTNO], m, T,
                                           [("0009", "DA", 1, 100)])),
        c.do(EMP_CERTNO, "2208", settle_cancel_input(EMP, "NOSUCH", m)),
        c.do(EMP_CERTNO, "2601", reversal_input(EMP, c.request(EMP_CERTNO, "2205", {})["msgid"],
                                                "2205")),
        c.do(EMP_CERTNO, "2207", settle_input(ENROLLMENTS[RETIRED_CERTNO], m, 100)),
    ]
    ok(c.upload(m, [("0002", "DA", 1, 100)]))
    refusals.append(c.settle(m, 999))
    codes = {a["err_code"] for a in refusals}
    assert codes == {"E1002", "E2001", "E4001", "E4003", "E4010", "E4005", "E2003", "E4008",
                     "E4012", "E4004"}
    for a in c.answers:
        for cert in (EMP_CERTNO, bad_key, RETIRED_CERTNO):
            assert cert not in a["err_msg"]


def test_a_hospital_identifier_holding_a_name_or_an_id_number_is_never_echoed() -> None:
    """A careless HIS may put a name or a citizen ID number where its own identifiers go
    (mdtrt_id, feedetl_sn, chrg_bchno); refusals say what is wrong without them, and a key
    that is not an ID number is not shown at all (DOMAIN.md §7)."""
    c = Clinic()
    m = c.register()
    name_and_id = "张三" + WORKED_CERTNO
    refusals = [
        c.settle(name_and_id, 100),
        c.upload(m, [(name_and_id, "DA", 1, 100)]),
        c.do(EMP_CERTNO, "2205", {**fee_cancel_input(EMP, m), "chrg_bchno": name_and_id}),
        c.settle(WORKED_CERTNO, 100),
        c.do("13800138000", "1101", person_info_input(EMP_CERTNO, T)),
    ]
    ok(c.upload(m, [(WORKED_CERTNO, "DA", 1, 100)]))
    refusals += [c.upload(m, [(WORKED_CERTNO, "DA", 1, 100)]),
                 c.do(EMP_CERTNO, "2205", {**fee_cancel_input(EMP, m),
                                           "chrg_bchno": WORKED_CERTNO})]
    assert [a["err_code"] for a in refusals] == ["E1002", "E1002", "E1002", "E4001", "E2001",
                                                 "E4005", "E4003"]
    for a in refusals:
        for leak in ("张三", WORKED_CERTNO, WORKED_CERTNO[6:14], "13800138000", "0013800"):
            assert leak not in a["err_msg"], a["err_msg"]
    for masked in (refusals[3], refusals[5], refusals[6]):  # shown as DOMAIN.md masks
        assert "310101********" in masked["err_msg"]
    assert "of 11 characters" in refusals[4]["err_msg"]


def test_an_id_number_written_with_separators_in_an_identifier_is_masked_all_the_same() -> None:
    """`110105-19491231-002X` in a batch or settlement id hides the birth date as the
    unbroken number would be hidden (a review found it echoed whole)."""
    c = Clinic()
    m = c.register()
    ok(c.upload(m, [("0001", "DA", 1, 100)]))
    cert = WORKED_CERTNO
    spaced = f"{cert[:6]}-{cert[6:14]}-{cert[14:]}"
    refusals = [c.do(EMP_CERTNO, "2205", fee_cancel_input(EMP, m, spaced)),
                c.do(EMP_CERTNO, "2208", settle_cancel_input(EMP, spaced, m))]
    assert [a["err_code"] for a in refusals] == ["E4003", "E4008"]
    for a in refusals:
        assert cert[6:14] not in a["err_msg"].replace("-", ""), a["err_msg"]
        assert f"{cert[:6]}-********-****" in a["err_msg"]


# -- treatment-side idempotency ------------------------------------------------------------------

def prepared(c: Clinic, infno: str) -> dict[str, Any]:
    """The request for `infno` in a state where it succeeds."""
    if infno == "2201":
        return c.request(EMP_CERTNO, infno, register_input(EMP, T))
    if infno == "2401":
        return c.request(EMP_CERTNO, infno, admit_input(EMP, T))
    if infno in ("2204", "2202", "2205"):
        m = c.register()
        if infno == "2204":
            return c.request(EMP_CERTNO, infno, fee_input(EMP, m, T, [("0001", "DA", 1, 100)]))
        if infno == "2202":
            return c.request(EMP_CERTNO, infno, register_cancel_input(EMP, m))
        ok(c.upload(m, [("0001", "DA", 1, 100)]))
        return c.request(EMP_CERTNO, infno, fee_cancel_input(EMP, m))
    m = c.admit()
    if infno == "2301":
        return c.request(EMP_CERTNO, infno, fee_input(EMP, m, T, [("0001", "DA", 1, 100)],
                                                      med_type="21"))
    assert infno == "2402"
    return c.request(EMP_CERTNO, infno, discharge_input(EMP, m, T))


@pytest.mark.parametrize("infno", ["2201", "2202", "2204", "2205", "2401", "2301", "2402"])
def test_duplicate_treatment_side_request_gets_the_identical_answer_and_changes_nothing(
        infno: str) -> None:
    c = Clinic()
    req = prepared(c, infno)
    first = c.send(EMP_CERTNO, req)
    assert first["infcode"] == 0, first
    before = copy.deepcopy(c.oracle.treatment_rows[EMP_CERTNO].to_dict())
    assert c.send(EMP_CERTNO, req) == first
    assert c.oracle.treatment_rows[EMP_CERTNO].to_dict() == before


def test_duplicate_of_a_refused_upload_gets_the_same_refusal() -> None:
    c = Clinic()
    stay = c.admit()
    req = c.request(EMP_CERTNO, "2204", fee_input(EMP, stay, T, [("0001", "DA", 1, 100)]))
    first = c.send(EMP_CERTNO, req)
    refused(first, ErrorCode.WRONG_SEQUENCE)
    assert c.send(EMP_CERTNO, req) == first


def test_cross_province_visit_goes_through_the_national_platform_and_back() -> None:
    c = Clinic()
    routed: list[str] = []
    route = c.oracle.national.route

    def through_national(certno: str, req: dict[str, Any],
                         ctx: dict[str, Any]) -> ToInsured | BackToTreatment:
        routed.append(req["infno"])
        return route(certno, req, ctx)

    c.oracle.national.route = through_national  # type: ignore[method-assign]
    m = c.register(EMP_CERTNO, HOSP_SH)
    # Shanghai's catalogue: DB is class A there -> 1 × 10,000 all in scope.
    ok(c.upload(m, [("0001", "DB", 1, 10_000)], hospital=HOSP_SH))
    s = ok(c.settle(m, 10_000, hospital=HOSP_SH))["setlinfo"]
    # 310 outpatient level 1: all 10,000 go to the annual deductible (180,000): hifp 0.
    assert (s["inscp_scp_amt"], s["act_pay_dedc"], s["hifp_pay"]) == (10_000, 10_000, 0)
    assert (s["insuplc_admdvs"], s["mdtrtarea_admvs"]) == (EMP.insuplc_admdvs, HOSP_SH.admdvs)
    # the settlement goes to Beijing by way of it; the registration and the fee upload are
    # the treatment side's own (its catalogue classified the fees)
    assert routed == ["2207"]


def test_a_refusal_by_the_national_platform_is_kept_by_msgid_on_the_treatment_side() -> None:
    """The national platform's answer comes back through the treatment side like any other
    (as in the streamed platform), so the treatment side answers a duplicate itself."""
    c = Clinic()
    stranger = certno("11010519491231003")  # a valid ID nobody insured
    req = c.request(EMP_CERTNO, "1101", person_info_input(stranger, T))
    first = c.send(stranger, req)
    refused(first, ErrorCode.UNKNOWN_PERSON)
    assert c.oracle.treatment_rows[stranger].answers == {req["msgid"]: first}
    outcome, row = c.oracle.treatment.handle_request(stranger, encode(req),
                                                     c.oracle.treatment_rows[stranger])
    assert row is None
    assert isinstance(outcome, Reply)
    assert outcome.answer == first


# -- any sequence of well-formed requests --------------------------------------------------------

INFNOS = ("1101", "2201", "2202", "2204", "2205", "2206", "2207", "2208", "2401", "2301", "2402",
          "2303", "2304", "2305", "2601", "5206")


def random_input(c: Clinic, data: st.DataObject, cert: str, infno: str, n: int,
                 sent: list[tuple[str, str]]) -> dict[str, Any]:
    """A well-formed input for `infno`, naming visits, settlements and msgids that exist (or
    not), with the right total (or not)."""
    e = c.ref.enrollments[cert]
    row = c.oracle.treatment_rows.get(cert)
    visits = sorted(row.visits) if row else []
    m = data.draw(st.sampled_from([*visits, "110100NOSUCHVISIT"]))
    setl_ids = sorted({s for r in c.oracle.person_rows.values() for s in r.settlements})
    if infno == "1101":
        return person_info_input(cert, T)
    if infno == "2201":
        return register_input(e, T)
    if infno == "2401":
        return admit_input(e, T)
    if infno == "2202":
        return register_cancel_input(e, m)
    if infno in ("2204", "2301"):
        sn = data.draw(st.sampled_from([f"{n:04d}", "0001"]))
        item = (sn, data.draw(st.sampled_from(["DA", "DB", "SV", "CC", "UNLISTED"])),
                data.draw(st.integers(1, 3)), data.draw(st.integers(1, 600_000)))
        return fee_input(e, m, T, [item], med_type="21" if infno == "2301" else "11")
    if infno == "2205":
        return fee_cancel_input(e, m, data.draw(st.sampled_from(["0000", "1"])))
    if infno == "2402":
        return discharge_input(e, m, T)
    if infno in ("2206", "2207", "2303", "2304"):
        fees = row.visits[m]["fees"].values() if row and m in row.visits else []
        total = sum(f["amount"] for f in fees) + data.draw(st.sampled_from([0, 0, 0, 1]))
        return settle_input(e, m, total, data.draw(st.sampled_from(["0", "1"])),
                            "21" if infno in ("2303", "2304") else "11")
    if infno in ("2208", "2305"):
        return settle_cancel_input(e, data.draw(st.sampled_from([*setl_ids, "NOSUCH"])), m)
    if infno == "2601":
        if len(sent) > 0 and data.draw(st.booleans()):
            omsgid, oinfno = data.draw(st.sampled_from(sent))
        else:  # a msgid still to come (the next requests), or never
            omsgid = make_msgid(HOSP_BJ.fixmedins_code, T, c.seq + data.draw(st.integers(1, 3)))
            oinfno = data.draw(st.sampled_from(INFNOS))
        oinfno = data.draw(st.sampled_from([oinfno, oinfno, *INFNOS]))  # or the wrong one
        return reversal_input(e, omsgid, oinfno)
    return accumulators_input(e, data.draw(st.sampled_from(["202603", "202512"])))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_sequence_of_well_formed_requests_is_answered_consistently(
        data: st.DataObject) -> None:
    """Whatever order hospitals send well-formed requests in, the platform answers each one
    (never raises), with an answer that matches its output model; a duplicate gets the same
    answer; and the insured rows hold exactly the settlements still in force. Half the
    sequences begin with a visit settled, and most requests come from one hospital: drawn
    at random alone, registration, fees and settlement never lined up, and the money checks
    compared nothing with nothing (a test-suite audit)."""
    c = Clinic()
    cert = data.draw(st.sampled_from([EMP_CERTNO, RETIRED_CERTNO, WORKED_CERTNO]))
    sent: list[tuple[str, str]] = []
    settled_ok = 0  # settlements (2207/2304) answered OK
    usual = data.draw(st.sampled_from([HOSP_BJ, HOSP_SH]))
    if settled_first := data.draw(st.booleans()):
        e = c.ref.enrollments[cert]
        mdtrt_id = c.send(cert, c.request(cert, "2201", register_input(e, T), usual)
                          )["output"]["data"]["mdtrt_id"]
        fees = c.send(cert, c.request(cert, "2204", fee_input(
            e, mdtrt_id, T, [("0001", "DA", 2, 30_000)]), usual))["output"]["result"]
        settled = c.send(cert, c.request(cert, "2207", settle_input(
            e, mdtrt_id, sum(f["det_item_fee_sumamt"] for f in fees)), usual))
        assert settled["infcode"] == 0, settled
        settled_ok += 1
    for n in range(data.draw(st.integers(1, 30))):
        infno = data.draw(st.sampled_from((*INFNOS, "2601", "2601")))  # 2601 more often
        hospital = data.draw(st.sampled_from([usual] * 4 + [HOSP_BJ, HOSP_SH]))
        req = c.request(cert, infno, random_input(c, data, cert, infno, n, sent), hospital)
        answer = c.send(cert, req)
        Answer.model_validate(answer)
        if answer["infcode"] == 0:
            OUTPUT_MODELS[infno].model_validate(answer["output"])
            settled_ok += infno in ("2207", "2304")
        else:
            assert answer["err_code"] in set(ErrorCode)
        if data.draw(st.integers(0, 9)) == 0:
            assert c.send(cert, req) == answer
        sent.append((req["msgid"], infno))
    row = c.oracle.person_rows.get(cert)
    if row is None:
        # only a person who never settled may have no row; the money checks need one
        assert settled_ok == 0 and not settled_first
        return
    e = c.ref.enrollments[cert]
    fund: dict[tuple[str, str], int] = defaultdict(int)
    acct = 0
    for setl in row.settlements.values():
        if setl["status"] == "settled":
            fund[setl["setl_time"][:4], f"fund_{setl['clr_type']}"] += setl["hifp_pay"]
            if setl["clr_type"] == "11":
                fund[setl["setl_time"][:4], "dedc_11"] += setl["act_pay_dedc"]
            acct += setl["acct_pay"]
    names = {(y, n) for y, acc in row.ytd.items() for n in acc} | set(fund)
    for year, name in names:
        assert row.accumulator(year, name) == fund.get((year, name), 0), (year, name)
    assert row.balance == e.balance - acct >= 0
    # The treatment side's settled visits are the settlements in force.
    visits = c.oracle.treatment_rows[cert].visits
    in_force = {s for s, setl in row.settlements.items() if setl["status"] == "settled"}
    assert {v["setl_id"] for v in visits.values() if v["setl_id"]} == in_force


# -- the operating window (settlement/retention.py): what the treatment side forgets ---------------

def test_an_open_stay_older_than_the_window_survives_pruning_and_is_discharged_and_settled(
        ) -> None:
    c = Clinic()
    admitted = sent_at(c, DAY0, "2401", admit_input(EMP, DAY0))
    m = ok(admitted)["data"]["mdtrt_id"]
    ok(sent_at(c, DAY0, "2301", fee_input(EMP, m, DAY0, [("0001", "SV", 1, 400_000)],
                                          med_type="21")))
    # ten days on: a request moves the hospital's clock and the row is pruned to the window
    later = "2026-03-11 09:00:00"
    ok(sent_at(c, later, "1101", person_info_input(EMP_CERTNO, later), EMP_CERTNO))
    row = c.oracle.treatment_rows[EMP_CERTNO]
    assert admitted["inf_refmsgid"] not in row.answers  # pruning did run: day 0 is forgotten
    assert row.visits[m]["status"] == "open"  # … but the open stay was kept
    assert ok(sent_at(c, later, "2402", discharge_input(EMP, m, later))) == {
        "mdtrt_id": m, "status": "discharged"}
    s = ok(sent_at(c, later, "2304", settle_input(EMP, m, 400_000, "1", "21")))["setlinfo"]
    assert s["medfee_sumamt"] == 400_000 and s["hifp_pay"] > 0
    assert c.oracle.person_rows[EMP_CERTNO].settlements[s["setl_id"]]["status"] == "settled"
    assert c.oracle.treatment_rows[EMP_CERTNO].visits[m]["setl_id"] == s["setl_id"]


def test_a_settlement_dated_a_day_before_its_fees_is_refused_so_it_can_always_be_cancelled(
        ) -> None:
    """The treatment side forgets a visit by its latest change, the insured side a
    settlement by its own time: a 2207 dated days before the fees it settled was forgotten
    by the insured side first, and a week on its 2208 passed the treatment side and was
    refused there (E4008), the fund's payment beyond undoing (a review). It is refused now
    (E4010); one dated earlier the same day settles, and is cancelled a week on."""
    c = Clinic()
    day5 = "2026-03-05 10:00:00"
    m = ok(sent_at(c, "2026-03-05 09:00:00", "2201", register_input(EMP, "2026-03-05 09:00:00"))
           )["data"]["mdtrt_id"]
    ok(sent_at(c, day5, "2204", fee_input(EMP, m, day5, [("0001", "DA", 1, 250_000)])))
    refused(sent_at(c, "2026-03-04 11:00:00", "2207", settle_input(EMP, m, 250_000)),
            ErrorCode.WRONG_SEQUENCE)
    s = ok(sent_at(c, "2026-03-05 08:00:00", "2207", settle_input(EMP, m, 250_000)))["setlinfo"]
    week_on = "2026-03-11 09:00:00"
    ok(sent_at(c, week_on, "1101", person_info_input(EMP_CERTNO, week_on)))
    ok(sent_at(c, week_on, "2208", settle_cancel_input(EMP, s["setl_id"], m)))
    row = c.oracle.person_rows[EMP_CERTNO]
    assert (row.balance, row.ytd) == (EMP.balance, {})  # as if it had never settled


def test_a_settled_visit_past_the_window_is_forgotten_so_its_cancellation_is_refused() -> None:
    c = Clinic()
    settled = []
    for n in (1, 2):  # two outpatient visits, both settled on day 0
        m = ok(sent_at(c, DAY0, "2201", register_input(EMP, DAY0, n)))["data"]["mdtrt_id"]
        ok(sent_at(c, DAY0, "2204", fee_input(EMP, m, DAY0, [(f"000{n}", "DA", 2, 10_000)])))
        s = ok(sent_at(c, DAY0, "2207", settle_input(EMP, m, 20_000)))["setlinfo"]
        settled.append((m, s["setl_id"]))
    (m1, setl1), (m2, setl2) = settled
    # day 7, within the window: the first is still known, and cancelled
    day7 = "2026-03-08 08:00:00"
    ok(sent_at(c, day7, "2208", settle_cancel_input(EMP, setl1, m1)))
    # day 9, past it: the second visit is forgotten, so its cancellation is refused …
    day9 = "2026-03-10 09:00:00"
    refusal = refused(sent_at(c, day9, "2208", settle_cancel_input(EMP, setl2, m2)),
                      ErrorCode.UNKNOWN_VISIT)
    assert m2 in refusal
    # … and nothing is undone: the insured side still holds it in force
    settlements = c.oracle.person_rows[EMP_CERTNO].settlements
    assert (settlements[setl1]["status"], settlements[setl2]["status"]) == ("cancelled", "settled")


def test_a_late_original_reversed_in_advance_is_refused_at_the_edge_of_the_window() -> None:
    """The treatment side keeps each hospital's clock for a person by the day, so it lets
    through requests up to a day more than a week old; the insured side must still hold
    their reversals then, or a late original would settle after its 2601 had said it never
    would."""
    c = Clinic()
    m = ok(sent_at(c, DAY0, "2201", register_input(EMP, DAY0)))["data"]["mdtrt_id"]
    ok(sent_at(c, DAY0, "2204", fee_input(EMP, m, DAY0, [("0001", "DA", 1, 300_000)])))
    c.seq += 1
    late = request("2207", HOSP_BJ, "2026-03-01 09:05:00", c.seq, settle_input(EMP, m, 300_000),
                   EMP.insuplc_admdvs)
    assert ok(sent_at(c, "2026-03-01 09:06:00", "2601", reversal_input(
        EMP, late["msgid"], "2207")))["result"] == "reversed-in-advance"
    # a week and a second after the original, the person's next request
    ok(sent_at(c, "2026-03-08 09:05:01", "5206", accumulators_input(EMP, "202603")))
    refused(c.send(EMP_CERTNO, late), ErrorCode.REVERSED)
    assert c.oracle.person_rows[EMP_CERTNO].settlements == {}


def test_a_2601_of_a_settlement_the_person_row_has_forgotten_is_refused_and_it_stands(
        ) -> None:
    """A 2601 within a week of what it names, sent after a later request has moved the
    hospital's clock past that: the rows no longer hold the original, and taking the 2601 for
    a reversal in advance would tell the hospital nothing was settled while the money stays
    moved. It is refused (E4012) and the settlement stands."""
    c = Clinic()
    m = ok(sent_at(c, DAY0, "2201", register_input(EMP, DAY0)))["data"]["mdtrt_id"]
    ok(sent_at(c, DAY0, "2204", fee_input(EMP, m, DAY0, [("0001", "DA", 1, 250_000)])))
    settle = sent_at(c, DAY0, "2207", settle_input(EMP, m, 250_000))
    setl = ok(settle)["setlinfo"]
    ok(sent_at(c, "2026-03-09 10:00:00", "5206", accumulators_input(EMP, "202603")))
    person = c.oracle.person_rows[EMP_CERTNO]
    before = (person.balance, person.ytd)
    refusal = refused(sent_at(c, "2026-03-07 10:00:00", "2601", reversal_input(
        EMP, settle["inf_refmsgid"], "2207")), ErrorCode.NOT_REVERSIBLE)
    assert "no longer be found" in refusal
    person = c.oracle.person_rows[EMP_CERTNO]
    assert (person.balance, person.ytd) == before  # the money stays where it went
    assert set(c.oracle.money_events) == {(setl["setl_id"], "settle")}  # nothing undone
    assert not person.reversed and not c.oracle.treatment_rows[EMP_CERTNO].reversed


def test_a_2601_of_a_fee_upload_the_person_row_has_forgotten_is_refused_and_the_fee_stays(
        ) -> None:
    c = Clinic()
    m = ok(sent_at(c, DAY0, "2401", admit_input(EMP, DAY0)))["data"]["mdtrt_id"]
    upload = sent_at(c, DAY0, "2301", fee_input(EMP, m, DAY0, [("0001", "SV", 1, 400_000)],
                                                med_type="21"))
    ok(upload)
    ok(sent_at(c, "2026-03-09 10:00:00", "5206", accumulators_input(EMP, "202603")))
    refused(sent_at(c, "2026-03-07 10:00:00", "2601", reversal_input(
        EMP, upload["inf_refmsgid"], "2301")), ErrorCode.NOT_REVERSIBLE)
    assert c.fees(m) == {"0001"}  # still on the stay, to be settled


def test_a_2601_within_the_window_of_the_persons_latest_request_still_undoes(
        ) -> None:
    """The edge: the hospital's clock moved to a day whose window still holds the original."""
    c = Clinic()
    m = ok(sent_at(c, DAY0, "2201", register_input(EMP, DAY0)))["data"]["mdtrt_id"]
    ok(sent_at(c, DAY0, "2204", fee_input(EMP, m, DAY0, [("0001", "DA", 1, 250_000)])))
    settle = sent_at(c, DAY0, "2207", settle_input(EMP, m, 250_000))
    ok(sent_at(c, "2026-03-08 10:00:00", "5206", accumulators_input(EMP, "202603")))
    assert ok(sent_at(c, "2026-03-07 10:00:00", "2601", reversal_input(
        EMP, settle["inf_refmsgid"], "2207")))["result"] == "undone"
    assert c.oracle.person_rows[EMP_CERTNO].balance == EMP.balance


def test_a_hospital_whose_clock_is_days_ahead_makes_no_other_hospitals_requests_stale(
        ) -> None:
    """Each hospital is judged by its own clock (settlement/retention.py). Another hospital,
    its clock ten days ahead, is answered for the same person; the first still gets the
    original answer to its settlement sent again (its answer lost, say), and can still cancel
    it, the money coming back exactly: no patient pays both the fund's share and in cash.
    Only that hospital's own requests from before its clock's window are replays."""
    c = Clinic()
    m = ok(sent_at(c, DAY0, "2201", register_input(EMP, DAY0)))["data"]["mdtrt_id"]
    ok(sent_at(c, DAY0, "2204", fee_input(EMP, m, DAY0, [("0001", "DA", 1, 250_000)])))
    c.seq += 1
    settle = request("2207", HOSP_BJ, DAY0, c.seq, settle_input(EMP, m, 250_000),
                     EMP.insuplc_admdvs)
    settled = ok(c.send(EMP_CERTNO, settle))["setlinfo"]
    assert c.oracle.person_rows[EMP_CERTNO].balance < EMP.balance
    ahead = "2026-03-11 10:00:00"
    c.seq += 1
    ok(c.send(EMP_CERTNO, request("1101", HOSP_SH, ahead, c.seq,
                                  person_info_input(EMP_CERTNO, ahead), "")))
    assert ok(c.send(EMP_CERTNO, settle))["setlinfo"] == settled  # the original answer
    cancelled = ok(sent_at(c, "2026-03-01 11:00:00", "2208",
                           settle_cancel_input(EMP, settled["setl_id"], m)))["setlinfo"]
    assert cancelled["hifp_pay"] == -settled["hifp_pay"]
    assert c.oracle.person_rows[EMP_CERTNO].balance == EMP.balance
    c.seq += 1
    own_replay = request("1101", HOSP_SH, DAY0, c.seq, person_info_input(EMP_CERTNO, DAY0), "")
    stale = refused(c.send(EMP_CERTNO, own_replay), ErrorCode.STALE)
    # the day it is judged by is named: a request dated ahead by mistake moved it
    assert "latest request for this person (of 2026-03-11)" in stale, stale


def test_a_long_stay_settled_yesterday_can_be_cancelled_whenever_it_began() -> None:
    """The window runs from a visit's last change, not from its admission: a ten-day stay
    settled on its last day is still there to cancel the next day."""
    c = Clinic()
    m = ok(sent_at(c, DAY0, "2401", admit_input(EMP, DAY0)))["data"]["mdtrt_id"]
    ok(sent_at(c, DAY0, "2301", fee_input(EMP, m, DAY0, [("0001", "SV", 1, 400_000)],
                                          med_type="21")))
    out = "2026-03-11 09:00:00"
    ok(sent_at(c, out, "2402", discharge_input(EMP, m, out)))
    s = ok(sent_at(c, out, "2304", settle_input(EMP, m, 400_000, "1", "21")))["setlinfo"]
    next_day = "2026-03-12 10:00:00"
    undone = ok(sent_at(c, next_day, "2305", settle_cancel_input(EMP, s["setl_id"], m)))
    assert undone["setlinfo"]["hifp_pay"] == -s["hifp_pay"] < 0


def test_an_abandoned_registration_is_forgotten_a_window_after_its_last_change() -> None:
    """Only a patient still in hospital keeps a visit past the window without activity: an
    outpatient registration never settled (or whose settlement was cancelled) goes."""
    c = Clinic()
    m = ok(sent_at(c, DAY0, "2201", register_input(EMP, DAY0)))["data"]["mdtrt_id"]
    stay = ok(sent_at(c, DAY0, "2401", admit_input(EMP, DAY0, 2)))["data"]["mdtrt_id"]
    day6 = "2026-03-07 09:00:00"  # fees on day 6 keep the visit another window
    ok(sent_at(c, day6, "2204", fee_input(EMP, m, day6, [("0001", "DA", 1, 500)])))
    day12 = "2026-03-13 09:00:00"
    ok(sent_at(c, day12, "1101", person_info_input(EMP_CERTNO, day12)))
    assert set(c.oracle.treatment_rows[EMP_CERTNO].visits) == {m, stay}
    day14 = "2026-03-15 09:00:00"
    ok(sent_at(c, day14, "1101", person_info_input(EMP_CERTNO, day14)))
    assert set(c.oracle.treatment_rows[EMP_CERTNO].visits) == {stay}  # still in hospital
    refused(sent_at(c, day14, "2207", settle_input(EMP, m, 500)), ErrorCode.UNKNOWN_VISIT)


def test_every_insured_side_answer_holds_what_the_treatment_side_tells_them_by() -> None:
    """A 2601 naming an insured-side transaction is refused at the treatment side when the
    answer it holds for that msgid has none of INSURED_ANSWERS' keys: every OK answer the
    insured side gives, but a 2601's own, must carry one (the whole protocol mix here)."""
    from settlement.treatment import INSURED_ANSWERS
    from simulators.visits import VisitSpec, generate_visits
    from simulators.world import WorldSpec, build_world

    world = build_world(WorldSpec(seed=17, persons=300))
    oracle = Oracle(world.ref)
    for _ in oracle.settle_log(generate_visits(world, VisitSpec(visits=300, ehr=False))):
        pass
    outputs = [a["output"] for row in oracle.person_rows.values()
               for a in row.answers.values() if a["infcode"] == 0]
    kinds = {next(iter(INSURED_ANSWERS & set(o)), "omsgid" if "omsgid" in o else "none")
             for o in outputs}
    assert "none" not in kinds
    assert {"setlinfo", "baseinfo", "omsgid"} <= kinds  # 2601s on the insured side too
