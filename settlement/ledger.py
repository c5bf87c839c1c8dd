"""Double-entry postings for the money a settlement moves (DOMAIN.md §5). Every event posts
balanced lines — Σ debits = Σ credits by construction — and is identified by `setl_id` and
event, so a duplicated or replayed result never posts twice.

Accounts (all amounts integer fen):
    fund:<insured province>                      the insured province's fund, which pays
    interprov:<insured province>><treatment prov> what the insured province owes the
                                                  treatment province (cross-province only; a
                                                  credit balance: the sum of the clearing
                                                  statements' pairs, which national clearing
                                                  settles through the prepayments)
    agency:<treatment province>                   the treatment province's agency, which owes
                                                  the hospital; cross-province it pays ahead of
                                                  what the insured province owes it (a debit
                                                  balance)
    hospital:<fixmedins_code>                     what the hospital is owed
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from messages.codes import CANCELLATIONS, SETTLEMENTS, Infno
from messages.envelope import is_inf_time, province_of
from messages.transactions import MAX_FEN
from settlement.retention import msgid_time

Event = Literal["settle", "cancel", "reverse"]
EVENTS: frozenset[str] = frozenset(get_args(Event))
_TEXT_FIELDS = ("setl_id", "time", "fixmedins_code", "insuplc_admdvs", "mdtrtarea_admvs")
_FEN_FIELDS = ("hifp_pay", "medfee_sumamt", "fund_pay_sumamt", "acct_pay")


@dataclass(frozen=True, slots=True)
class Posting:
    """One line of an event's balanced entry."""

    account: str
    debit: int
    credit: int


@dataclass(frozen=True, slots=True)
class SettlementEvent:
    """What the money flow needs of a settlement, its cancellation or its reversal."""

    setl_id: str
    event: Event
    time: str  # yyyy-MM-dd HH:mm:ss of the event (not of the original settlement)
    fixmedins_code: str
    insuplc_admdvs: str
    mdtrtarea_admvs: str
    hifp_pay: int
    medfee_sumamt: int = 0  # the rest is for hospital reconciliation (3201)
    fund_pay_sumamt: int = 0
    acct_pay: int = 0

    def __post_init__(self) -> None:
        """Events are read back from a topic and from results files: one whose amount is not
        whole fen (100.5, "100") or past what an answer may hold, whose kind is unknown or
        whose time is no real time must be refused where it is read, not carried into
        clearing (a statement of month 2026-13), the ledger and the gauges."""
        if self.event not in EVENTS:
            raise ValueError("a settlement event of an unknown kind")
        for name in _TEXT_FIELDS:
            if type(getattr(self, name)) is not str:
                raise ValueError(f"a settlement event whose {name} is not text")
        for name in _FEN_FIELDS:
            amount = getattr(self, name)
            if type(amount) is not int or not 0 <= amount <= MAX_FEN:
                raise ValueError(f"a settlement event whose {name} is not whole fen from 0 "
                                 "to ¥1 billion")  # MAX_FEN
        if not is_inf_time(self.time):
            raise ValueError("a settlement event whose time is not yyyy-MM-dd HH:mm:ss")

    @property
    def event_id(self) -> str:
        """What makes an event one: a settlement's settling, cancelling or reversing happens
        once, however often its message is duplicated or replayed (clearing, the ledger and
        the national clearing table all keep each event_id once)."""
        return f"{self.setl_id}:{self.event}"

    @property
    def sign(self) -> int:
        return 1 if self.event == "settle" else -1

    @property
    def insured_province(self) -> str:
        return province_of(self.insuplc_admdvs)

    @property
    def treatment_province(self) -> str:
        return province_of(self.mdtrtarea_admvs)

    @property
    def cross_province(self) -> bool:
        return self.insured_province != self.treatment_province

    @property
    def signed_amount(self) -> int:
        """The fund payment this event adds: positive to settle, negative to undo."""
        return self.hifp_pay if self.event == "settle" else -self.hifp_pay


