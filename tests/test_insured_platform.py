"""settlement.insured.InsuredPlatform: settlement (2207) with the insured place's policy,
idempotency by msgid, one settlement per visit, and the year-to-date accumulators."""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from messages.codes import ErrorCode
from messages.envelope import inf_time_stamp
from messages.identity import mask_certno
from settlement.catalogue import FeeTotals
from settlement.insured import InsuredPlatform
from settlement.person import PersonRow
from settlement.policy import Category
from settlement.reference import Hospital
from settlement.retention import day_cutoff, horizon
from tests.handmade import (
    EMP_CERTNO,
    EMPLOYEE_BALANCE,
    ENROLLMENTS,
    HOSP_BJ,
    HOSP_SH,
    RES_CERTNO,
    RETIRED_CERTNO,
    certno,
    person_info_input,
    reference_data,
    request,
    settle_ctx,
    settle_request,
)

PROPS = settings(max_examples=200, deadline=None)
EMP = ENROLLMENTS[EMP_CERTNO]


def in_scope(fen: int) -> FeeTotals:
    return FeeTotals(medfee_sumamt=fen, inscp_scp_amt=fen)


def settle(platform: InsuredPlatform, row: PersonRow | None, certno: str, inf_time: str,
           seq: int, mdtrt_id: str, fees: FeeTotals, hospital: Hospital = HOSP_BJ,
           acct_used_flag: str = "1") -> tuple[dict[str, Any], PersonRow | None]:
    e = ENROLLMENTS[certno]
    req = settle_request(e, hospital, inf_time, seq, mdtrt_id, fees.medfee_sumamt,
                         acct_used_flag)
    return platform.handle(certno, row, req, settle_ctx(req, hospital, fees))


def money_state(row: PersonRow) -> dict[str, Any]:
    """What a settlement changes: balance, accumulators and the settlements themselves."""
    return copy.deepcopy({"balance": row.balance, "ytd": row.ytd,
                          "settlements": row.settlements, "reversed": row.reversed})


def assert_only_the_refusal_is_kept(row: PersonRow | None, ans: dict[str, Any]) -> None:
    """A refused first request leaves a fresh row holding nothing but its answer (kept by
    msgid so that a duplicate gets it again)."""
    assert row is not None
    assert (row.balance, row.ytd, row.settlements, row.reversed) == (EMPLOYEE_BALANCE, {}, {},
                                                                     {})
    assert row.answers == {ans["inf_refmsgid"]: ans}


def test_settlement_answers_and_updates_balance_and_accumulators() -> None:
    platform = InsuredPlatform(reference_data())
    ans, row = settle(platform, None, EMP_CERTNO, "2026-03-01 10:00:00", 1, "110100V1",
                      in_scope(300_000))
    # 310 outpatient at a level-3 hospital (local, Beijing): annual deductible 1,800 yuan =
    # 180,000 fen; ratio 70 %: hifp = (300,000 − 180,000) × 0.7 = 84,000;
    # psn_part = 300,000 − 84,000 = 216,000, all from the 500,000 account -> balc 284,000.
    assert ans["infcode"] == 0
    s = ans["output"]["setlinfo"]
    assert (s["medfee_sumamt"], s["inscp_scp_amt"], s["act_pay_dedc"], s["hifp_pay"],
            s["fund_pay_sumamt"], s["psn_part_amt"], s["acct_pay"], s["psn_cash_pay"],
            s["balc"]) == (300_000, 300_000, 180_000, 84_000, 84_000, 216_000, 216_000, 0,
                           284_000)
    assert s["mdtrt_id"] == "110100V1"
    assert s["psn_no"] == EMP.psn_no
    assert s["insuplc_admdvs"] == EMP.insuplc_admdvs
    assert s["setl_time"] == "2026-03-01 10:00:00"
    assert s["clr_type"] == "11"
    assert s["setl_id"].startswith(EMP.insuplc_admdvs)
    assert row is not None
    assert row.balance == EMPLOYEE_BALANCE - 216_000
    assert row.ytd == {"2026": {"fund_11": 84_000, "dedc_11": 180_000}}
    assert row.settlements[s["setl_id"]]["status"] == "settled"


def test_answer_refers_to_the_request_msgid() -> None:
    platform = InsuredPlatform(reference_data())
    req = settle_request(EMP, HOSP_BJ, "2026-03-01 10:00:00", 7, "110100V1", 1_000)
    ans, _ = platform.handle(EMP_CERTNO, None, req, settle_ctx(req, HOSP_BJ, in_scope(1_000)))
    assert ans["inf_refmsgid"] == req["msgid"]


