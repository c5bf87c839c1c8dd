"""The person aggregate on the insured side: one row per person holds everything a
settlement changes, so one row write per message makes each change atomic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from settlement.policy import Category
from settlement.retention import forget_answers


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

    def forget_before(self, before: str) -> None:
        """Drop answers and reversals older than `before` (yyyyMMddHHmmss); balance,
        accumulators and settlement records stay (see settlement/retention.py)."""
        forget_answers(self.answers, before)
        forget_answers(self.reversed, before)

    def to_dict(self) -> dict[str, Any]:
        return {"balance": self.balance, "ytd": self.ytd, "settlements": self.settlements,
                "answers": self.answers, "reversed": self.reversed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PersonRow:
        return cls(d["balance"], d["ytd"], d["settlements"], d["answers"], d.get("reversed", {}))
