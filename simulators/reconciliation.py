"""The hospitals' and agencies' side of reconciliation and clearing (DOMAIN.md §5).

Each hospital's HIS keeps books: the money events of the answers it saw (a lost answer is not
in them) and the settlements it posted later from a 3202's details.
- Every simulated day, once it is over (every visit that began by then has finished), each
  hospital that sent anything dated that day reconciles it: 3201 with its totals. If 不平, it
  sends 3202 with its settlements, posts those the platform details as missing at the hospital
  (the settlements whose answers it lost) and the cancellations of its settlements it did not
  know of (their answers lost), and sends 3201 again. If instead the platform is the
  one missing something (its money events trail the answers by a few hops), it asks again a
  second later.
- At the end of a run: per hospital, 3201 and 3202 over the whole period; per
  treatment-province agency and month, the clearing application 3203.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from messages.codes import SETTLEMENTS, TIMED_OUT, Infno
from messages.visitlog import VisitSession, make_msgid
from settlement.ledger import SettlementEvent, events_from_answers
from settlement.reconciliation import BALANCED, Totals, event_of_detail
from settlement.reference import agency_code
from settlement.retention import msgid_time

Keyed = tuple[str, dict[str, Any]]  # (message key, request)


@dataclass(slots=True)
class DayBook:
    """One hospital's money on one day (by event date), as its HIS reconciles it: totals net
    of the day's cancellations and reversals, the settlements made that day and those undone
    that day. Kept as totals and ids, not events: a long run's books grow by a settlement id
    a visit."""

    count: int = 0
    medfee_sumamt: int = 0
    fund_pay_sumamt: int = 0
    acct_pay: int = 0
    settled: set[str] = field(default_factory=set)
    undone: set[str] = field(default_factory=set)
    claims: dict[str, list[int]] = field(default_factory=dict)  # cross-province: treatment
    # province -> [fund amount, count], for the agencies' 3203

    def add(self, e: SettlementEvent) -> None:
        (self.settled if e.event == "settle" else self.undone).add(e.setl_id)
        self.count += e.sign
        self.medfee_sumamt += e.sign * e.medfee_sumamt
        self.fund_pay_sumamt += e.sign * e.fund_pay_sumamt
        self.acct_pay += e.sign * e.acct_pay
        if e.cross_province:
            claim = self.claims.setdefault(e.treatment_province, [0, 0])
            claim[0] += e.signed_amount
            claim[1] += e.sign


class HospitalBooks:
    """What each hospital's HIS has recorded, by fixmedins_code and day."""

    def __init__(self) -> None:
        self._days: dict[str, dict[str, DayBook]] = defaultdict(dict)
        self._undone: dict[str, set[tuple[str, str]]] = defaultdict(set)  # (setl_id, event)
        self._reversals_seen: dict[str, dict[str, str]] = defaultdict(dict)  # setl_id -> time
        self.admdvs: dict[str, str] = {}

    def _add(self, code: str, e: SettlementEvent) -> bool:
        """Each event once: a settlement by its id (its day is its settlement time's), an
        undoing by its id and kind whatever day a repeat of it is dated. False if the books
        had it."""
        days = self._days[code]
        if e.event == "settle":
            if e.setl_id in getattr(days.get(e.time[:10]), "settled", ()):
                return False
        elif (e.setl_id, e.event) in self._undone[code]:
            return False
        else:
            self._undone[code].add((e.setl_id, e.event))
        days.setdefault(e.time[:10], DayBook()).add(e)
        return True

    def record(self, session: VisitSession) -> None:
        """A finished visit: the events of the answers its HIS saw, and the reversals it saw
        undo a settlement whose answer it had lost (posted with it, should it learn of it)."""
        code = session.visit.fixmedins_code
        self.admdvs[code] = session.visit.mdtrtarea_admvs
        try:
            events = events_from_answers(code, session.exchanges(seen_only=True))
        except ValueError:  # a platform under test answered amounts that are not whole fen:
            events = []  # its books cannot hold them (`huimin verify` names the answer)
        for e in events:
            self._add(code, e)
        for msgid, infno, answers in session.exchanges(seen_only=True):
            ok = next((a for a in answers if a.get("infcode") == 0), None)
            if infno == Infno.REVERSAL and ok and ok["output"].get("reversed_setl_id"):
                self._reversals_seen[code][ok["output"]["reversed_setl_id"]] = msgid_time(msgid)

    def post(self, fixmedins_code: str, detail: dict[str, Any]) -> None:
        """A settlement the platform detailed in a 3202 answer: the hospital had lost it."""
        e = event_of_detail(fixmedins_code, detail)
        self._add(fixmedins_code, e)
        undone_at = self._reversals_seen[fixmedins_code].get(e.setl_id)
        if undone_at is not None:
            # dated as the platform dates it: never before what it undid (settlement/ledger.py)
            self._add(fixmedins_code, replace(e, event="reverse", time=max(undone_at, e.time)))

    def post_undoing(self, fixmedins_code: str, detail: dict[str, Any]) -> bool:
        """A cancellation or reversal a 3202 answer details (`undone`), posted if the books
        hold the settlement it undoes and not the undoing: the hospital had lost its answer
        (a `2208~`). True if posted."""
        e = event_of_detail(fixmedins_code, detail)
        if not any(e.setl_id in d.settled for d in self._days[fixmedins_code].values()):
            return False  # a settlement the hospital never held: nothing of it to undo
        return self._add(fixmedins_code, e)

    @property
    def hospitals(self) -> list[str]:
        return sorted(c for c, days in self._days.items() if days)

    def days(self, fixmedins_code: str) -> list[str]:
        return sorted(self._days.get(fixmedins_code, {}))

    def totals(self, fixmedins_code: str, begndate: str, enddate: str
               ) -> tuple[Totals, set[str]]:
        """Over [begndate, enddate], as the platform reckons it (`platform_totals`): totals
        net of what was undone in the period, and the settlements of the period still in
        force at its end."""
        days = [d for day, d in self._days.get(fixmedins_code, {}).items()
                if begndate <= day <= enddate]
        undone = set().union(*(d.undone for d in days))
        return Totals(sum(d.count for d in days), sum(d.medfee_sumamt for d in days),
                      sum(d.fund_pay_sumamt for d in days), sum(d.acct_pay for d in days)), \
            {s for d in days for s in d.settled if s not in undone}

    def claims(self) -> dict[tuple[str, str], list[int]]:
        """Cross-province settlements net, by (yyyy-MM, treatment province): [fund, count]."""
        out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for days in self._days.values():
            for day, d in days.items():
                for province, (amount, count) in d.claims.items():
                    claim = out[(day[:7], province)]
                    claim[0] += amount
                    claim[1] += count
        return out


