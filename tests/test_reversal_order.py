"""2601 in either order (DOMAIN.md §4: "Either order ends in the same state"), however the
2601 names its original: where the original came first, a 2601 that misnames it is refused
(E4012) and the original stands; where the 2601 came first, the late original goes ahead
unless the 2601 named its kind (settlement/reversals.py). A cancellation is never reversed."""

from __future__ import annotations

from typing import Any

import pytest

from messages.codec import encode_to_keep
from messages.codes import ErrorCode
from settlement.treatment_row import MAX_PUT_BACKS, held_entry
from tests.clinic import EMP, Clinic
from tests.handmade import (
    EMP_CERTNO,
    accumulators_input,
    ok,
    refused,
    reversal_input,
    settle_cancel_input,
    settle_input,
)


def end_state(c: Clinic) -> tuple[Any, ...]:
    """What the money and the visit came to: balance, accumulators, each settlement's status,
    and the visits' settlements on the treatment side."""
    person = c.oracle.person_rows[EMP_CERTNO]
    visits = c.oracle.treatment_rows[EMP_CERTNO].visits
    return (person.balance, person.ytd,
            {k: s["status"] for k, s in sorted(person.settlements.items())},
            {m: v["setl_id"] for m, v in sorted(visits.items())})


def settled(c: Clinic) -> tuple[str, str]:
    """A visit of 25,000 fen settled: its mdtrt_id and setl_id."""
    m = c.register()
    ok(c.upload(m, [("0001", "DA", 1, 25_000)]))
    return m, ok(c.settle(m, 25_000))["setlinfo"]["setl_id"]


@pytest.mark.parametrize("named", ["2206", "2303", "5206", "1101", "2201", "2204", "2402"])
def test_a_cancellation_named_as_anything_else_stands_in_either_order(named: str):
    ends = []
    for cancel_first in (True, False):
        c = Clinic()
        m, setl_id = settled(c)
        cancel = c.request(EMP_CERTNO, "2208", settle_cancel_input(EMP, setl_id, m))
        reversal = c.request(EMP_CERTNO, "2601", reversal_input(EMP, cancel["msgid"], named))
        if cancel_first:
            ok(c.send(EMP_CERTNO, cancel))
            refused(c.send(EMP_CERTNO, reversal), ErrorCode.NOT_REVERSIBLE)
        else:
            assert ok(c.send(EMP_CERTNO, reversal))["result"] == "reversed-in-advance"
            ok(c.send(EMP_CERTNO, cancel))  # it was not what the 2601 named
        ends.append(end_state(c))
    assert ends[0] == ends[1]
    assert list(ends[0][2].values()) == ["cancelled"]


def settlement_and_its_2601(named: str) -> tuple[Clinic, dict[str, Any], dict[str, Any]]:
    """A visit with 25,000 fen of fees, its 2207 and a 2601 of it naming `named`, not sent."""
    c = Clinic()
    m = c.register()
    ok(c.upload(m, [("0001", "DA", 1, 25_000)]))
    settle = c.request(EMP_CERTNO, "2207", settle_input(EMP, m, 25_000))
    return c, settle, c.request(EMP_CERTNO, "2601", reversal_input(EMP, settle["msgid"], named))


@pytest.mark.parametrize("named", ["2201", "2206", "5206", "2204", "2202"])
def test_a_settlement_named_as_anything_but_a_settlement_stands_in_either_order(named: str):
    ends = []
    for settle_first in (True, False):
        c, settle, reversal = settlement_and_its_2601(named)
        if settle_first:
            ok(c.send(EMP_CERTNO, settle))
            refused(c.send(EMP_CERTNO, reversal), ErrorCode.NOT_REVERSIBLE)
        else:
            assert ok(c.send(EMP_CERTNO, reversal))["result"] == "reversed-in-advance"
            ok(c.send(EMP_CERTNO, settle))
        ends.append(end_state(c))
    assert ends[0] == ends[1]
    assert list(ends[0][2].values()) == ["settled"]


@pytest.mark.parametrize("named", ["2207", "2304"])
def test_a_settlement_named_as_a_settlement_is_undone_or_refused_in_either_order(named: str):
    ends = []
    for settle_first in (True, False):
        c, settle, reversal = settlement_and_its_2601(named)
        if settle_first:
            ok(c.send(EMP_CERTNO, settle))
            assert ok(c.send(EMP_CERTNO, reversal))["result"] == "undone"
        else:
            ok(c.send(EMP_CERTNO, reversal))
            refused(c.send(EMP_CERTNO, settle), ErrorCode.REVERSED)
        person = c.oracle.person_rows[EMP_CERTNO]
        ends.append((person.balance, person.ytd))
        assert person.balance == EMP.balance  # nothing settled, or settled and undone
    assert ends[0] == ends[1]


def test_a_2601_of_a_settlement_the_treatment_side_refused_has_nothing_to_undo():
    """A 2207 whose total is not its fees' is refused at the treatment side (E4004), and the
    insured place never sees it: the 2601 of it took it for one still to come
    (`reversed-in-advance`, a review). It did nothing, so there is nothing to undo, and
    nothing is kept against its msgid."""
    c, settle, reversal = settlement_and_its_2601("2207")
    settle["input"]["medfee_sumamt"] = 1
    refused(c.send(EMP_CERTNO, settle), ErrorCode.AMOUNT_MISMATCH)
    assert ok(c.send(EMP_CERTNO, reversal)) == {
        "omsgid": settle["msgid"], "oinfno": "2207", "result": "nothing-to-undo",
        "reversed_setl_id": ""}
    assert c.oracle.person_rows.get(EMP_CERTNO) is None or \
        settle["msgid"] not in c.oracle.person_rows[EMP_CERTNO].reversed
    assert ok(c.settle(settle["input"]["mdtrt_id"], 25_000))["setlinfo"]["setl_id"]


