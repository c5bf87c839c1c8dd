"""Hospital reconciliation (DOMAIN.md §5): 3201 compares a hospital's totals for a period with
the platform's, 3202 lists the settlements either side is missing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from messages.codes import Infno
from messages.envelope import ok_answer
from settlement.ledger import SettlementEvent

BALANCED, UNBALANCED = "0", "1"  # NHSA stmt_rslt: 0 平, 1 不平


@dataclass(frozen=True, slots=True)
class Totals:
    count: int = 0
    medfee_sumamt: int = 0
    fund_pay_sumamt: int = 0
    acct_pay: int = 0

    @classmethod
    def of(cls, setlinfos: Iterable[dict[str, Any]]) -> Totals:
        items = list(setlinfos)
        return cls(len(items), sum(s["medfee_sumamt"] for s in items),
                   sum(s["fund_pay_sumamt"] for s in items), sum(s["acct_pay"] for s in items))


def reconcile_totals(hospital: Totals, platform: Totals) -> dict[str, Any]:
    """3201: balanced (平) when every total agrees; otherwise the differences (platform −
    hospital) per total."""
    diffs = {name: getattr(platform, name) - getattr(hospital, name)
             for name in ("count", "medfee_sumamt", "fund_pay_sumamt", "acct_pay")}
    balanced = not any(diffs.values())
    return {"stmt_rslt": BALANCED if balanced else UNBALANCED,
            "stmt_rslt_dscr": "平" if balanced else "不平",
            "differences": {k: v for k, v in diffs.items() if v}}


def reconcile_details(hospital_setl_ids: Iterable[str],
                      platform_setl_ids: Iterable[str]) -> dict[str, list[str]]:
    """3202: the settlements only the platform has, and those only the hospital has."""
    hosp, plat = set(hospital_setl_ids), set(platform_setl_ids)
    return {"missing_at_hospital": sorted(plat - hosp),
            "missing_on_platform": sorted(hosp - plat)}


def platform_totals(events: Iterable[SettlementEvent], fixmedins_code: str, begndate: str,
                    enddate: str) -> tuple[Totals, set[str]]:
    """The platform's view of one hospital over [begndate, enddate] (yyyy-MM-dd, by event
    date): totals net of cancellations and reversals in the period, and the setl_ids settled
    in the period and still in force at its end."""
    count = medfee = fund = acct = 0
    settled: set[str] = set()
    undone: set[str] = set()
    for e in events:
        if e.fixmedins_code != fixmedins_code or not begndate <= e.time[:10] <= enddate:
            continue
        count += e.sign
        medfee += e.sign * e.medfee_sumamt
        fund += e.sign * e.fund_pay_sumamt
        acct += e.sign * e.acct_pay
        (settled if e.event == "settle" else undone).add(e.setl_id)
    return Totals(count, medfee, fund, acct), settled - undone


def answer_reconciliation(req: dict[str, Any],
                          events: Iterable[SettlementEvent]) -> dict[str, Any]:
    """3201 (totals) or 3202 (details) of a hospital, answered from the platform's events."""
    inp = req["input"]
    totals, in_force = platform_totals(events, req["fixmedins_code"], inp["stmt_begndate"],
                                       inp["stmt_enddate"])
    if req["infno"] == Infno.RECONCILE_TOTALS:
        hospital = Totals(inp["fixmedins_setl_cnt"], inp["medfee_sumamt"],
                          inp["fund_pay_sumamt"], inp["acct_pay"])
        return ok_answer(req["msgid"], reconcile_totals(hospital, totals))
    return ok_answer(req["msgid"], reconcile_details(inp["setl_ids"], in_force))