def _request(sender: str, admdvs: str, infno: str, inf_time: str, seq: int,
             inp: dict[str, Any]) -> dict[str, Any]:
    return {"infno": infno, "msgid": make_msgid(sender, inf_time, seq), "mdtrtarea_admvs": admdvs,
            "insuplc_admdvs": "", "fixmedins_code": sender, "inf_time": inf_time, "input": inp}


def totals_request(books: HospitalBooks, code: str, begndate: str, enddate: str,
                   inf_time: str, seq: int) -> dict[str, Any]:
    totals, _ = books.totals(code, begndate, enddate)
    return _request(code, books.admdvs[code], Infno.RECONCILE_TOTALS, inf_time, seq, {
        "stmt_begndate": begndate, "stmt_enddate": enddate,
        "medfee_sumamt": totals.medfee_sumamt, "fund_pay_sumamt": totals.fund_pay_sumamt,
        "acct_pay": totals.acct_pay, "fixmedins_setl_cnt": totals.count})


def details_request(books: HospitalBooks, code: str, begndate: str, enddate: str,
                    inf_time: str, seq: int) -> dict[str, Any]:
    _, in_force = books.totals(code, begndate, enddate)
    return _request(code, books.admdvs[code], Infno.RECONCILE_DETAILS, inf_time, seq, {
        "stmt_begndate": begndate, "stmt_enddate": enddate, "setl_ids": sorted(in_force)})


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


