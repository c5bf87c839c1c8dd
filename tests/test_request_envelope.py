"""The platform's checks of a request's envelope and of what it forwards (DOMAIN.md §2): a
msgid is the sender's own and carries the request's time, dates are real ones, and the roles
after the treatment side read the input as validated. Through settlement.oracle.Oracle, as in
tests/test_protocol_treatment.py."""

from __future__ import annotations

import pytest

from messages.codec import encode
from messages.codes import ErrorCode
from messages.signing import Signer
from messages.visitlog import make_msgid
from settlement.treatment import DeadLetter, Reply, TreatmentPlatform
from tests.clinic import EMP, Clinic, T
from tests.handmade import (
    EMP_CERTNO,
    HOSP_BJ,
    HOSP_SH,
    RETIRED_CERTNO,
    fee_input,
    ok,
    person_info_input,
    refused,
    register_input,
    request,
    settle_input,
)


def test_a_msgid_beginning_with_another_senders_code_is_refused():
    c = Clinic()
    req = c.request(EMP_CERTNO, "1101", person_info_input(EMP_CERTNO, T))
    req["msgid"] = make_msgid(HOSP_SH.fixmedins_code, T, 1)  # HOSP_BJ sends it
    assert "fixmedins_code" in refused(c.send(EMP_CERTNO, req), ErrorCode.SCHEMA_VIOLATION)


def test_a_msgid_stamped_with_another_time_than_inf_time_is_refused():
    """Answers are forgotten by their msgid's time: one stamped 19 days early would lose its
    answer at once, and its duplicate would not get it back."""
    c = Clinic()
    req = c.request(EMP_CERTNO, "1101", person_info_input(EMP_CERTNO, T))
    req["msgid"] = make_msgid(HOSP_BJ.fixmedins_code, "2026-02-10 09:00:00", 1)
    assert "inf_time" in refused(c.send(EMP_CERTNO, req), ErrorCode.SCHEMA_VIOLATION)


def test_impossible_dates_are_answered_as_schema_violations_not_dead_lettered():
    """Answered to the msgid, whose own time is a real one (a msgid that is not is
    dead-lettered: `test_a_msgid_that_is_no_msgid_is_dead_lettered_not_echoed`)."""
    c = Clinic()
    for bad in ("2026-02-30 09:00:00", "2026-13-01 09:00:00", "0000-01-01 09:00:00"):
        req = request("1101", HOSP_BJ, bad, 7, person_info_input(EMP_CERTNO, bad))
        req["msgid"] = make_msgid(HOSP_BJ.fixmedins_code, T, 7)
        err = refused(c.send(EMP_CERTNO, req), ErrorCode.SCHEMA_VIOLATION)
        assert "not a real date" in err and bad not in err
    for far in ("0001-01-01 00:00:00", "9999-12-31 23:00:00"):  # once an internal error
        req = request("1101", HOSP_BJ, far, 7, person_info_input(EMP_CERTNO, far))
        req["msgid"] = make_msgid(HOSP_BJ.fixmedins_code, T, 8)
        err = refused(c.send(EMP_CERTNO, req), ErrorCode.SCHEMA_VIOLATION)
        assert "not a date and time in the years 1900–2999" in err and far not in err
    inp = {**register_input(EMP, T), "begntime": "2026-04-31 08:00:00"}
    err = refused(c.do(EMP_CERTNO, "2201", inp), ErrorCode.SCHEMA_VIOLATION)
    assert "input.begntime" in err


@pytest.mark.parametrize("msgid", [
    "11010519491231002X",  # a citizen ID number
    HOSP_BJ.fixmedins_code + "11010519491231002" + "9",  # one inside the msgid's digits
    HOSP_BJ.fixmedins_code + "110105194912310021",  # ... whose check character is wrong
    "张三丰",  # a name
    HOSP_BJ.fixmedins_code + "20260230090000" + "0007",  # a time that is none
])
def test_a_msgid_that_is_no_msgid_is_dead_lettered_not_echoed(msgid: str):
    """An answer echoes its request's msgid (`inf_refmsgid`) onto the shared answer topic:
    one of another shape, with no real time in it, or in which a citizen ID number can be
    read is dead-lettered (E1002) instead, as is an unsigned one."""
    c = Clinic()
    req = c.request(EMP_CERTNO, "1101", person_info_input(EMP_CERTNO, T))
    req["msgid"] = msgid
    assert c.oracle.submit(EMP_CERTNO, req) is None
    outcome = c.oracle.treatment.authenticate(
        Signer(b"k" * 32), {}, None, encode(req))
    # unsigned: refused so (E6001), not answered but dead-lettered, the msgid not said
    assert isinstance(outcome, DeadLetter) and outcome.error_code == ErrorCode.UNSIGNED
    assert msgid not in outcome.reason


