"""2601 of a registration's cancellation (2202) and of a discharge (2402), DOMAIN.md §4: the
visit is reopened as if the closing never came, in either order; a settled stay is not."""

from __future__ import annotations

from messages.codes import ErrorCode
from tests.clinic import EMP, Clinic, T
from tests.handmade import (
    EMP_CERTNO,
    HOSP_SH,
    discharge_input,
    ok,
    refused,
    register_cancel_input,
    register_input,
    reversal_input,
    settle_input,
)


def status(c: Clinic, mdtrt_id: str) -> str:
    return c.oracle.treatment_rows[EMP_CERTNO].visits[mdtrt_id]["status"]


def test_reversing_a_registrations_cancellation_reopens_the_visit_for_fees_and_settlement():
    c = Clinic()
    m = c.register()
    cancel = c.request(EMP_CERTNO, "2202", register_cancel_input(EMP, m))
    ok(c.send(EMP_CERTNO, cancel))
    refused(c.upload(m, [("0001", "DA", 1, 500)]), ErrorCode.WRONG_SEQUENCE)
    assert ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, cancel["msgid"], "2202")))[
        "result"] == "undone"
    assert status(c, m) == "open"
    ok(c.upload(m, [("0001", "DA", 1, 500)]))
    assert ok(c.settle(m, 500))["setlinfo"]["medfee_sumamt"] == 500


def test_a_cancellation_reversed_before_it_arrives_is_refused_and_the_visit_stays_open():
    c = Clinic()
    m = c.register()
    cancel = c.request(EMP_CERTNO, "2202", register_cancel_input(EMP, m))
    assert ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, cancel["msgid"], "2202")))[
        "result"] == "reversed-in-advance"
    refused(c.send(EMP_CERTNO, cancel), ErrorCode.REVERSED)
    assert status(c, m) == "open"  # the same end as reversing it after


def discharged(c: Clinic) -> tuple[str, dict]:
    """A stay with 2,000 fen of fees, discharged: its mdtrt_id and the 2402 request."""
    m = c.admit()
    ok(c.upload(m, [("0001", "DA", 2, 1_000)], infno="2301"))
    discharge = c.request(EMP_CERTNO, "2402", discharge_input(EMP, m, T))
    ok(c.send(EMP_CERTNO, discharge))
    return m, discharge


def test_reversing_a_discharge_reopens_the_stay_until_it_is_discharged_again():
    c = Clinic()
    m, discharge = discharged(c)
    assert ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, discharge["msgid"], "2402")))[
        "result"] == "undone"
    assert status(c, m) == "open"
    assert "endtime" not in c.oracle.treatment_rows[EMP_CERTNO].visits[m]
    refused(c.settle(m, 2_000, infno="2304"), ErrorCode.WRONG_SEQUENCE)  # in hospital again
    ok(c.upload(m, [("0002", "DA", 1, 1_000)], infno="2301", chrg_bchno="2"))
    ok(c.do(EMP_CERTNO, "2402", discharge_input(EMP, m, T)))
    assert ok(c.settle(m, 3_000, infno="2304"))["setlinfo"]["medfee_sumamt"] == 3_000


def test_a_discharge_of_a_settled_stay_is_not_reversed():
    c = Clinic()
    m, discharge = discharged(c)
    ok(c.settle(m, 2_000, infno="2304"))
    refused(c.do(EMP_CERTNO, "2601", reversal_input(EMP, discharge["msgid"], "2402")),
            ErrorCode.VISIT_ALREADY_SETTLED)
    assert status(c, m) == "discharged"


def test_a_reversal_naming_the_wrong_closing_for_its_msgid_is_refused():
    c = Clinic()
    m = c.register()
    cancel = c.request(EMP_CERTNO, "2202", register_cancel_input(EMP, m))
    ok(c.send(EMP_CERTNO, cancel))
    refused(c.do(EMP_CERTNO, "2601", reversal_input(EMP, cancel["msgid"], "2402")),
            ErrorCode.NOT_REVERSIBLE)
    assert status(c, m) == "cancelled"


def test_a_second_reversal_of_a_closing_already_reversed_leaves_the_next_closing_alone():
    """2402 X, 2601(X) reopens, 2402 Y discharges again: another 2601(X) must not undo Y."""
    c = Clinic()
    m, first = discharged(c)
    ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, first["msgid"], "2402")))
    ok(c.do(EMP_CERTNO, "2402", discharge_input(EMP, m, T)))
    again = ok(c.do(EMP_CERTNO, "2601", reversal_input(EMP, first["msgid"], "2402")))
    assert again["result"] == "nothing-to-undo" and status(c, m) == "discharged"


def test_a_hospital_cannot_reverse_or_block_another_hospitals_transactions():
    """A msgid begins with its sender's code: a 2601 naming another hospital's msgid would
    undo its settlement (booking the money to the wrong hospital), close its visit, or make
    its next request refused in advance. Each is refused with E4012 and changes nothing."""
    c = Clinic()
    m = c.register()
    ok(c.upload(m, [("0001", "DA", 1, 500)]))
    settle = c.request(EMP_CERTNO, "2207", settle_input(EMP, m, 500, "1", "11"))
    setlinfo = ok(c.send(EMP_CERTNO, settle))["setlinfo"]
    for omsgid, oinfno in ((settle["msgid"], "2207"), (c.request(EMP_CERTNO, "2201", {})[
            "msgid"], "2201")):
        other = c.do(EMP_CERTNO, "2601", reversal_input(EMP, omsgid, oinfno), HOSP_SH)
        refused(other, ErrorCode.NOT_REVERSIBLE)
        assert "another hospital" in other["err_msg"]
    settlements = c.oracle.person_rows[EMP_CERTNO].settlements
    assert settlements[setlinfo["setl_id"]]["status"] == "settled"
    # the hospital's own next transaction, named in advance by the other, still goes through
    later = c.request(EMP_CERTNO, "2201", register_input(EMP, T))
    refused(c.do(EMP_CERTNO, "2601", reversal_input(EMP, later["msgid"], "2201"), HOSP_SH),
            ErrorCode.NOT_REVERSIBLE)
    ok(c.send(EMP_CERTNO, later))
