"""A person's rows stay bounded however many hospitals see them (settlement/retention.py,
`horizon`), no one hospital's clock moves that bound, and rows written before the clocks were
each hospital's keep refusing replays."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from messages.codec import encode_to_keep
from messages.codes import ErrorCode
from settlement.oracle import Oracle
from settlement.reference import agency_code
from settlement.retention import HORIZON_DAYS, WINDOW_DAYS, day_cutoff
from settlement.treatment import Forward
from settlement.treatment_row import PERSON_CLOCK, TreatmentRow
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from tests.clinic import DAY0, EMP, Clinic, Desk, sent_at
from tests.handmade import (
    EMP_CERTNO,
    HOSP_BJ,
    HOSP_SH,
    admit_input,
    fee_input,
    ok,
    person_info_input,
    refused,
    register_input,
    request,
    reversal_input,
    settle_input,
)


def test_a_person_seen_by_a_new_hospital_every_few_days_keeps_only_the_horizons_parts():
    """One outpatient visit at each of 120 hospitals, 3 days apart (a year), through the
    rules as the streamed platform runs them (no oracle pruning): each hospital's part stays
    until that hospital's next request, which never comes, so without the horizon the rows
    kept all 120 visits and grew past what a record holds."""
    world = build_world(WorldSpec(persons=50))
    oracle = Oracle(world.ref)
    oracle.forget_before = lambda day: None
    visit = next(v for v in generate_visits(world, VisitSpec(
        visits=200, ehr=False, anomaly_share=0, cancel_share=0))
        if v.kind == "outpatient" and len(v.items) >= 3)
    hospitals = [h for hs in world.hospitals_by_province.values() for h in hs][:120]
    start = datetime(2026, 1, 1, 9)
    for i, h in enumerate(hospitals):
        session = oracle.run_visit(visit.model_copy(update={
            "fixmedins_code": h.fixmedins_code, "mdtrtarea_admvs": h.admdvs,
            "begntime": (start + timedelta(days=3 * i)).strftime("%Y-%m-%d %H:%M:%S")}))
        assert session.settlement is not None  # settled, each one
    treatment = oracle.treatment_rows[visit.certno]
    kept = (HORIZON_DAYS + WINDOW_DAYS) // 3 + 2  # the horizon's hospitals, the newest two
    assert 3 < len(treatment.visits) <= kept < len(hospitals)
    assert len(treatment.clocks) <= kept
    assert len(oracle.person_rows[visit.certno].settlements) <= kept
    assert len(oracle._treatment_rows[visit.certno]) < 250_000  # bytes: well within a record


def test_one_hospital_dating_far_ahead_moves_no_horizon():
    """The horizon runs from the second newest hospital clock: a hospital a year ahead
    alone cannot make another's week a replay."""
    desk = Desk()
    mdtrt_id = desk.register(EMP_CERTNO, HOSP_BJ)
    ahead = "2027-06-01 09:00:00"
    info = request("1101", HOSP_SH, ahead, 50, person_info_input(EMP_CERTNO, ahead), "")
    assert isinstance(desk.send(EMP_CERTNO, info), Forward)
    upload = desk.upload(EMP_CERTNO, HOSP_BJ, mdtrt_id, [("0001", "DA", 1, 100)])
    assert upload["infcode"] == 0  # still its week
    assert set(desk.rows[EMP_CERTNO].visits) == {mdtrt_id}


