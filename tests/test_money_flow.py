"""Money flow (DOMAIN.md §5): balanced double entry, clearing that nets to zero and equals the
cross-province fund payments whatever the order or duplicates, prepayment top-ups, and hospital
reconciliation."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messages.codes import CANCELLATIONS
from messages.transactions import MAX_FEN
from messages.visitlog import Visit, VisitSession
from settlement.clearing import ClearingPolicy, ClearingStatement, clear
from settlement.ledger import Event, Ledger, SettlementEvent, events_from_answers, postings_for
from settlement.oracle import Oracle
from settlement.parameters import ParameterError, clearing_policy_for, parse_parameters
from settlement.reconciliation import Totals, reconcile_details, reconcile_totals
from settlement.retention import msgid_time
from simulators.reconciliation import DailyReconciler, HospitalBooks
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world

PROPS = settings(max_examples=150, deadline=None)
CITIES = ("110100", "310100", "440100", "110200")
MONTHS = ("2026-11", "2026-12", "2027-01")


@st.composite
def event_logs(draw: st.DrawFn) -> list[SettlementEvent]:
    """Settlements, some later cancelled or reversed (in the same or a later month)."""
    events = []
    for n in range(draw(st.integers(0, 25))):
        month = draw(st.integers(0, 1))
        hospital_city = draw(st.sampled_from(CITIES))
        settle = SettlementEvent(
            f"S{n}", "settle", f"{MONTHS[month]}-15 10:00:00", f"H{hospital_city}00001",
            draw(st.sampled_from(CITIES)), hospital_city, draw(st.integers(0, 10_000_000)))
        events.append(settle)
        undos: tuple[Event | None, ...] = (None, "cancel", "reverse")
        undo = draw(st.sampled_from(undos))
        if undo:
            later = MONTHS[month + draw(st.integers(0, 1))]
            events.append(SettlementEvent(settle.setl_id, undo, f"{later}-20 10:00:00",
                                          settle.fixmedins_code, settle.insuplc_admdvs,
                                          settle.mdtrtarea_admvs, settle.hifp_pay))
    return events


@PROPS
@given(event_logs())
def test_every_posting_is_balanced_and_the_ledger_stays_balanced(events):
    for e in events:
        lines = postings_for(e)
        assert sum(p.debit for p in lines) == sum(p.credit for p in lines)
    ledger = Ledger()
    ledger.post(events)
    assert ledger.balanced


@PROPS
@given(event_logs(), st.randoms(use_true_random=False))
def test_duplicates_and_order_change_neither_ledger_nor_clearing(events, rnd):
    replayed = events + [rnd.choice(events) for _ in range(len(events) // 2)] if events else []
    rnd.shuffle(replayed)
    once, again = Ledger(), Ledger()
    once.post(events)
    again.post(replayed)
    assert dict(once.balances) == dict(again.balances)
    assert [s.as_dict() for s in clear(events)] == [s.as_dict() for s in clear(replayed)]


@PROPS
@given(event_logs())
def test_each_month_nets_to_zero_and_equals_the_cross_province_payments(events):
    expected: dict[tuple[str, tuple[str, str]], int] = defaultdict(int)
    for e in events:
        if e.cross_province:
            expected[(e.time[:7], (e.insured_province, e.treatment_province))] += \
                e.signed_amount
    cleared: dict[str, dict[tuple[str, str], int]] = {}
    for statement in clear(events):
        assert sum(p.net for p in statement.provinces.values()) == 0
        cleared[statement.month] = {pair: n for pair, n in statement.pairs.items() if n}
    wanted: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
    for (month, pair), amount in expected.items():
        if amount:
            wanted[month][pair] = amount
    # every month with a non-zero cross-province flow has a statement, with exactly its pairs
    assert {m: p for m, p in cleared.items() if p} == dict(wanted)


def test_a_cancellation_after_its_month_is_netted_in_the_next_month():
    s = SettlementEvent("S1", "settle", "2026-12-30 10:00:00", "H11010000001", "310100",
                        "110100", 50_000)
    c = SettlementEvent("S1", "cancel", "2027-01-03 10:00:00", "H11010000001", "310100",
                        "110100", 50_000)
    dec, jan = clear([s, c])
    assert dec.pairs == {("310000", "110000"): 50_000}
    assert jan.pairs == {("310000", "110000"): -50_000}
    assert dec.hospitals == {"H11010000001": 50_000}
    assert jan.hospitals == {"H11010000001": -50_000}


def test_a_reversal_is_cleared_no_earlier_than_the_settlement_it_undoes():
    """A 2601 sent first and dated before its original (the hospital's plan) that then
    undoes it is dated, for clearing, when the settlement was made, not in a month before."""
    setlinfo = {"setl_id": "S1", "setl_time": "2027-01-01 00:10:00", "insuplc_admdvs": "310100",
                "mdtrtarea_admvs": "110100", "hifp_pay": 95_000, "medfee_sumamt": 200_000,
                "fund_pay_sumamt": 95_000, "acct_pay": 0}
    settle = ("H11010000001202701010010000001", "2207",
              [{"infcode": 0, "output": {"setlinfo": setlinfo}}])
    for sent, cleared in (("202612312350", "2027-01-01 00:10:00"),
                          ("202701020900", "2027-01-02 09:00:00")):
        reverse = (f"H11010000001{sent}000002", "2601", [{"infcode": 0, "output": {
            "result": "undone", "reversed_setl_id": "S1"}}])
        settled, undo = events_from_answers("H11010000001", [settle, reverse])
        assert (undo.event, undo.time) == ("reverse", cleared)
        assert [s.pairs for s in clear([settled, undo])] == [{("310000", "110000"): 0}]


def test_a_prepayment_below_half_its_target_is_topped_up():
    policy = ClearingPolicy(prepayment_months=2, expected_monthly_payable={"310000": 100_000})
    # target 200,000; month 1 pays 120,000 net: 80,000 left < 100,000 -> top-up 120,000
    s = SettlementEvent("S1", "settle", "2026-12-01 10:00:00", "H11010000001", "310100",
                        "110100", 120_000)
    (dec,) = clear([s], policy)
    sh = dec.provinces["310000"]
    assert (sh.prepayment_target, sh.prepayment_before, sh.prepayment_after, sh.top_up_due) == \
        (200_000, 200_000, 80_000, 120_000)
    bj = dec.provinces["110000"]
    assert (bj.receivable, bj.net, bj.top_up_due) == (120_000, 120_000, 0)
    # a second month paying 50,000: 150,000 left, not below half: no top-up
    s2 = SettlementEvent("S2", "settle", "2027-01-05 10:00:00", "H11010000001", "310100",
                         "110100", 50_000)
    _, jan = clear([s, s2], policy)
    assert (jan.provinces["310000"].prepayment_before,
            jan.provinces["310000"].prepayment_after,
            jan.provinces["310000"].top_up_due) == (200_000, 150_000, 0)


def cross(setl_id: str, time: str, insured_city: str, hospital_city: str,
          fen: int) -> SettlementEvent:
    """A settlement of `fen` by the fund of `insured_city`'s province, treated in
    `hospital_city` (a hospital there)."""
    return SettlementEvent(setl_id, "settle", time, f"H{hospital_city}00001", insured_city,
                           hospital_city, fen)


def positions(statement: ClearingStatement, province: str) -> tuple[int, ...]:
    p = statement.provinces[province]
    return (p.payable, p.receivable, p.prepayment_target, p.prepayment_before,
            p.prepayment_after, p.top_up_due)


def test_without_a_parameter_the_prepayment_target_follows_the_largest_monthly_payable():
    """DOMAIN.md §5 with no `expected_monthly_payable`: two months of the largest payable so
    far; a prepayment driven below zero (a shortfall) or below half its target is topped up
    back to target before the next month; a net receiver's prepayment is not drawn."""
    sh, bj = "310000", "110000"
    events = [
        cross("S1", "2026-12-05 10:00:00", "310100", "110100", 100_000),  # Shanghai pays
        cross("S2", "2026-12-06 10:00:00", "110100", "310100", 40_000),  # Beijing pays
        cross("S3", "2027-01-05 10:00:00", "310100", "110100", 500_000),
        cross("S4", "2027-02-05 10:00:00", "310100", "110100", 50_000),
        cross("S5", "2027-03-05 10:00:00", "310100", "110100", 600_000),
    ]
    dec, jan, feb, mar = clear(events)
    # (payable, receivable, target, before, after, top-up)
    # Dec: Shanghai's target 2 × 100,000; it pays 60,000 net: 140,000 left, not below half
    assert positions(dec, sh) == (100_000, 40_000, 200_000, 200_000, 140_000, 0)
    # Beijing receives 60,000 net: paid out, its prepayment (2 × 40,000) is not drawn
    assert positions(dec, bj) == (40_000, 100_000, 80_000, 80_000, 80_000, 0)
    assert dec.provinces[bj].net == 60_000
    # Jan: the target rises with the payable to 2 × 500,000; 140,000 − 500,000 is a shortfall
    # of 360,000, and the top-up brings it back to 1,000,000
    assert positions(jan, sh) == (500_000, 0, 1_000_000, 140_000, -360_000, 1_360_000)
    # Beijing, a net receiver with nothing to pay: target still from its largest payable
    assert positions(jan, bj) == (0, 500_000, 80_000, 80_000, 80_000, 0)
    # Feb: a small month does not lower the target (the largest payable so far stands);
    # the prepayment starts topped up
    assert positions(feb, sh) == (50_000, 0, 1_000_000, 1_000_000, 950_000, 0)
    # Mar: 950,000 − 600,000 = 350,000, below half of the new target 1,200,000 (not below
    # zero): top-up 850,000
    assert positions(mar, sh) == (600_000, 0, 1_200_000, 950_000, 350_000, 850_000)
    for statement in (dec, jan, feb, mar):
        assert sum(p.net for p in statement.provinces.values()) == 0


def test_a_province_that_only_receives_has_no_prepayment_to_draw():
    (dec,) = clear([cross("S1", "2026-12-05 10:00:00", "310100", "110100", 70_000)])
    assert positions(dec, "110000") == (0, 70_000, 0, 0, 0, 0)
    assert dec.provinces["110000"].net == 70_000
    assert positions(dec, "310000") == (70_000, 0, 140_000, 140_000, 70_000, 0)


def test_a_province_first_seen_as_a_receiver_is_deposited_its_target_when_it_first_pays():
    """Its first month as a payer is as any province's first: it starts at its target and
    ends at half of it, owing no top-up (not from 0, owing three times its payable)."""
    bj = "110000"
    dec, jan = clear([cross("S1", "2026-12-05 10:00:00", "310100", "110100", 70_000),
                      cross("S2", "2027-01-05 10:00:00", "110100", "310100", 50_000)])
    assert positions(dec, bj) == (0, 70_000, 0, 0, 0, 0)
    assert positions(jan, bj) == (50_000, 0, 100_000, 100_000, 50_000, 0)
    # and a net receiver that pays a little is deposited its target, not asked a top-up
    _, jan = clear([cross("S1", "2026-12-05 10:00:00", "310100", "110100", 70_000),
                    cross("S2", "2027-01-05 10:00:00", "110100", "310100", 10_000),
                    cross("S3", "2027-01-06 10:00:00", "310100", "110100", 30_000)])
    assert positions(jan, bj) == (10_000, 30_000, 20_000, 20_000, 20_000, 0)
    # a receiver whose receivable is clawed back before it first pays: still deposited then
    dec, jan, feb, mar = clear([
        cross("S1", "2026-12-05 10:00:00", "310100", "110100", 70_000),
        replace(cross("S1", "2027-01-05 10:00:00", "310100", "110100", 70_000),
                event="cancel"),
        cross("S2", "2027-02-05 10:00:00", "110100", "310100", 50_000),
        cross("S3", "2027-03-05 10:00:00", "310100", "310100", 1_000)])  # local
    assert positions(jan, bj) == (0, -70_000, 0, 0, -70_000, 70_000)  # owes it back
    assert positions(feb, bj) == (50_000, 0, 100_000, 100_000, 50_000, 0)
    # a province with a statement keeps one each month, its zeros shown
    assert positions(mar, bj) == (0, 0, 100_000, 50_000, 50_000, 0)


def test_the_oracle_answers_give_a_ledger_where_each_hospital_is_owed_its_settlements_in_force():
    world = build_world(WorldSpec(seed=13, persons=800))
    sessions = list(Oracle(world.ref).settle_log(generate_visits(world, VisitSpec(visits=600))))
    events = []
    owed: dict[str, int] = defaultdict(int)
    for s in sessions:
        events += events_from_answers(s.visit.fixmedins_code,
                                      [(m, i, s.answers.get(m, [])) for m, i in s.sent])
        if s.settlement is not None:
            owed[s.visit.fixmedins_code] += s.settlement["hifp_pay"]
    assert any(e.event == "cancel" for e in events) and any(e.event == "reverse" for e in events)
    ledger = Ledger()
    ledger.post(events)
    assert ledger.balanced
    hospitals = {a.split(":", 1)[1]: -b for a, b in ledger.balances.items()
                 if a.startswith("hospital:") and b}
    assert hospitals == {h: n for h, n in owed.items() if n}
    months = clear(events)
    assert len(months) >= 2  # the default log spans December and January
    cross = sum(e.signed_amount for e in events if e.cross_province)
    assert sum(sum(m.pairs.values()) for m in months) == cross > 0
    # DOMAIN.md §5: cross-province, the insured province owes the treatment province: what
    # each pair of the statements adds up to, each agency owed ahead what it pays for them
    owes: dict[str, int] = defaultdict(int)
    for m in months:
        for (payer, payee), amount in m.pairs.items():
            owes[f"interprov:{payer}>{payee}"] -= amount
    assert {a: b for a, b in ledger.balances.items() if a.startswith("interprov:") and b} == \
        {a: n for a, n in owes.items() if n}
    agencies = {a: b for a, b in ledger.balances.items() if a.startswith("agency:") and b}
    assert sum(agencies.values()) == cross


def test_reconciliation_is_balanced_only_when_totals_agree_and_lists_what_is_missing():
    setls = [{"setl_id": f"S{i}", "medfee_sumamt": 1000 * i, "fund_pay_sumamt": 600 * i,
              "acct_pay": 100 * i} for i in range(1, 6)]
    platform = Totals.of(setls)
    assert reconcile_totals(platform, platform) == {"stmt_rslt": "0", "stmt_rslt_dscr": "平",
                                                   "differences": {}}
    hospital = Totals.of(setls[:-1])  # the hospital lost the last answer
    out = reconcile_totals(hospital, platform)
    assert out["stmt_rslt"] == "1" and out["stmt_rslt_dscr"] == "不平"
    assert out["differences"] == {"fixmedins_setl_cnt": 1, "medfee_sumamt": 5000,
                                  "fund_pay_sumamt": 3000, "acct_pay": 500}
    held = {s["setl_id"]: SettlementEvent(s["setl_id"], "settle", "2026-12-01 10:00:00",
                                          "H11010000001", "310100", "110100", 1,
                                          s["medfee_sumamt"], s["fund_pay_sumamt"],
                                          s["acct_pay"]) for s in setls}
    out = reconcile_details(["S1", "S2", "S9"], held)
    assert (out["missing_at_hospital"], out["missing_on_platform"]) == \
        (["S3", "S4", "S5"], ["S9"])
    assert [d["setl_id"] for d in out["details"]] == ["S3", "S4", "S5"]
    assert out["details"][0]["fund_pay_sumamt"] == 1800  # enough for the hospital to post it
    rnd = random.Random(1)
    shuffled = setls[:]
    rnd.shuffle(shuffled)
    assert Totals.of(shuffled) == platform


def test_hospitals_that_lost_settlement_answers_are_unbalanced_until_3202_details_them():
    """Through the oracle's platform, day by day as the fleet does it: with lost answers some
    hospital-days are 不平 at first; each is balanced once the hospital posts the settlements
    the 3202 details, exactly those whose answers it lost; the closing 3201/3202/3203 balance."""
    from simulators.faults import FaultPlan
    from simulators.reconciliation import closing_requests, settlements_to_post

    world = build_world(WorldSpec(seed=21, persons=600))
    oracle = Oracle(world.ref)
    plan = FaultPlan(lose_answer=0.2)
    sessions = list(oracle.settle_log(plan.apply(generate_visits(
        world, VisitSpec(visits=300)), 21)))
    books, daily = reconciled_day_by_day(sessions, oracle)
    days = list(daily.days.values())
    assert days and all(d.balanced for d in days)
    assert not daily.busy
    unbalanced_first = [d for d in days if d.first == "1"]
    assert unbalanced_first and all(d.posted for d in unbalanced_first)
    assert sum(d.posted for d in days) == settlements_to_post(sessions) > 0
    closing = [oracle.submit(key, req)["output"] for key, req in closing_requests(books)]
    assert any("appy_stas" in out for out in closing)
    for out in closing:
        assert out.get("stmt_rslt", "0") == "0" and out.get("appy_stas", "1") == "1"
        assert not out.get("missing_at_hospital") and not out.get("missing_on_platform")


def test_a_hospital_that_lost_a_cancellations_answer_posts_it_from_3202_and_balances():
    """A hand-written `2208~` or `2305~`: the HIS holds as in force a settlement the platform
    undid, so its day was 不平 and its province's 3203 refused (3202 named the settlement
    missing on the platform, and nothing for the HIS to post). 3202 now details the period's
    undoings; the HIS posts those of its settlements it did not know undone, and balances."""
    from messages.visitlog import parse_step
    from simulators.reconciliation import closing_requests

    world = build_world(WorldSpec(seed=21, persons=600))
    oracle = Oracle(world.ref)

    def cancellations_lost(v: Visit) -> Visit:
        steps = [f"{s}~" if parse_step(s) == (s, "") and s in CANCELLATIONS else s
                 for s in v.steps]
        return v.model_copy(update={"steps": steps})

    sessions = list(oracle.settle_log(
        cancellations_lost(v) for v in generate_visits(world, VisitSpec(visits=400))))
    lost = [next(a for a in answers if a.get("infcode") == 0)["output"]["setlinfo"]
            for s in sessions for msgid, infno, answers in s.exchanges()
            if msgid in s.lost and infno in CANCELLATIONS
            and any(a.get("infcode") == 0 for a in answers)]
    assert len(lost) > 5  # cancellations that undid a settlement, their answers lost
    books, daily = reconciled_day_by_day(sessions, oracle)
    days = list(daily.days.values())
    assert sum(d.first == "1" for d in days) > 0 and all(d.balanced for d in days)
    assert sum(d.undoings_posted for d in days) == len(lost)
    # what they gave back, for the summary to give apart from the visits' (still `settled`)
    given_back = [-sum(c[k] for c in lost) for k in ("medfee_sumamt", "hifp_pay", "acct_pay")]
    assert [sum(d.undone_fen[i] for d in days) for i in range(3)] == given_back
    assert given_back[0] > 0
    closing = [oracle.submit(key, req)["output"] for key, req in closing_requests(books)]
    assert any("appy_stas" in out for out in closing)
    for out in closing:
        assert out.get("stmt_rslt", "0") == "0" and out.get("appy_stas", "1") == "1", out
        assert not out.get("missing_at_hospital") and not out.get("missing_on_platform")
    undone = next(out["undone"] for out in closing if out.get("undone"))
    assert {u["event"] for u in undone} <= {"cancel", "reverse"}
    settled_at = {e.setl_id: e.time for e in oracle.money_events.values() if e.event == "settle"}
    assert all("setl_time" not in u and u["event_time"] >= settled_at[u["setl_id"]]
               for u in undone)  # the undoing's own time, not the settlement's


def test_a_lost_cancellation_and_a_lost_settlement_again_of_the_same_money_are_posted():
    """`2208~ 2207~` on one day: the day's totals read 平 at once (one settlement of that
    money either side), so nothing was posted, the HIS kept the cancelled settlement in force
    and lacked the one that stands, and the replay failed a right platform ("0 posted, 1
    expected": a visit-log author's review). A day with a lost answer has its details asked
    for whatever its totals say."""
    from simulators.reconciliation import settlements_to_post

    world = build_world(WorldSpec(seed=21, persons=600))
    oracle = Oracle(world.ref)
    visit = next(v for v in generate_visits(world, VisitSpec(visits=50, anomaly_share=0.0))
                 if v.kind == "outpatient").model_copy(update={
                     "steps": ["1101", "2201", "2204", "2207", "2208~", "2207~"], "batches": 1})
    (session,) = oracle.settle_log([visit])
    assert settlements_to_post([session]) == 1
    books, daily = reconciled_day_by_day([session], oracle)
    (day,) = daily.days.values()
    assert day.first == "0"  # 平 at once: the totals could not tell
    assert (day.posted, day.undoings_posted, day.balanced) == (1, 1, True)
    standing = session.answers[session.sent[-1][0]][0]["output"]["setlinfo"]["setl_id"]
    assert standing != session.settlement["setl_id"]  # the HIS saw only the first
    in_force = books.totals(visit.fixmedins_code, day.day, day.day)[1]
    assert in_force == {standing}  # the one that stands, posted; the cancelled one undone


def reconciled_day_by_day(sessions: list[VisitSession], oracle: Oracle
                          ) -> tuple[HospitalBooks, DailyReconciler]:
    """The hospitals' books of `sessions` and their daily 3201/3202 through the oracle's
    platform, day by day as the fleet does it."""
    books = HospitalBooks()
    daily = DailyReconciler(books)
    for s in sessions:
        books.record(s)
        for msgid, _ in s.sent:
            daily.saw({"inf_time": msgid_time(msgid), "fixmedins_code": s.visit.fixmedins_code},
                      lost=msgid in s.lost)
    for day in daily.open_days:
        queue = daily.close(day)
        while queue:
            key, req = queue.pop()
            answer = oracle.submit(key, req)
            assert answer is not None  # a daily 3201/3202 is answered, never dead-lettered
            queue += daily.on_answer(answer, 0.0)
    return books, daily


def test_a_clearing_application_is_accepted_only_for_the_statement_amount():
    """3203 from a treatment-province agency: accepted (受理) when it applies for what the
    month's statement makes its province receivable, refused (不予受理) with the difference
    otherwise; a hospital may not send it and an agency may send nothing else."""
    from settlement.reference import agency_code
    from simulators.reconciliation import HospitalBooks, closing_requests

    world = build_world(WorldSpec(seed=21, persons=600))
    oracle = Oracle(world.ref)
    sessions = list(oracle.settle_log(generate_visits(world, VisitSpec(visits=300))))
    books = HospitalBooks()
    for s in sessions:
        books.record(s)
    applications = [(k, r) for k, r in closing_requests(books) if r["infno"] == "3203"]
    assert applications
    key, req = next((k, r) for k, r in applications if r["input"]["fund_appy_sum"] > 0)
    assert key == agency_code(req["mdtrtarea_admvs"])
    out = oracle.submit(key, req)["output"]
    month = f"{req['input']['clr_ym'][:4]}-{req['input']['clr_ym'][4:]}"
    statement = next(s for s in clear(oracle.money_events.values()) if s.month == month)
    assert out["appy_stas"] == "1"
    assert out["fund_clr_sum"] == statement.provinces[req["mdtrtarea_admvs"]].receivable
    # what it clears, hospital by hospital: its cross-province settlements, not the local ones
    assert sum(h["amount"] for h in out["hospitals"]) == out["fund_clr_sum"] > 0
    assert any(not e.cross_province for e in oracle.money_events.values())

    def another(request: dict, seq: int, **changes: object) -> dict:
        """`request` as a new one (its own msgid), with `changes` to its input or envelope."""
        inp = {k: v for k, v in changes.items() if k in request["input"]}
        env = {k: v for k, v in changes.items() if k not in request["input"]}
        new = {**request, **env, "input": {**request["input"], **inp}}
        stamp = new["inf_time"].replace("-", "").replace(" ", "").replace(":", "")
        return {**new, "msgid": f"{new['fixmedins_code']}{stamp}{seq:04d}"}

    greedy = another(req, 1, fund_appy_sum=req["input"]["fund_appy_sum"] + 100)
    out = oracle.submit(key, greedy)["output"]
    assert out["appy_stas"] == "2" and out["differences"] == {"fund_appy_sum": -100}
    # a province-month past ¥1 billion is a total like any other; past ¥10 trillion, E4007
    large = oracle.submit(key, another(req, 2, fund_appy_sum=125_000_000_000))
    assert large["output"]["appy_stas"] == "2"
    too_large = oracle.submit(key, another(req, 3, fund_appy_sum=10**16))
    assert too_large["err_code"] == "E4007"
    # an agency says where it is: its province, or a city of it the platform knows (an
    # integrator's review found 119900, no city at all, answered)
    province = req["mdtrtarea_admvs"]
    a_city = next(h.admdvs for h in world.ref.hospitals.values() if h.province == province)
    assert oracle.submit(key, another(req, 7, mdtrtarea_admvs=a_city))["infcode"] == 0
    nowhere = oracle.submit(key, another(req, 8, mdtrtarea_admvs=province[:2] + "9900"))
    assert nowhere["err_code"] == "E3002" and "is not a known region" in nowhere["err_msg"]
    # a month not over yet, or to come, cannot be cleared: its figures still change
    for clr_ym, inf_time in ((req["input"]["clr_ym"], f"{month}-28 23:00:00"),
                             ("203001", req["inf_time"])):
        early = oracle.submit(key, another(req, 4, clr_ym=clr_ym, inf_time=inf_time))
        assert early["err_code"] == "E4010" and "is not over" in early["err_msg"], early
    # a duplicate gets the original answer (DOMAIN.md §4) though the month has moved since;
    # a new application sees the move
    city = req["mdtrtarea_admvs"][:2] + "0100"
    late = SettlementEvent("LATE", "settle", f"{month}-28 10:00:00", f"H{city}00001",
                           "110100" if city != "110100" else "310100", city, 1_000)
    assert late.cross_province and late.treatment_province == req["mdtrtarea_admvs"]
    oracle.money_events[(late.setl_id, late.event)] = late
    first = oracle.recon_answers[req["msgid"]]
    assert oracle.submit(key, req) == first
    moved = oracle.submit(key, another(req, 6))["output"]
    assert moved["fund_clr_sum"] == first["output"]["fund_clr_sum"] + 1_000
    totals = next(r for k, r in closing_requests(books) if r["infno"] == "3201")
    ahead = oracle.submit(totals["fixmedins_code"], another(
        totals, 5, stmt_enddate="2030-01-01"))
    assert ahead["err_code"] == "E4010" and "cannot be reconciled" in ahead["err_msg"]
    hospital = next(iter(world.ref.hospitals.values()))
    as_hospital = {**req, "fixmedins_code": hospital.fixmedins_code,
                   "msgid": hospital.fixmedins_code + req["msgid"][12:],
                   "mdtrtarea_admvs": hospital.admdvs}
    refused = oracle.submit(hospital.fixmedins_code, as_hospital)
    assert refused["infcode"] == -1 and refused["err_code"] == "E3005"
    other = {**req, "infno": "3201"}
    refused = oracle.submit(key, other)
    assert refused["infcode"] == -1 and refused["err_code"] == "E3005"


def test_the_clearing_index_answers_reconciliation_exactly_as_a_scan_of_every_event():
    """The worker answers 3201/3202/3203 from the events its index names for the period (ids
    by hospital and day), not from every event: the answers are the same as from all of
    them, for each hospital's day, its whole period and each agency's month."""
    from settlement.reconciliation import ClearingIndex, answer_reconciliation, period_of
    from simulators.reconciliation import HospitalBooks, closing_requests, totals_request

    world = build_world(WorldSpec(seed=5, persons=600))
    oracle = Oracle(world.ref)
    sessions = list(oracle.settle_log(generate_visits(world, VisitSpec(visits=400, days=6))))
    books = HospitalBooks()
    for s in sessions:
        books.record(s)
    events = {e.event_id.encode(): e for e in oracle.money_events.values()}
    index = ClearingIndex()
    for event_id, e in events.items():
        index.add(event_id, e)
    days = sorted({e.time[:10] for e in events.values()})
    requests = [r for _, r in closing_requests(books)]
    requests += [totals_request(books, code, day, day, f"{day} 23:00:00", 1)
                 for code in books.hospitals for day in days]
    assert len(days) > 1 and {r["infno"] for r in requests} == {"3201", "3202", "3203"}
    for req in requests:
        named = index.ids(*period_of(req))
        assert answer_reconciliation(req, [events[i] for i in named]) == \
            answer_reconciliation(req, events.values())
        if req["infno"] != "3203":  # one hospital's events: fewer than there are
            assert len(set(named)) == len(named) < len(events)


def test_hospital_books_kept_by_day_reckon_periods_as_the_platform_does_from_their_events():
    """Each HIS keeps day totals and settlement ids, not events: over any period they give
    the totals and the settlements in force that `platform_totals` gives from the events the
    HIS saw and posted (duplicates, lost answers posted from 3202 details, cancellations, and
    reversals of lost settlements among them)."""

    from settlement.reconciliation import event_of_detail, platform_totals, settlement_detail
    from simulators.faults import FaultPlan
    from simulators.reconciliation import HospitalBooks

    world = build_world(WorldSpec(seed=8, persons=600))
    oracle = Oracle(world.ref)
    plan = FaultPlan(duplicate=0.1, lose_answer=0.2)
    sessions = list(oracle.settle_log(plan.apply(generate_visits(
        world, VisitSpec(visits=500, days=5)), 8)))
    books = HospitalBooks()
    seen: dict[str, dict[tuple[str, str], SettlementEvent]] = defaultdict(dict)
    reversed_at: dict[str, str] = {}
    for s in sessions:
        books.record(s)
        code = s.visit.fixmedins_code
        for e in events_from_answers(code, s.exchanges(seen_only=True)):
            seen[code].setdefault((e.setl_id, e.event), e)
        for msgid, infno, answers in s.exchanges(seen_only=True):
            ok = next((a for a in answers if a.get("infcode") == 0), None)
            if infno == "2601" and ok and ok["output"].get("reversed_setl_id"):
                reversed_at[ok["output"]["reversed_setl_id"]] = msgid_time(msgid)
    for e in oracle.money_events.values():  # every settlement, as 3202 details (lost or not)
        if e.event == "settle":
            books.post(e.fixmedins_code, settlement_detail(e))
            books.post(e.fixmedins_code, settlement_detail(e))  # a 3202 answered twice
            posted = event_of_detail(e.fixmedins_code, settlement_detail(e))
            seen[e.fixmedins_code].setdefault((e.setl_id, "settle"), posted)
            if e.setl_id in reversed_at:
                seen[e.fixmedins_code].setdefault(
                    (e.setl_id, "reverse"), replace(posted, event="reverse",
                                                    time=reversed_at[e.setl_id]))
    kinds = {e.event for events in seen.values() for e in events.values()}
    assert kinds == {"settle", "cancel", "reverse"} and books.hospitals == sorted(seen)
    for code in books.hospitals:
        days = books.days(code)
        assert days == sorted({e.time[:10] for e in seen[code].values()})
        for first, last in [(d, d) for d in days] + [(days[0], days[-1])]:
            totals, in_force, _ = platform_totals(seen[code].values(), code, first, last)
            assert books.totals(code, first, last) == (totals, set(in_force))


def test_a_settlement_event_that_is_not_whole_fen_or_of_an_unknown_kind_is_refused():
    """Read back from money.events and from results files: one past what an answer may hold
    or at no real time would put a fund at −¥10 trillion in the ledger, or clear a month
    2026-13 (a hostile-input review)."""
    good = {"setl_id": "S1", "event": "settle", "time": "2026-12-01 09:00:00",
            "fixmedins_code": "H11010500001", "insuplc_admdvs": "110105",
            "mdtrtarea_admvs": "310101", "hifp_pay": 100}
    assert SettlementEvent(**good).signed_amount == 100
    for field, bad in [("hifp_pay", 100.5), ("hifp_pay", "100"), ("hifp_pay", True),
                       ("acct_pay", 1.0), ("event", "refund"), ("setl_id", 7),
                       ("hifp_pay", -1), ("acct_pay", MAX_FEN + 1),
                       ("time", "2026-13-45 09:00:00"), ("time", "2026-12-01T09:00:00"),
                       ("time", "2026-12-01"), ("time", "2026-W48-1 09:00:00"),
                       ("time", "2026-12-01 09:00+08")]:
        try:
            SettlementEvent(**{**good, field: bad})
        except ValueError as exc:
            assert field in str(exc) or "kind" in str(exc)
            assert str(bad) not in str(exc)
        else:
            raise AssertionError(f"{field}={bad!r} was taken")


def test_a_hospital_posts_a_lost_settlement_undone_by_a_2601_dated_before_it_on_its_own_day():
    """The platform never dates a reversal before what it undid (settlement/ledger.py); a
    hospital posting, from a 3202 detail, a settlement whose answer it lost and a 2601 of it
    it saw, dates it so too, or its daily 3201 would read 不平 on two days."""
    from simulators.reconciliation import HospitalBooks

    books = HospitalBooks()
    code = "H31010000001"
    books._reversals_seen[code]["S1"] = "2026-03-01 23:59:00"  # the 2601's time
    books.post(code, {"setl_id": "S1", "setl_time": "2026-03-02 00:01:00",
                      "insuplc_admdvs": "110100", "mdtrtarea_admvs": "310100",
                      "hifp_pay": 700, "medfee_sumamt": 1_000, "fund_pay_sumamt": 700,
                      "acct_pay": 300})
    assert books.days(code) == ["2026-03-02"]
    totals, in_force = books.totals(code, "2026-03-02", "2026-03-02")
    assert (totals.count, totals.medfee_sumamt, in_force) == (0, 0, set())


def test_a_policy_files_prepayment_parameters_set_each_provinces_target():
    """DOMAIN.md §5's parameters: the months (defaults, then a province's own) and a
    province's expected monthly payable; the others follow their largest month."""
    provinces = ["310000", "110000"]
    policy = clearing_policy_for(parse_parameters({
        "defaults": {"prepayment_months": 3},
        "provinces": {"310000": {"prepayment_months": 1,
                                 "expected_monthly_payable": 500_000}}}, provinces), provinces)
    s = SettlementEvent("S1", "settle", "2026-12-01 10:00:00", "H11010000001", "310100",
                        "110100", 120_000)
    b = SettlementEvent("S2", "settle", "2026-12-02 10:00:00", "H31010000001", "110100",
                        "310100", 40_000)
    (dec,) = clear([s, b], policy)
    assert dec.provinces["310000"].prepayment_target == 500_000  # 1 × its expected payable
    assert dec.provinces["110000"].prepayment_target == 120_000  # 3 × its month's 40,000
    for bad in ({"prepayment_months": 25}, {"prepayment_months": -1},
                {"expected_monthly_payable": 1.5}):
        with pytest.raises(ParameterError):
            parse_parameters({"defaults": bad}, provinces)