@pytest.mark.parametrize("refused_first", [True, False], ids=["refused-first", "2601-first"])
def test_a_2601_of_a_refused_settlement_is_held_to_the_persons_city_in_either_order(
        refused_first: bool):
    """The insured place still checks the 2601 itself (its city): answered at the treatment
    side, it was taken with a wrong city when its original had been refused there, and
    refused E3004 when it came first (a review of the change)."""
    c, settle, reversal = settlement_and_its_2601("2207")
    settle["input"]["medfee_sumamt"] = 1
    if refused_first:
        refused(c.send(EMP_CERTNO, settle), ErrorCode.AMOUNT_MISMATCH)
    refused(c.send(EMP_CERTNO, {**reversal, "insuplc_admdvs": "110200"}),
            ErrorCode.INSURED_PLACE_MISMATCH)


def test_a_2601_of_a_settlement_given_up_at_the_treatment_side_still_undoes_it():
    """A settlement whose held copy the treatment side gave up (E9001: put back too often,
    streams/ only) may have been done at the insured place; its 2601 must reach it and undo
    it, not be told there is nothing to undo (a review of the change)."""
    c, settle, reversal = settlement_and_its_2601("2207")
    ok(c.send(EMP_CERTNO, settle))  # settled at the insured place
    row = c.oracle.treatment_rows[EMP_CERTNO]
    copy = held_entry(settle["msgid"], {settle["input"]["mdtrt_id"]}, b"{}", {}, 1)
    copy["puts"] = MAX_PUT_BACKS
    row.held.append(copy)
    assert [d["msgid"] for d in row.due(now_ms=10**12)] == [settle["msgid"]]
    assert row.answers[settle["msgid"]]["err_code"] == ErrorCode.INTERNAL_ERROR  # given up
    c.oracle._treatment_rows[EMP_CERTNO] = encode_to_keep(row.to_dict())
    assert ok(c.send(EMP_CERTNO, reversal))["result"] == "undone"
    assert c.oracle.person_rows[EMP_CERTNO].balance == EMP.balance


@pytest.mark.parametrize("infno", ["2601", "5206"])
def test_a_request_naming_another_city_of_the_insured_province_is_refused_e3004(infno: str):
    """A 2601 or a 5206 names no visit, whose registration held the insured place to the
    person's city: the insured place holds it to that city itself, not only to its
    province (the route follows the province; a review found 110200, and 119900, no city
    at all, taken for a person insured in 110100)."""
    c, settle, reversal = settlement_and_its_2601("2207")
    ok(c.send(EMP_CERTNO, settle))
    req = reversal if infno == "2601" else c.request(
        EMP_CERTNO, "5206", accumulators_input(EMP, "202603"))
    for city in ("110200", "119900"):
        req = {**req, "insuplc_admdvs": city, "msgid": c.request(EMP_CERTNO, infno, {})["msgid"]}
        message = refused(c.send(EMP_CERTNO, req), ErrorCode.INSURED_PLACE_MISMATCH)
        assert city in message
    assert ok(c.send(EMP_CERTNO, {**req, "insuplc_admdvs": EMP.insuplc_admdvs,
                                  "msgid": c.request(EMP_CERTNO, infno, {})["msgid"]}))
    assert list(end_state(c)[2].values()) == (["reversed"] if infno == "2601" else ["settled"])


@pytest.mark.parametrize("oinfno", ["2201", "2204", "2202"])
def test_a_2601_the_treatment_side_decides_is_held_to_the_person_as_the_insured_place_does(
        oinfno: str):
    """A 2601 of a registration, a fee upload or a registration's cancellation is undone
    at the treatment side, which never asked whose psn_no or insured city it named: one with
    another person's psn_no undid a registration (an integrator's review). Refused now as
    the insured place refuses a settlement's 2601 (E2003, E3004); the right one still undoes."""
    c = Clinic()
    m = c.register()
    original = {"2201": c.answers[-1]["inf_refmsgid"]}
    if oinfno != "2201":
        done = c.upload(m, [("0001", "DA", 1, 25_000)]) if oinfno == "2204" else c.do(
            EMP_CERTNO, "2202", {"psn_no": EMP.psn_no, "mdtrt_id": m, "ipt_otp_no": "1"})
        original[oinfno] = ok(done) and c.answers[-1]["inf_refmsgid"]
    reversal = c.request(EMP_CERTNO, "2601", reversal_input(EMP, original[oinfno], oinfno))
    other = next(e for e in c.ref.enrollments.values() if e.psn_no != EMP.psn_no)
    refused(c.send(EMP_CERTNO, {**reversal, "input": {**reversal["input"],
                                                       "psn_no": other.psn_no}}),
            ErrorCode.PERSON_MISMATCH)
    refused(c.send(EMP_CERTNO, {**c.request(EMP_CERTNO, "2601", reversal["input"]),
                                "insuplc_admdvs": "110200"}), ErrorCode.INSURED_PLACE_MISMATCH)
    assert ok(c.send(EMP_CERTNO, {**reversal, "msgid": c.request(
        EMP_CERTNO, "2601", {})["msgid"]}))["result"] == "undone"