def test_second_settlement_uses_the_accumulated_deductible() -> None:
    platform = InsuredPlatform(reference_data())
    _, row = settle(platform, None, EMP_CERTNO, "2026-03-01 10:00:00", 1, "V1",
                    in_scope(100_000))
    ans, row = settle(platform, row, EMP_CERTNO, "2026-04-01 10:00:00", 5, "V2",
                      in_scope(100_000))
    # first: 100,000 all deductible; second: 80,000 of the 180,000 deductible left, then
    # (100,000 − 80,000) × 70 % = 14,000 from the fund.
    s = ans["output"]["setlinfo"]
    assert (s["act_pay_dedc"], s["hifp_pay"]) == (80_000, 14_000)
    assert row is not None
    assert row.ytd["2026"] == {"fund_11": 14_000, "dedc_11": 180_000}


def test_duplicate_msgid_returns_the_identical_answer_and_changes_nothing() -> None:
    platform = InsuredPlatform(reference_data())
    req = settle_request(EMP, HOSP_BJ, "2026-03-01 10:00:00", 1, "V1", 300_000)
    ctx = settle_ctx(req, HOSP_BJ, in_scope(300_000))
    first, row = platform.handle(EMP_CERTNO, None, copy.deepcopy(req), copy.deepcopy(ctx))
    assert row is not None
    before = copy.deepcopy(row.to_dict())
    again, changed = platform.handle(EMP_CERTNO, row, copy.deepcopy(req), copy.deepcopy(ctx))
    assert again == first
    assert changed is None
    assert row.to_dict() == before


def test_duplicate_person_info_returns_the_identical_answer_after_a_settlement() -> None:
    platform = InsuredPlatform(reference_data())
    info = request("1101", HOSP_BJ, "2026-03-01 09:59:00", 0,
                   person_info_input(EMP_CERTNO, "2026-03-01 09:59:00"))
    first, row = platform.handle(EMP_CERTNO, None, info, {"route": "local", "hosp_lv": 3})
    assert first["output"]["insuinfo"][0]["balc"] == EMPLOYEE_BALANCE
    _, row = settle(platform, row, EMP_CERTNO, "2026-03-01 10:00:00", 1, "V1",
                    in_scope(300_000))
    assert row is not None and row.balance != EMPLOYEE_BALANCE
    again, changed = platform.handle(EMP_CERTNO, row, info, {"route": "local", "hosp_lv": 3})
    assert again == first  # DOMAIN.md §4: a duplicate request gets the original answer
    assert changed is None


def test_second_settlement_of_the_same_visit_is_refused_and_changes_nothing() -> None:
    platform = InsuredPlatform(reference_data())
    _, row = settle(platform, None, EMP_CERTNO, "2026-03-01 10:00:00", 1, "V1",
                    in_scope(300_000))
    assert row is not None
    before = money_state(row)
    answers_before = dict(row.answers)
    ans, changed = settle(platform, row, EMP_CERTNO, "2026-03-01 10:05:00", 9, "V1",
                          in_scope(300_000))
    assert ans["infcode"] == -1
    assert ans["err_code"] == ErrorCode.VISIT_ALREADY_SETTLED
    # Only the refusal is kept (by its msgid, for duplicates); the money is untouched.
    assert changed is not None
    assert money_state(changed) == before
    assert changed.answers == {**answers_before, ans["inf_refmsgid"]: ans}


def test_unknown_person_is_refused_with_a_masked_certno() -> None:
    platform = InsuredPlatform(reference_data())
    stranger = certno("11010519491231003")  # valid, but nobody enrolled it
    req = settle_request(EMP, HOSP_BJ, "2026-03-01 10:00:00", 1, "V1", 1_000)
    ans, row = platform.handle(stranger, None, req, settle_ctx(req, HOSP_BJ, in_scope(1_000)))
    assert ans["err_code"] == ErrorCode.UNKNOWN_PERSON
    assert stranger not in ans["err_msg"]
    assert mask_certno(stranger) in ans["err_msg"]
    assert row is None