@dataclass
class DayReconciliation:
    """One hospital reconciling one day: how it went."""

    fixmedins_code: str
    day: str
    attempts: int = 0  # 3201 sent
    first: str = ""  # stmt_rslt of the first 3201
    result: str = ""  # stmt_rslt of the last 3201
    posted: int = 0  # settlements posted from 3202 details (answers the HIS had lost)
    undoings_posted: int = 0  # cancellations posted from 3202 (their answers lost)
    #: their money, fen: medfee_sumamt, hifp_pay, acct_pay (the visits' results hold none of
    #: it: their HIS never saw the answer)
    posted_fen: list[int] = field(default_factory=lambda: [0, 0, 0])
    #: and the money the cancellations posted gave back, as their 3202 details give it
    undone_fen: list[int] = field(default_factory=lambda: [0, 0, 0])
    waited: int = 0  # times the platform was behind and the hospital asked again later
    #: an answer of the day was lost: its details are asked for even when its totals are 平
    #: (a lost cancellation and a lost settlement again of the same money left them 平 while
    #: the HIS held the wrong one in force)
    unsure: bool = False

    @property
    def balanced(self) -> bool:
        return self.result == BALANCED


def _plus_money(fen: list[int], detail: dict[str, Any]) -> list[int]:
    """`fen` (medfee_sumamt, hifp_pay, acct_pay) with a 3202 detail's money added; as it was
    if the detail's is not whole fen (`verify` names that)."""
    money = [detail.get(k) for k in ("medfee_sumamt", "hifp_pay", "acct_pay")]
    whole = [v for v in money if type(v) is int]
    return [a + b for a, b in zip(fen, whole, strict=True)] if len(whole) == 3 else fen


@dataclass
class DailyReconciler:
    """The hospitals' daily 3201/3202 conversation, driven by the hospital fleet's loop."""

    books: HospitalBooks
    max_attempts: int = 10
    retry_s: float = 1.0
    days: dict[tuple[str, str], DayReconciliation] = field(default_factory=dict)
    sent: int = 0
    answered: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (infno, answer)
    #: answers to a 3201/3202 answered before: processed again after a worker's restart or
    #: a rebalance (at-least-once delivery), counted apart, not acted on again
    answered_again: int = 0
    _active: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    _unsure: set[tuple[str, str]] = field(default_factory=set)  # (hospital, day)
    _pending: dict[str, tuple[DayReconciliation, str]] = field(default_factory=dict)  # by msgid
    _answered_msgids: set[str] = field(default_factory=set)
    _retries: list[tuple[float, str, str]] = field(default_factory=list)  # (when, code, day)

    def saw(self, request: dict[str, Any], lost: bool = False) -> None:
        """A hospital sent `request`: it is open on the request's day; with `lost`, its HIS
        will not see the answer, so it checks that day's details whatever its totals say."""
        self._active[request["inf_time"][:10]].add(request["fixmedins_code"])
        if lost:
            self._unsure.add((request["fixmedins_code"], request["inf_time"][:10]))

    @property
    def msgids(self) -> set[str]:
        """Of every 3201/3202 sent: answered, or still awaited."""
        return {a.get("inf_refmsgid", "") for _, a in self.answered} | set(self._pending)

    @property
    def open_days(self) -> list[str]:
        return sorted(self._active)

    @property
    def busy(self) -> bool:
        return bool(self._pending or self._retries)

    def owns(self, msgid: str) -> bool:
        return msgid in self._pending

    def answered_before(self, msgid: str) -> bool:
        return msgid in self._answered_msgids

    def close(self, day: str) -> list[Keyed]:
        """The day is over: every hospital open on it reconciles it."""
        out = []
        for code in sorted(self._active.pop(day, ())):
            rec = self.days.setdefault((code, day), DayReconciliation(code, day))
            rec.unsure = (code, day) in self._unsure
            out.append(self._totals(rec))
        return out

    def due(self, now: float) -> list[Keyed]:
        out = []
        while self._retries and self._retries[0][0] <= now:
            _, code, day = heapq.heappop(self._retries)
            out.append(self._totals(self.days[(code, day)]))
        return out

    def on_answer(self, answer: dict[str, Any], now: float) -> list[Keyed]:
        rec, infno = self._pending.pop(answer.get("inf_refmsgid", ""))
        self.answered.append((infno, answer))
        self._answered_msgids.add(answer.get("inf_refmsgid", ""))
        out = answer.get("output") or {}
        if answer.get("infcode") != 0:
            rec.result = "refused"
            return []
        if infno == Infno.RECONCILE_TOTALS:
            rec.result = out["stmt_rslt"]
            rec.first = rec.first or rec.result
            if rec.balanced and rec.unsure:
                return [self._details(rec)]
            if rec.balanced or rec.attempts >= self.max_attempts:
                return []
            return [self._details(rec)]
        for detail in out.get("details", []):
            self.books.post(rec.fixmedins_code, detail)
            rec.posted += 1
            rec.posted_fen = _plus_money(rec.posted_fen, detail)
        undone = 0
        for detail in out.get("undone", []):
            if self.books.post_undoing(rec.fixmedins_code, detail):
                undone += 1
                rec.undone_fen = _plus_money(rec.undone_fen, detail)
        rec.undoings_posted += undone
        if out.get("details") or undone:
            return [self._totals(rec)]
        if rec.balanced:  # asked for a day with a lost answer only: nothing was missing
            return []
        rec.waited += 1  # the platform has yet to see some of the hospital's settlements
        heapq.heappush(self._retries, (now + self.retry_s, rec.fixmedins_code, rec.day))
        return []

    def _totals(self, rec: DayReconciliation) -> Keyed:
        rec.attempts += 1
        req = totals_request(self.books, rec.fixmedins_code, rec.day, rec.day,
                             f"{_next_day(rec.day)} 01:00:00", 9_900 + rec.attempts)
        return self._send(rec, req)

    def _details(self, rec: DayReconciliation) -> Keyed:
        rec.unsure = False  # its details asked for: a lost answer's day is checked once
        req = details_request(self.books, rec.fixmedins_code, rec.day, rec.day,
                              f"{_next_day(rec.day)} 01:00:00", 9_950 + rec.attempts)
        return self._send(rec, req)

    def _send(self, rec: DayReconciliation, req: dict[str, Any]) -> Keyed:
        self._pending[req["msgid"]] = rec, req["infno"]
        self.sent += 1
        return rec.fixmedins_code, req


