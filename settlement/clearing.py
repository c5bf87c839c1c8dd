"""Monthly inter-province clearing with prepayments (先预付后清算, DOMAIN.md §5).

Every cross-province fund payment is cleared in the calendar month of its event: a settlement
in the month it was settled, a cancellation or reversal in the month it happened — so a
cancellation after its month was cleared is netted in the next month. Events are counted once
each (by setl_id and event), whatever duplicates or order they arrive in.

Prepayment (预付金): each province holds `prepayment_months` (a *parameter* per province,
default 2) × its expected monthly payable at the national platform. Expected monthly payable
is a *parameter* per province; where none is given, the largest monthly payable cleared so
far stands for it (so the target follows the province's real volume). Clearing draws a net
payer's prepayment down by its net payable (net receivers are paid out); a prepayment below
zero is a shortfall. When the prepayment falls below half of its target, the top-up that
brings it back to target is due, and counted as paid before the next month.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from settlement.ledger import SettlementEvent


@dataclass(frozen=True, slots=True)
class ClearingPolicy:
    """The prepayment's parameters (a policy file's `prepayment_months` and
    `expected_monthly_payable`, settlement/parameters.py): months for every province unless
    `months` names its own, and the expected payable of the provinces that have one."""

    prepayment_months: int = 2
    expected_monthly_payable: Mapping[str, int] = field(default_factory=dict)
    months: Mapping[str, int] = field(default_factory=dict)

    def months_for(self, province: str) -> int:
        return self.months.get(province, self.prepayment_months)


@dataclass(frozen=True, slots=True)
class ProvincePosition:
    province: str
    payable: int  # what it owes other provinces this month (as the insured province)
    receivable: int  # what other provinces owe it (as the treatment province)
    prepayment_target: int
    prepayment_before: int
    prepayment_after: int
    top_up_due: int

    @property
    def net(self) -> int:
        return self.receivable - self.payable


@dataclass(frozen=True, slots=True)
class ClearingStatement:
    month: str  # yyyy-MM
    pairs: dict[tuple[str, str], int]  # (insured province, treatment province) -> fen
    provinces: dict[str, ProvincePosition]
    hospitals: dict[str, int]  # fixmedins_code -> what its treatment-province agency owes it

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "pairs": [{"payer": a, "payee": b, "amount": n}
                      for (a, b), n in sorted(self.pairs.items())],
            "provinces": [{"province": p.province, "payable": p.payable,
                           "receivable": p.receivable, "net": p.net,
                           "prepayment_target": p.prepayment_target,
                           "prepayment_before": p.prepayment_before,
                           "prepayment_after": p.prepayment_after, "top_up_due": p.top_up_due}
                          for p in sorted(self.provinces.values(), key=lambda p: p.province)],
            "hospitals": [{"fixmedins_code": h, "amount": n}
                          for h, n in sorted(self.hospitals.items())],
        }


def distinct_events(events: Iterable[SettlementEvent]) -> list[SettlementEvent]:
    """Each event (its `event_id`) once, whatever was duplicated or replayed."""
    seen: dict[str, SettlementEvent] = {}
    for e in events:
        seen.setdefault(e.event_id, e)
    return list(seen.values())


def clear(events: Iterable[SettlementEvent],
          policy: ClearingPolicy | None = None) -> list[ClearingStatement]:
    """The statements of every month that has events, in order, with prepayments carried
    from one month to the next."""
    policy = policy or ClearingPolicy()
    by_month: dict[str, list[SettlementEvent]] = defaultdict(list)
    for e in distinct_events(events):
        by_month[e.time[:7]].append(e)
    statements = []
    expected: dict[str, int] = dict(policy.expected_monthly_payable)
    prepayment: dict[str, int] = {}  # from the first month a province has a target
    seen: set[str] = set()  # every province with a statement so far: in each one after
    for month in sorted(by_month):
        pairs: dict[tuple[str, str], int] = defaultdict(int)
        hospitals: dict[str, int] = defaultdict(int)
        for e in by_month[month]:
            hospitals[e.fixmedins_code] += e.signed_amount
            if e.cross_province:
                pairs[(e.insured_province, e.treatment_province)] += e.signed_amount
        payable: dict[str, int] = defaultdict(int)
        receivable: dict[str, int] = defaultdict(int)
        for (payer, payee), amount in pairs.items():
            payable[payer] += amount
            receivable[payee] += amount
        positions = {}
        for prov in sorted(set(payable) | set(receivable) | seen):
            if prov not in policy.expected_monthly_payable:
                expected[prov] = max(expected.get(prov, 0), payable[prov])
            target = policy.months_for(prov) * expected[prov]
            # deposited at its target the first month it has one: a province seen first as
            # a receiver only (no payable, so no target) has nothing deposited until then
            before = prepayment.get(prov, target)
            after = before - max(0, payable[prov] - receivable[prov])
            top_up = target - after if 2 * after < target else 0
            positions[prov] = ProvincePosition(prov, payable[prov], receivable[prov], target,
                                               before, after, top_up)
            if prov in prepayment or target:  # with no target, nothing is held or due
                prepayment[prov] = after + top_up
        seen |= positions.keys()
        statements.append(ClearingStatement(month, dict(pairs), positions, dict(hospitals)))
    return statements