def test_a_sign_in_or_an_agencys_request_keyed_by_a_person_moves_no_clock():
    """Transactions that touch no person make no second clock for the horizon: a hospital a
    year ahead, then its sign-in and its province agency's clearing application keyed by the
    person's certno, leave another hospital's week as it was."""
    desk = Desk()
    mdtrt_id = desk.register(EMP_CERTNO, HOSP_BJ)
    ahead = "2027-06-01 09:00:00"
    info = request("1101", HOSP_SH, ahead, 50, person_info_input(EMP_CERTNO, ahead), "")
    assert isinstance(desk.send(EMP_CERTNO, info), Forward)
    sign_in = request("9001", HOSP_SH, ahead, 51, {"opter_no": "sim", "mac": "", "ip": ""})
    assert desk.answer(EMP_CERTNO, sign_in)["infcode"] == 0
    agency = replace(HOSP_SH, fixmedins_code=agency_code(HOSP_SH.province))
    clearing = request("3203", agency, ahead, 52, {"clr_ym": "202705", "clr_optins":
                       HOSP_SH.province, "fund_appy_sum": 0, "setl_cnt": 0})
    assert isinstance(desk.send(EMP_CERTNO, clearing), Forward)
    assert set(desk.rows[EMP_CERTNO].clocks) == {HOSP_BJ.fixmedins_code, HOSP_SH.fixmedins_code}
    upload = desk.upload(EMP_CERTNO, HOSP_BJ, mdtrt_id, [("0001", "DA", 1, 100)])
    assert upload["infcode"] == 0 and mdtrt_id in desk.rows[EMP_CERTNO].visits


def _settled_then_kept_as_before_12_05(c: Clinic) -> dict:
    """HOSP_BJ settles on DAY0 (03-01); HOSP_SH asks about the person on 03-11; then the
    rows as the code before 12-05 left them: pruned by the person's clock (one `latest`).
    The settlement's answer."""
    m = ok(sent_at(c, DAY0, "2201", register_input(EMP, DAY0)))["data"]["mdtrt_id"]
    ok(sent_at(c, DAY0, "2204", fee_input(EMP, m, DAY0, [("0001", "DA", 1, 250_000)])))
    settle = sent_at(c, DAY0, "2207", settle_input(EMP, m, 250_000))
    ok(settle)
    day10 = "2026-03-11 09:00:00"
    c.seq += 1
    ok(c.send(EMP_CERTNO, request("1101", HOSP_SH, day10, c.seq,
                                  person_info_input(EMP_CERTNO, day10), "")))
    oracle = c.oracle
    old = oracle.treatment_rows[EMP_CERTNO]
    old.forget_before(day_cutoff(day10))
    kept = old.to_dict()
    kept.pop("clocks")
    kept["latest"] = day10[:10] + " 00:00:00"
    oracle._treatment_rows[EMP_CERTNO] = encode_to_keep(kept)
    insured = oracle.person_rows[EMP_CERTNO]
    insured.forget_before(day_cutoff(day10))
    oracle._person_rows[EMP_CERTNO] = encode_to_keep(
        {k: v for k, v in insured.to_dict().items() if k != "clocks"})
    return settle


def _money(c: Clinic) -> tuple[int, dict]:
    row = c.oracle.person_rows[EMP_CERTNO]
    return row.balance, row.ytd


def test_a_row_written_with_the_persons_clock_refuses_a_hospital_it_no_longer_lists():
    """In a row of before 12-05 the person's clock had already forgotten a hospital's part:
    its late 2601 of a settlement, dated before that clock's window, is refused (E6003) as
    it was, not taken as a reversal in advance while the money stays where it went."""
    c = Clinic()
    settle = _settled_then_kept_as_before_12_05(c)
    money = _money(c)
    refused(sent_at(c, "2026-03-01 11:00:00", "2601", reversal_input(
        EMP, settle["inf_refmsgid"], "2207")), ErrorCode.STALE)
    assert _money(c) == money


def test_a_row_written_with_the_persons_clock_keeps_it_as_a_floor_once_a_hospital_sends():
    """The person's clock of a row of before 12-05 stays the earliest any hospital's may be:
    a hospital whose first request since is dated behind it (its own clock lagging another
    hospital's) does not reach back past what that clock forgot. Its 2601 of the forgotten
    settlement was taken as a reversal in advance (infcode 0) while the money stayed, and
    the settlement sent again was decided anew (E4001), not refused as a replay (a review)."""
    c = Clinic()
    settle = _settled_then_kept_as_before_12_05(c)
    money = _money(c)
    ok(sent_at(c, "2026-03-05 09:00:00", "1101",
               person_info_input(EMP_CERTNO, "2026-03-05 09:00:00")))
    refused(sent_at(c, "2026-03-05 10:00:00", "2601", reversal_input(
        EMP, settle["inf_refmsgid"], "2207")), ErrorCode.NOT_REVERSIBLE)
    assert _money(c) == money
    again = request("2207", HOSP_BJ, DAY0, 0, {}, EMP.insuplc_admdvs)
    again["msgid"] = settle["inf_refmsgid"]
    refused(c.send(EMP_CERTNO, again), ErrorCode.STALE)