def closing_requests(books: HospitalBooks) -> list[Keyed]:
    """At the end of a run: per hospital 3201 and 3202 over the whole period it settled in;
    per treatment-province agency and month with cross-province settlements, 3203 for the
    amount its hospitals' books say the other provinces' funds owe them."""
    out: list[Keyed] = []
    for code in books.hospitals:
        days = books.days(code)
        inf_time = f"{days[-1]} 23:59:59"
        out.append((code, totals_request(books, code, days[0], days[-1], inf_time, 9_998)))
        out.append((code, details_request(books, code, days[0], days[-1], inf_time, 9_997)))
    for (month, province), (amount, count) in sorted(books.claims().items()):
        agency = agency_code(province)
        year, mon = int(month[:4]), int(month[5:])
        inf_time = f"{year + mon // 12}-{mon % 12 + 1:02d}-01 02:00:00"  # once the month closed
        out.append((agency, _request(agency, province, Infno.CLEARING_APPLICATION, inf_time,
                                     9_996, {"clr_ym": month.replace("-", ""),
                                             "clr_optins": province, "fund_appy_sum": amount,
                                             "setl_cnt": count})))
    return out


def settlements_to_post(sessions: Iterable[VisitSession]) -> int:
    """How many settlements the hospitals must post from 3202 details for their days to
    balance: those whose answers their HIS lost, unless reversed (2601) the same day."""
    n = 0
    for s in sessions:
        undone = {}
        for msgid, infno, answers in s.exchanges():
            ok = next((a for a in answers if a.get("infcode") == 0), None)
            if ok and infno == Infno.REVERSAL and ok["output"].get("reversed_setl_id"):
                undone[ok["output"]["reversed_setl_id"]] = msgid_time(msgid)[:10]
        for msgid, infno, answers in s.exchanges():
            ok = next((a for a in answers if a.get("infcode") == 0), None)
            if msgid in s.lost and infno in SETTLEMENTS and ok:
                setl = ok["output"]["setlinfo"]
                n += undone.get(setl["setl_id"]) != setl["setl_time"][:10]
    return n


def settlements_given_up(sessions: Iterable[VisitSession]) -> int:
    """Of `settlements_to_post`'s, the settlements a visit gave up on at its time-out that
    the platform carried out, answered late (`VisitSession.give_up`): not the HIS's, so
    posted from 3202, though an oracle, which never times out, does not count them."""
    n = 0
    for s in sessions:
        msgid = (s.failed or {}).get("inf_refmsgid", "")
        if (s.failed or {}).get("err_code") == TIMED_OUT and msgid in s.lost and \
                dict(s.sent).get(msgid) in SETTLEMENTS and \
                any(a.get("infcode") == 0 for a in s.answers.get(msgid, [])):
            n += 1
    return n
