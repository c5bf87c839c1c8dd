"""Hospital reconciliation and clearing application (DOMAIN.md §5): 3201 compares a hospital's
totals for a period with the platform's, 3202 lists the settlements either side is missing
(detailing those the hospital lacks, so that it can post them), 3203 is a treatment-province
agency's application for the month's clearing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from messages.codes import Infno
from messages.envelope import ok_answer
from settlement.clearing import clear
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
    hospital) per total, named as the request names it."""
    diffs = {field: getattr(platform, name) - getattr(hospital, name)
             for field, name in (("fixmedins_setl_cnt", "count"),
                                 ("medfee_sumamt", "medfee_sumamt"),
                                 ("fund_pay_sumamt", "fund_pay_sumamt"), ("acct_pay", "acct_pay"))}
    balanced = not any(diffs.values())
    return {"stmt_rslt": BALANCED if balanced else UNBALANCED,
            "stmt_rslt_dscr": "平" if balanced else "不平",
            "differences": {k: v for k, v in diffs.items() if v}}


def reconcile_details(hospital_setl_ids: Iterable[str], platform: dict[str, SettlementEvent],
                      undone: Iterable[SettlementEvent] = ()) -> dict[str, Any]:
    """3202: the settlements only the platform has (with their details), those only the
    hospital has, and the period's cancellations and reversals (`undone`): a hospital that
    lost a cancellation's answer holds as in force a settlement the platform undid, and
    posts the undoing from them (DOMAIN.md is silent; docs/design.md). `platform`: the
    settle events in force, by setl_id."""
    hosp = set(hospital_setl_ids)
    missing = sorted(set(platform) - hosp)
    return {"missing_at_hospital": missing,
            "missing_on_platform": sorted(hosp - set(platform)),
            "details": [settlement_detail(platform[s]) for s in missing],
            "undone": [undoing_detail(e) for e in
                       sorted(undone, key=lambda e: (e.time, e.setl_id, e.event))]}


def settlement_detail(e: SettlementEvent) -> dict[str, Any]:
    return {"setl_id": e.setl_id, "setl_time": e.time, "insuplc_admdvs": e.insuplc_admdvs,
            "mdtrtarea_admvs": e.mdtrtarea_admvs, "medfee_sumamt": e.medfee_sumamt,
            "hifp_pay": e.hifp_pay, "fund_pay_sumamt": e.fund_pay_sumamt,
            "acct_pay": e.acct_pay}


def undoing_detail(e: SettlementEvent) -> dict[str, Any]:
    """A cancellation or reversal as 3202 details it: the settlement it undid (`setl_id`, its
    provinces and amounts), the kind of undoing and the undoing's own time (`event_time`),
    which dates it in the books. Not the settlement's time: an undoing's event does not
    carry it, and the settlement may lie outside the period asked about."""
    detail = settlement_detail(e)
    del detail["setl_time"]
    return {**detail, "event": e.event, "event_time": e.time}


def event_of_detail(fixmedins_code: str, d: dict[str, Any]) -> SettlementEvent:
    """The event a hospital posts from a 3202 detail it was missing: a settlement's, or a
    cancellation's or reversal's (`undoing_detail`)."""
    time = d["event_time"] if "event_time" in d else d["setl_time"]
    return SettlementEvent(d["setl_id"], d.get("event", "settle"), time, fixmedins_code,
                           d["insuplc_admdvs"], d["mdtrtarea_admvs"], d["hifp_pay"],
                           d["medfee_sumamt"], d["fund_pay_sumamt"], d["acct_pay"])


def platform_totals(events: Iterable[SettlementEvent], fixmedins_code: str, begndate: str,
                    enddate: str
                    ) -> tuple[Totals, dict[str, SettlementEvent], list[SettlementEvent]]:
    """The platform's view of one hospital over [begndate, enddate] (yyyy-MM-dd, by event
    date): totals net of cancellations and reversals in the period, the settle events of
    the period still in force at its end, by setl_id, and the period's undoings."""
    count = medfee = fund = acct = 0
    settled: dict[str, SettlementEvent] = {}
    undoings: list[SettlementEvent] = []
    for e in events:
        if e.fixmedins_code != fixmedins_code or not begndate <= e.time[:10] <= enddate:
            continue
        count += e.sign
        medfee += e.sign * e.medfee_sumamt
        fund += e.sign * e.fund_pay_sumamt
        acct += e.sign * e.acct_pay
        if e.event == "settle":
            settled[e.setl_id] = e
        else:
            undoings.append(e)
    undone = {e.setl_id for e in undoings}
    return Totals(count, medfee, fund, acct), \
        {k: v for k, v in settled.items() if k not in undone}, undoings


