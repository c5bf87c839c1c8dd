"""The hospitals' side of reconciliation: each hospital sums its own settlements (from the
answers it received) per day and sends 3201 for every day it settled something, then one 3202
with the settlements it holds for the whole period."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from messages.codes import Infno
from messages.visitlog import VisitSession, make_msgid
from settlement.ledger import SettlementEvent, events_from_answers
from settlement.reconciliation import platform_totals


def reconciliation_requests(sessions: Iterable[VisitSession]) -> list[tuple[str, dict[str, Any]]]:
    """(key, request) pairs: 3201 per hospital and day with settlements, 3202 per hospital."""
    events: dict[str, list[SettlementEvent]] = defaultdict(list)
    admdvs: dict[str, str] = {}
    for s in sessions:
        code = s.visit.fixmedins_code
        admdvs[code] = s.visit.mdtrtarea_admvs
        events[code] += events_from_answers(code, [(m, i, s.answers.get(m, []))
                                                   for m, i in s.sent])
    out = []
    for code in sorted(events):
        days = sorted({e.time[:10] for e in events[code]})
        for day in days:
            totals, _ = platform_totals(events[code], code, day, day)
            out.append((code, _request(code, admdvs[code], Infno.RECONCILE_TOTALS, day, 9_998, {
                "stmt_begndate": day, "stmt_enddate": day,
                "medfee_sumamt": totals.medfee_sumamt,
                "fund_pay_sumamt": totals.fund_pay_sumamt, "acct_pay": totals.acct_pay,
                "fixmedins_setl_cnt": totals.count})))
        if days:
            _, in_force = platform_totals(events[code], code, days[0], days[-1])
            out.append((code, _request(code, admdvs[code], Infno.RECONCILE_DETAILS, days[-1],
                                       9_997, {"stmt_begndate": days[0],
                                               "stmt_enddate": days[-1],
                                               "setl_ids": sorted(in_force)})))
    return out


def _request(code: str, admdvs: str, infno: str, day: str, seq: int,
             inp: dict[str, Any]) -> dict[str, Any]:
    inf_time = f"{day} 23:59:59"
    return {"infno": infno, "msgid": make_msgid(code, inf_time, seq), "mdtrtarea_admvs": admdvs,
            "insuplc_admdvs": "", "fixmedins_code": code, "inf_time": inf_time, "input": inp}
