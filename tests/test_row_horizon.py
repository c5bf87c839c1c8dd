"""A person's rows stay bounded however many hospitals see them (settlement/retention.py,
`horizon`), no one hospital's clock moves that bound, and rows written before the clocks were
each hospital's keep refusing replays."""

from __future__ import annotations

from datetime import datetime, timedelta

from messages.codes import ErrorCode
from settlement.oracle import Oracle
from settlement.retention import HORIZON_DAYS, WINDOW_DAYS
from settlement.treatment import Forward, TreatmentRow
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from tests.handmade import HOSP_BJ, HOSP_SH, admit_input, fee_input, person_info_input, request
from tests.test_treatment_platform import EMP, EMP_CERTNO, Desk


def test_a_person_seen_by_a_new_hospital_every_few_days_keeps_only_the_horizons_parts():
    """One outpatient visit at each of 120 hospitals, 3 days apart (a year), through the
    rules as the streamed platform runs them (no oracle pruning): each hospital's part stays
    until that hospital's next request, which never comes, so without the horizon the rows
    kept all 120 visits and grew past what a record holds."""
    world = build_world(WorldSpec(persons=50))
    oracle = Oracle(world.ref)
    oracle.forget_before = lambda day: None  # type: ignore[method-assign]
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
    desk.upload(EMP_CERTNO, HOSP_BJ, mdtrt_id, [("0001", "DA", 1, 100)])  # still its week
    assert set(desk.rows[EMP_CERTNO].visits) == {mdtrt_id}


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