def test_a_name_sent_as_the_infno_is_not_echoed_in_the_answers_context():
    req = request("1101", HOSP_BJ, T, 9, person_info_input(EMP_CERTNO, T))
    req["infno"] = "张三丰"
    outcome, _ = TreatmentPlatform(Clinic().ref).handle_request(EMP_CERTNO, encode(req), None)
    assert isinstance(outcome, Reply) and outcome.ctx["infno"] == ""
    assert outcome.answer["err_code"] == ErrorCode.SCHEMA_VIOLATION.value


def _settled(c: Clinic, cert: str, settle_seq: int) -> dict:
    """A visit of `cert` at HOSP_BJ settled by a 2207 whose msgid has sequence `settle_seq`."""
    e = c.ref.enrollments[cert]
    mdtrt_id = c.register(cert)
    ok(c.do(cert, "2204", fee_input(e, mdtrt_id, T, [("1", "DA", 5, 100_000)])))
    req = request("2207", HOSP_BJ, T, settle_seq, settle_input(e, mdtrt_id, 500_000),
                  e.insuplc_admdvs)
    return ok(c.send(cert, req))["setlinfo"]


def test_one_msgid_wrongly_used_for_two_persons_gives_two_settlements():
    """Clearing and the ledger keep one event per setl_id: two persons' settlements must
    never share one, even when a hospital reuses a msgid (the DOMAIN says it is unique)."""
    c = Clinic()
    first, second = _settled(c, EMP_CERTNO, 9_000), _settled(c, RETIRED_CERTNO, 9_000)
    assert first["setl_id"] != second["setl_id"]
    assert first["psn_no"] != second["psn_no"] and first["hifp_pay"] > 0
    settled = {e.setl_id for e in c.oracle.money_events.values()}
    assert {first["setl_id"], second["setl_id"]} <= settled


def test_a_settlement_without_med_type_is_settled_as_an_ordinary_outpatient_visit():
    """The input is forwarded as validated, its defaults filled in: the insured place never
    sees a request the treatment place did not check."""
    c = Clinic()
    mdtrt_id = c.register()
    ok(c.do(EMP_CERTNO, "2204", fee_input(EMP, mdtrt_id, T, [("1", "DA", 1, 5_000)])))
    inp = settle_input(EMP, mdtrt_id, 5_000)
    del inp["med_type"]
    setl = ok(c.do(EMP_CERTNO, "2207", inp))["setlinfo"]
    assert setl["med_type"] == "11" and setl["medfee_sumamt"] == 5_000


def test_reconciliation_amounts_that_are_not_whole_fen_are_refused():
    c = Clinic()
    totals = {"stmt_begndate": "2026-03-01", "stmt_enddate": "2026-03-01",
              "medfee_sumamt": 0, "fund_pay_sumamt": 0, "acct_pay": 0, "fixmedins_setl_cnt": 0}
    code = HOSP_BJ.fixmedins_code
    assert ok(c.oracle.submit(code, request("3201", HOSP_BJ, T, 1, totals)))
    for seq, bad in enumerate(({"medfee_sumamt": "34"}, {"acct_pay": 12.0},
                               {"fixmedins_setl_cnt": True}), start=2):
        answer = c.oracle.submit(code, request("3201", HOSP_BJ, T, seq, {**totals, **bad}))
        assert next(iter(bad)) in refused(answer, ErrorCode.SCHEMA_VIOLATION)


def test_a_reconciliations_net_total_below_its_limit_is_e4007_not_a_non_positive_amount():
    """A period's net totals may be negative (cancellations outweighing settlements): past
    their lower limit they are out of range (E4007, as past the top), where an amount of one
    settlement under 0 is not positive (E4006). A review found them E4006, said as "under
    -1,000,000,000,000,000 fen"."""
    c = Clinic()
    totals = {"stmt_begndate": "2026-03-01", "stmt_enddate": "2026-03-01",
              "medfee_sumamt": -5, "fund_pay_sumamt": 0, "acct_pay": 0, "fixmedins_setl_cnt": -1}
    code = HOSP_BJ.fixmedins_code
    answer = c.oracle.submit(code, request("3201", HOSP_BJ, T, 1, totals))
    assert answer["err_code"] != ErrorCode.INVALID_AMOUNT, answer  # negative: taken as such
    for seq, (field, value, said) in enumerate((
            ("medfee_sumamt", -10**15 - 1, "below its limit: -1,000,000,000,000,000 fen"),
            ("fixmedins_setl_cnt", -10**11 - 1, "below its limit: -100,000,000,000"),
            ("acct_pay", -1e20, "below its limit (below a 64-bit integer")), start=2):
        answer = c.oracle.submit(code, request("3201", HOSP_BJ, T, seq, {**totals, field: value}))
        assert refused(answer, ErrorCode.AMOUNT_OVERFLOW).startswith(f"input.{field}: {said}")
    mdtrt_id = c.register()
    ok(c.do(EMP_CERTNO, "2204", fee_input(EMP, mdtrt_id, T, [("1", "DA", 1, 5_000)])))
    # -1e20: what orjson reads -100000000000000000000 as
    answer = c.do(EMP_CERTNO, "2207", {**settle_input(EMP, mdtrt_id, 5_000),
                                       "medfee_sumamt": -1e20})
    assert refused(answer, ErrorCode.INVALID_AMOUNT).startswith(
        "input.medfee_sumamt: not a positive amount (below a 64-bit integer")