def answer_clearing_application(req: dict[str, Any],
                                events: Iterable[SettlementEvent]) -> dict[str, Any]:
    """3203: accepted (受理) when the agency's sum equals what the national clearing
    statement of that month makes its province receivable, and its count the net count of
    those settlements (an application is for both); either way, what it clears."""
    inp = req["input"]
    month = f"{inp['clr_ym'][:4]}-{inp['clr_ym'][4:]}"
    province = inp["clr_optins"]
    in_month = [e for e in events if e.time[:7] == month]
    statement = next(iter(clear(in_month)), None)
    position = statement.provinces.get(province) if statement else None
    fund_clr_sum = position.receivable if position else 0
    count = sum(e.sign for e in in_month
                if e.cross_province and e.treatment_province == province)
    diffs = {k: v for k, v in (("fund_appy_sum", fund_clr_sum - inp["fund_appy_sum"]),
                               ("setl_cnt", count - inp["setl_cnt"])) if v}
    owed: dict[str, int] = {}  # what the agency passes on of what it clears: cross-province
    for e in in_month:
        if e.cross_province and e.treatment_province == province:
            owed[e.fixmedins_code] = owed.get(e.fixmedins_code, 0) + e.signed_amount
    hospitals = [{"fixmedins_code": h, "amount": n} for h, n in sorted(owed.items())]
    return ok_answer(req["msgid"], {
        "clr_ym": inp["clr_ym"], "clr_optins": province, "appy_stas": "2" if diffs else "1",
        "fund_appy_sum": inp["fund_appy_sum"], "fund_clr_sum": fund_clr_sum,
        "setl_cnt": count, "differences": diffs, "hospitals": hospitals})


def period_of(req: dict[str, Any]) -> tuple[str | None, str, str]:
    """Whose money events, over which days (yyyy-MM-dd, inclusive), a validated 3201, 3202 or
    3203 is answered from: a hospital's over its statement period, or every hospital's over
    the month an agency applies for (3203)."""
    inp = req["input"]
    if req["infno"] == Infno.CLEARING_APPLICATION:
        month = f"{inp['clr_ym'][:4]}-{inp['clr_ym'][4:]}"
        return None, f"{month}-01", f"{month}-31"
    return req["fixmedins_code"], inp["stmt_begndate"], inp["stmt_enddate"]


class ClearingIndex:
    """Which money events the national platform holds, by hospital and day, as their ids
    only. The events stay in the clearing table (on disk with `--store rocksdb`) and are read
    when a hospital reconciles a period or an agency applies for a month's clearing: ~80 bytes
    a settlement, where keeping them decoded took ~0.9 KiB (docs/performance.md)."""

    def __init__(self) -> None:
        self._ids: dict[str, dict[str, list[bytes]]] = {}  # hospital -> day -> event ids

    def add(self, event_id: bytes, event: SettlementEvent) -> None:
        """A new event (the caller keeps each id once)."""
        days = self._ids.setdefault(event.fixmedins_code, {})
        days.setdefault(event.time[:10], []).append(event_id)

    def clear(self) -> None:
        self._ids.clear()

    def ids(self, fixmedins_code: str | None, first_day: str, last_day: str) -> list[bytes]:
        """The ids of one hospital's events (None: every hospital's) dated within the days."""
        codes = sorted(self._ids) if fixmedins_code is None else [fixmedins_code]
        return [i for code in codes for day, ids in sorted(self._ids.get(code, {}).items())
                if first_day <= day <= last_day for i in ids]


def answer_reconciliation(req: dict[str, Any],
                          events: Iterable[SettlementEvent]) -> dict[str, Any]:
    """3201 (totals) or 3202 (details) of a hospital, or 3203 of an agency, answered from the
    platform's events."""
    if req["infno"] == Infno.CLEARING_APPLICATION:
        return answer_clearing_application(req, events)
    inp = req["input"]
    totals, in_force, undoings = platform_totals(events, req["fixmedins_code"],
                                                 inp["stmt_begndate"], inp["stmt_enddate"])
    if req["infno"] == Infno.RECONCILE_TOTALS:
        hospital = Totals(inp["fixmedins_setl_cnt"], inp["medfee_sumamt"],
                          inp["fund_pay_sumamt"], inp["acct_pay"])
        return ok_answer(req["msgid"], reconcile_totals(hospital, totals))
    return ok_answer(req["msgid"], reconcile_details(inp["setl_ids"], in_force, undoings))