def test_a_row_written_with_the_persons_clock_keeps_no_clock_of_a_code_of_no_hospital():
    """Its person's clock is any hospital's floor, so a refusal found a clock to keep for any
    sender; a code of no hospital (never authenticated) then kept its own, and two dated far
    ahead moved the horizon past every real hospital's part, and refused their requests as
    replays (a review)."""
    c = Clinic()
    _settled_then_kept_as_before_12_05(c)
    far = "2099-01-01 00:00:00"
    for n, code in enumerate(("H99990000001", "H99990000002")):
        stranger = replace(HOSP_BJ, fixmedins_code=code)
        refused(c.send(EMP_CERTNO, request("1101", stranger, far, n, person_info_input(
            EMP_CERTNO, far), "")), ErrorCode.UNKNOWN_HOSPITAL)
    assert set(c.oracle.treatment_rows[EMP_CERTNO].clocks) == {PERSON_CLOCK}
    day10 = "2026-03-11 10:00:00"
    ok(sent_at(c, day10, "2201", register_input(EMP, day10, 2)))


def test_a_row_written_with_the_persons_clock_still_refuses_replays():
    """A row of before 12-05 (one `latest` for the person) gives each hospital in it that
    clock: a replay of an admission from before its window is refused, not taken again (it
    would register the stay anew and drop its fees)."""
    desk = Desk()
    day1, day12 = "2026-03-01 09:00:00", "2026-03-12 09:00:00"
    admit = request("2401", HOSP_BJ, day1, 1, admit_input(EMP, day1), EMP.insuplc_admdvs)
    mdtrt_id = desk.answer(EMP_CERTNO, admit)["output"]["data"]["mdtrt_id"]
    fee = request("2301", HOSP_BJ, day12, 2, fee_input(EMP, mdtrt_id, day12, [(
        "0001", "DA", 1, 900)], med_type="21"), EMP.insuplc_admdvs)
    assert desk.answer(EMP_CERTNO, fee)["infcode"] == 0
    old = desk.rows[EMP_CERTNO].to_dict()
    old["latest"] = old.pop("clocks")[HOSP_BJ.fixmedins_code]
    desk.rows[EMP_CERTNO] = TreatmentRow.from_dict(old)
    assert desk.answer(EMP_CERTNO, admit)["err_code"] == ErrorCode.STALE
    assert len(desk.rows[EMP_CERTNO].visits[mdtrt_id]["fees"]) == 1


def test_a_stale_request_is_told_the_day_it_is_judged_by():
    """The platform takes each hospital's inf_time as its clock: a request dated ahead by
    mistake moves it, and a HIS refused as stale after one was told only "a replay" (a
    black-box integrator's review). The refusal names the day, where it is the sender's own."""
    row = TreatmentRow()
    row.clocks.update({"H11010000001": "2027-06-01 00:00:00",
                       "H31010000001": "2027-05-01 00:00:00"})
    assert row.stale("H11010000001", "2027-05-20 09:00:00") == (
        f"more than {WINDOW_DAYS} days before this hospital's latest request for this person "
        "(of 2027-06-01)")
    # another hospital's day is not told: when the person was there is that hospital's
    assert row.stale("H44010000001", "2026-12-01 09:00:00") == (
        f"more than {HORIZON_DAYS} days before the person's latest requests at two hospitals")
    assert row.stale("H44010000001", "2027-04-01 09:00:00") == ""
    # nor a row of before 12-05's person clock, which other hospitals' requests moved
    old = TreatmentRow()
    old.clocks.update({PERSON_CLOCK: "2027-01-20 00:00:00",
                       "H11010000001": "2026-12-01 00:00:00"})
    assert old.stale("H11010000001", "2027-01-01 09:00:00") == (
        f"more than {WINDOW_DAYS} days before this hospital's latest request for this person")