def test_a_certificate_number_must_be_the_patients_valid_citizen_id():
    """DOMAIN.md §1: an ID that fails the check character is rejected, for a certificate
    (02, 03) as for the message key; a valid one of someone else is not the patient's."""
    c = Clinic()
    bad_check = EMP_CERTNO[:17] + ("1" if EMP_CERTNO[17] != "1" else "2")
    for cert_no, code in ((bad_check, ErrorCode.INVALID_CERTNO),
                          (RETIRED_CERTNO, ErrorCode.PERSON_MISMATCH)):
        for infno, inp in (("1101", person_info_input(EMP_CERTNO, T)),
                           ("2201", register_input(EMP, T))):
            err = refused(c.do(EMP_CERTNO, infno, {**inp, "mdtrt_cert_no": cert_no}), code)
            assert cert_no not in err
    voucher = {**person_info_input(EMP_CERTNO, T), "mdtrt_cert_type": "01", "mdtrt_cert_no": "QR-1"}
    assert ok(c.do(EMP_CERTNO, "1101", voucher))  # an electronic voucher is a token


def test_a_social_security_card_comes_with_its_serial():
    c = Clinic()
    card = {**person_info_input(EMP_CERTNO, T), "mdtrt_cert_type": "03"}
    assert "card_sn" in refused(c.do(EMP_CERTNO, "1101", card), ErrorCode.SCHEMA_VIOLATION)
    assert ok(c.do(EMP_CERTNO, "1101", {**card, "card_sn": "A1234567"}))


def test_a_reconciliation_period_of_days_that_do_not_exist_is_refused():
    c = Clinic()
    totals = {"stmt_begndate": "2026-02-30", "stmt_enddate": "2026-13-01", "medfee_sumamt": 0,
              "fund_pay_sumamt": 0, "acct_pay": 0, "fixmedins_setl_cnt": 0}
    answer = c.oracle.submit(HOSP_BJ.fixmedins_code, request("3201", HOSP_BJ, T, 1, totals))
    err = refused(answer, ErrorCode.SCHEMA_VIOLATION)
    assert "input.stmt_begndate" in err and "input.stmt_enddate" in err


def test_a_statement_period_that_ends_before_it_begins_is_refused():
    from pydantic import ValidationError

    from messages.transactions import ReconcileDetailsInput, ReconcileTotalsInput

    totals = {"stmt_begndate": "2026-12-05", "stmt_enddate": "2026-12-01", "medfee_sumamt": 0,
              "fund_pay_sumamt": 0, "acct_pay": 0, "fixmedins_setl_cnt": 0}
    with pytest.raises(ValidationError, match="stmt_enddate is before stmt_begndate"):
        ReconcileTotalsInput.model_validate(totals)
    with pytest.raises(ValidationError, match="stmt_enddate is before stmt_begndate"):
        ReconcileDetailsInput.model_validate({"stmt_begndate": "2026-12-05",
                                              "stmt_enddate": "2026-12-04", "setl_ids": []})
    same_day = ReconcileTotalsInput.model_validate({**totals, "stmt_enddate": "2026-12-05"})
    assert same_day.stmt_begndate == same_day.stmt_enddate


def test_digits_of_other_scripts_are_not_digits_here():
    """pydantic's regex takes any script's digits for `\\d`; the envelope takes ASCII only."""
    from pydantic import ValidationError

    from messages.envelope import Request

    arabic_indic = "٢٢٠٧"  # 2207
    good = {"infno": "2207", "msgid": "H11010100001" + "20261201090000" + "0007",
            "mdtrtarea_admvs": "110101", "insuplc_admdvs": "", "fixmedins_code": "H11010100001",
            "inf_time": "2026-12-01 09:00:00", "input": {}}
    assert Request.model_validate(good).infno == "2207"
    for field, value in (("infno", arabic_indic), ("mdtrtarea_admvs", "١١٠١٠١"),
                         ("msgid", good["msgid"][:-4] + "٠٠٠٧")):
        with pytest.raises(ValidationError):
            Request.model_validate({**good, field: value})
