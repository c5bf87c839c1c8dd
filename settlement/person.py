"""The person aggregate on the insured side: one row per person holds everything a
settlement changes, so one row write per message makes each change atomic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from messages.envelope import inf_time_stamp
from settlement.policy import Category
from settlement.retention import advance, day_cutoff, forget_answers, msgid_stamp


def ytd_key(kind: str, category: Category) -> str:
    """Accumulator names: `fund_11`, `fund_21` (fund paid), `dedc_11` (deductible paid)."""
    return f"{kind}_{category.value}"


@dataclass(slots=True)
class PersonRow:
    """Mutable state of one insured person. Plain data, serialisable as a JSON object."""

    balance: int
    ytd: dict[str, dict[str, int]] = field(default_factory=dict)  # year -> accumulator -> fen
    settlements: dict[str, dict[str, Any]] = field(default_factory=dict)  # setl_id -> setlinfo
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # msgid -> answer
    #: omsgid -> [msgid, oinfno] of a 2601 that came before it (settlement/reversals.py)
    reversed: dict[str, Any] = field(default_factory=dict)
    #: fixmedins_code -> the day of its newest request this side was asked ("yyyy-MM-dd
    #: 00:00:00"; settlement/retention.py `advance`)
    clocks: dict[str, str] = field(default_factory=dict)

    def accumulator(self, year: str, name: str) -> int:
        return self.ytd.get(year, {}).get(name, 0)

    def add(self, year: str, name: str, fen: int) -> None:
        """Add to an accumulator; one back at zero disappears, so undoing a settlement leaves
        the row exactly as if it had never happened."""
        acc = self.ytd.setdefault(year, {})
        total = acc.get(name, 0) + fen
        if total:
            acc[name] = total
        else:
            acc.pop(name, None)
            if not acc:
                del self.ytd[year]

    def forget_before(self, before: str, sender: str = "") -> None:
        """Drop the answers, reversals and settlement records of hospital `sender` ("": of
        every one) older than `before` (yyyyMMddHHmmss; a record by its last change: made,
        cancelled or reversed); balance and accumulators stay (see settlement/retention.py).
        A settlement past the window can no longer be cancelled or reversed (its visit is
        forgotten too, E4001; a 2601 of it is E4012), and a row that kept them all outgrew a
        record after ~1,600."""
        forget_answers(self.answers, before, sender)
        forget_answers(self.reversed, before, sender)
        for setl_id in [k for k, s in self.settlements.items() if _last_change(s) < before
                        and s["msgid"].startswith(sender)]:
            del self.settlements[setl_id]

    def forget_past(self, sender: str, inf_time: str) -> None:
        """Forget what hospital `sender` did before the window of its request dated
        `inf_time` (by the day, as the treatment side refuses by its day clock), and what
        every hospital did before the person's horizon (settlement/retention.py)."""
        self.forget_before(day_cutoff(inf_time), sender)
        if before := advance(self.clocks, sender, inf_time):
            self.forget_before(before)

    def to_dict(self) -> dict[str, Any]:
        return {"balance": self.balance, "ytd": self.ytd, "settlements": self.settlements,
                "answers": self.answers, "reversed": self.reversed, "clocks": self.clocks}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PersonRow:
        return cls(d["balance"], d["ytd"], d["settlements"], d["answers"], d.get("reversed", {}),
                   d.get("clocks", {}))


def _last_change(setl: dict[str, Any]) -> str:
    """When a settlement record last changed (yyyyMMddHHmmss): made, cancelled, reversed."""
    return max([inf_time_stamp(setl["setl_time"]), *(msgid_stamp(setl[k]) for k in (
        "cancel_msgid", "reverse_msgid") if k in setl)])