def postings_for(e: SettlementEvent) -> list[Posting]:
    """Balanced lines: the fund pays, and the agency of the treatment province owes the
    hospital. Cross-province the fund's payment is what its province owes the treatment
    province (DOMAIN.md §5) until clearing, so that leg ends in `interprov`, not in the
    agency. An undo posts the same lines the other way round."""
    amount = e.hifp_pay
    if amount == 0:
        return []
    legs: list[tuple[str, str]] = []  # (debited account, credited account)
    hospital, agency = f"hospital:{e.fixmedins_code}", f"agency:{e.treatment_province}"
    if e.cross_province:
        owed = f"interprov:{e.insured_province}>{e.treatment_province}"
        legs = [(f"fund:{e.insured_province}", owed), (agency, hospital)]
    else:
        legs = [(f"fund:{e.insured_province}", agency), (agency, hospital)]
    lines = []
    for debited, credited in legs:
        if e.event != "settle":
            debited, credited = credited, debited
        lines += [Posting(debited, amount, 0), Posting(credited, 0, amount)]
    return lines


@dataclass
class Ledger:
    """Each event's postings applied once (by its event id: a duplicate or a replay posts
    nothing), with account balances."""

    balances: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    applied: set[str] = field(default_factory=set)
    debits: int = 0
    credits: int = 0

    def post(self, events: Iterable[SettlementEvent]) -> None:
        for e in events:
            key = e.event_id
            if key in self.applied:
                continue  # a duplicate or a replay: posted already
            self.applied.add(key)
            for p in postings_for(e):
                self.balances[p.account] += p.debit - p.credit
                self.debits += p.debit
                self.credits += p.credit

    @property
    def balanced(self) -> bool:
        return self.debits == self.credits and sum(self.balances.values()) == 0

    def as_dict(self) -> dict[str, Any]:
        """The trial balance: Σ debits, Σ credits, the events posted (settlements,
        cancellations, reversals: each some balanced lines) and each account's balance (debit
        − credit, fen; a hospital's is negative: it is owed), accounts with a zero balance
        left out."""
        return {"balanced": self.balanced, "debits": self.debits, "credits": self.credits,
                "events_posted": len(self.applied),
                "balances": {a: b for a, b in sorted(self.balances.items()) if b}}


def events_from_answers(fixmedins_code: str,
                        exchanges: Iterable[tuple[str, str, list[dict[str, Any]]]]
                        ) -> list[SettlementEvent]:
    """The money events in one hospital's answers, `(msgid, infno, answers)` in the order sent:
    settlements, their cancellations, and 2601 reversals that undid a settlement."""
    settled: dict[str, dict[str, Any]] = {}
    events = []
    for msgid, infno, answers in exchanges:
        ok = next((a for a in answers if a.get("infcode") == 0), None)
        if ok is None:
            continue
        out = ok["output"]
        if infno in SETTLEMENTS:
            s = out["setlinfo"]
            settled[s["setl_id"]] = s
            events.append(_event(s, "settle", s["setl_time"], fixmedins_code))
        elif infno in CANCELLATIONS and out["setlinfo"]["init_setl_id"] in settled:
            c = out["setlinfo"]
            events.append(_event(settled[c["init_setl_id"]], "cancel", c["setl_time"],
                                 fixmedins_code))
        elif infno == Infno.REVERSAL and out.get("result") == "undone" \
                and out.get("reversed_setl_id") in settled:
            s = settled[out["reversed_setl_id"]]  # never cleared before what it undoes
            events.append(_event(s, "reverse", max(msgid_time(msgid), s["setl_time"]),
                                 fixmedins_code))
    return events


def _event(s: dict[str, Any], event: Event, time: str, fixmedins_code: str) -> SettlementEvent:
    return SettlementEvent(s["setl_id"], event, time, fixmedins_code, s["insuplc_admdvs"],
                           s["mdtrtarea_admvs"], s["hifp_pay"], s["medfee_sumamt"],
                           s["fund_pay_sumamt"], s["acct_pay"])