def test_psn_no_of_another_person_is_refused() -> None:
    platform = InsuredPlatform(reference_data())
    other = ENROLLMENTS[RETIRED_CERTNO]
    req = settle_request(other, HOSP_BJ, "2026-03-01 10:00:00", 1, "V1", 1_000)
    ans, row = platform.handle(EMP_CERTNO, None, req, settle_ctx(req, HOSP_BJ,
                                                                 in_scope(1_000)))
    assert ans["err_code"] == ErrorCode.PERSON_MISMATCH
    assert_only_the_refusal_is_kept(row, ans)


def test_settlement_declaring_another_insured_province_is_refused() -> None:
    platform = InsuredPlatform(reference_data())
    # The Beijing employee at the Shanghai hospital, declared as insured in Shanghai: that
    # would route the visit as local (no national platform, no unfiled cut). Only the
    # person's own insured province may settle it (DOMAIN.md §2 routing).
    req = settle_request(EMP, HOSP_SH, "2026-03-01 10:00:00", 1, "V1", 10_000)
    req["insuplc_admdvs"] = HOSP_SH.admdvs
    ans, row = platform.handle(EMP_CERTNO, None, req, settle_ctx(req, HOSP_SH,
                                                                 in_scope(10_000)))
    assert ans["err_code"] == ErrorCode.INSURED_PLACE_MISMATCH
    assert_only_the_refusal_is_kept(row, ans)


def test_new_year_starts_from_zero_accumulators_and_the_deductible_applies_again() -> None:
    platform = InsuredPlatform(reference_data())
    _, row = settle(platform, None, EMP_CERTNO, "2026-06-01 10:00:00", 1, "V1",
                    in_scope(300_000))
    _, row = settle(platform, row, EMP_CERTNO, "2026-12-31 23:59:59", 5, "V2",
                    in_scope(100_000))
    assert row is not None
    # 2026: deductible 180,000 used up by V1; V2: 100,000 × 70 % = 70,000.
    assert row.ytd["2026"] == {"fund_11": 84_000 + 70_000, "dedc_11": 180_000}
    ans, row = settle(platform, row, EMP_CERTNO, "2027-01-01 00:00:00", 9, "V3",
                      in_scope(100_000))
    s = ans["output"]["setlinfo"]
    # 2027 starts from zero: the whole 100,000 is deductible again, so the fund pays 0.
    assert (s["act_pay_dedc"], s["hifp_pay"]) == (100_000, 0)
    assert row is not None
    assert row.ytd["2027"] == {"dedc_11": 100_000}  # an accumulator at zero is not kept
    assert row.ytd["2026"] == {"fund_11": 154_000, "dedc_11": 180_000}  # untouched


def test_cross_province_unfiled_employee_gets_the_cut_ratio() -> None:
    platform = InsuredPlatform(reference_data())
    # The Beijing employee (not filed) at the level-1 Shanghai hospital, deductible paid:
    # 310 outpatient level 1 90 % − 10 % unfiled cut = 80 %.
    _, row = settle(platform, None, EMP_CERTNO, "2026-03-01 10:00:00", 1, "V1",
                    in_scope(180_000), hospital=HOSP_SH)
    ans, _ = settle(platform, row, EMP_CERTNO, "2026-03-02 10:00:00", 5, "V2",
                    in_scope(10_000), hospital=HOSP_SH)
    assert ans["output"]["setlinfo"]["hifp_pay"] == 8_000
    assert ans["output"]["setlinfo"]["mdtrtarea_admvs"] == HOSP_SH.admdvs


def test_resident_settlement_never_touches_an_account() -> None:
    platform = InsuredPlatform(reference_data())
    ans, row = settle(platform, None, RES_CERTNO, "2026-03-01 10:00:00", 1, "V1",
                      in_scope(30_000), hospital=HOSP_SH)
    s = ans["output"]["setlinfo"]
    # 390 outpatient level 1: deductible 100 yuan = 10,000; (30,000 − 10,000) × 60 % = 12,000
    assert (s["act_pay_dedc"], s["hifp_pay"], s["acct_pay"], s["psn_cash_pay"], s["balc"]) == (
        10_000, 12_000, 0, 18_000, 0)
    assert row is not None and row.balance == 0


def test_an_employee_who_declines_the_account_pays_in_cash_and_keeps_the_balance() -> None:
    """A 2207 with `acct_used_flag` "0" (the wire's, not only the policy engine's flag: a
    conformance review found only the oracle's comparison would notice it ignored)."""
    platform = InsuredPlatform(reference_data())
    ans, row = settle(platform, None, EMP_CERTNO, "2026-03-01 10:00:00", 1, "110100V1",
                      in_scope(300_000), acct_used_flag="0")
    s = ans["output"]["setlinfo"]
    # as the first test's settlement (hifp 84,000), its 216,000 in cash, the account untouched
    assert (s["hifp_pay"], s["acct_pay"], s["psn_cash_pay"], s["balc"]) == (
        84_000, 0, 216_000, EMPLOYEE_BALANCE)
    assert row is not None and row.balance == EMPLOYEE_BALANCE


def test_fund_stops_paying_once_the_annual_cap_is_reached() -> None:
    platform = InsuredPlatform(reference_data())
    ans, row = settle(platform, None, RES_CERTNO, "2026-03-01 10:00:00", 1, "V1",
                      in_scope(600_000), hospital=HOSP_SH)
    # 390 outpatient level 1: (600,000 − 10,000) × 60 % = 354,000 due, but the annual cap is
    # 3,000 yuan = 300,000 fen: the fund pays 300,000.
    assert ans["output"]["setlinfo"]["hifp_pay"] == 300_000
    ans, row = settle(platform, row, RES_CERTNO, "2026-05-01 10:00:00", 5, "V2",
                      in_scope(50_000), hospital=HOSP_SH)
    s = ans["output"]["setlinfo"]
    assert (s["hifp_pay"], s["psn_part_amt"], s["psn_cash_pay"]) == (0, 50_000, 50_000)
    assert row is not None and row.accumulator("2026", "fund_11") == 300_000


# -- accumulators over random sequences of settlements -----------------------------------------

settlement_steps = st.lists(
    st.tuples(
        st.sampled_from([EMP_CERTNO, RETIRED_CERTNO, RES_CERTNO]),
        st.sampled_from(["2026-02-01 09:00:00", "2026-11-30 15:00:00", "2027-01-05 08:30:00",
                         "2027-07-07 12:00:00"]),
        st.sampled_from([HOSP_BJ, HOSP_SH]),
        st.integers(0, 200_000),  # own pay
        st.integers(0, 1_500_000),  # in scope
        st.sampled_from(["0", "1"]),
    ),
    min_size=1, max_size=25)


@PROPS
@given(settlement_steps)
def test_accumulators_equal_the_sum_of_settlements_and_never_exceed_caps(
        steps: list[tuple[str, str, Hospital, int, int, str]]) -> None:
    ref = reference_data()
    platform = InsuredPlatform(ref)
    rows: dict[str, PersonRow] = {}
    fund: dict[tuple[str, str], int] = defaultdict(int)
    dedc: dict[tuple[str, str], int] = defaultdict(int)
    acct: dict[str, int] = defaultdict(int)
    for n, (cert, inf_time, hospital, own, scope, acct_flag) in enumerate(steps):
        fees = FeeTotals(own + scope, own, 0, 0, scope)
        ans, row = settle(platform, rows.get(cert), cert, inf_time, n, f"V{n}", fees,
                          hospital, acct_flag)
        assert ans["infcode"] == 0, ans
        assert row is not None
        rows[cert] = row
        s = ans["output"]["setlinfo"]
        year = inf_time[:4]
        fund[cert, year] += s["hifp_pay"]
        dedc[cert, year] += s["act_pay_dedc"]
        acct[cert] += s["acct_pay"]
        assert s["balc"] >= 0
    for cert, row in rows.items():
        e = ref.enrollments[cert]
        rule = ref.policies[e.province].rule(e.insutype, Category.OUTPATIENT)
        for year in ("2026", "2027"):
            assert row.accumulator(year, "fund_11") == fund[cert, year]
            assert row.accumulator(year, "dedc_11") == dedc[cert, year]
            assert row.accumulator(year, "fund_11") <= rule.annual_cap
            assert row.accumulator(year, "dedc_11") <= rule.deductible[0]
        assert row.balance == e.balance - acct[cert]
        assert row.balance >= 0
        # a record is forgotten once a request of the person's from the same hospital comes
        # a window after it (by the day; each hospital's clock is its own), or once it is
        # past the person's horizon; the money it moved is not
        sent = [(step[1], step[2].fixmedins_code) for step in steps if step[0] == cert]
        clocks: dict[str, str] = {}
        for t, code in sent:
            clocks[code] = max(clocks.get(code, ""), t[:10] + " 00:00:00")
        assert len(row.settlements) == sum(
            all(inf_time_stamp(t) >= day_cutoff(later) for later, by in sent[i:] if by == code)
            and inf_time_stamp(t) >= horizon(clocks)
            for i, (t, code) in enumerate(sent))
