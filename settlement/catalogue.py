"""Step 1 of DOMAIN.md §3: classify each fee item with the treatment-province catalogue
(就医地目录)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from settlement.money import BP_ONE, apply_bp


class ItemClass(StrEnum):
    """甲 A: fully covered; 乙 B: covered after a self-pay share; 丙 C: not covered."""

    A = "A"
    B = "B"
    C = "C"


#: NHSA `chrgitm_lv` codes: 01 甲, 02 乙, 03 丙 (also used for items not in the catalogue).
CHRGITM_LV = {ItemClass.A: "01", ItemClass.B: "02", ItemClass.C: "03"}


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    code: str
    name: str
    kind: str  # drug | service | consumable
    item_class: ItemClass
    ceiling: int | None = None  # price ceiling per unit, fen


@dataclass(frozen=True, slots=True)
class ItemSplit:
    """How one item's amount divides; the four buckets always sum to `amount`."""

    amount: int
    fulamt_ownpay_amt: int
    overlmt_selfpay: int
    preselfpay_amt: int
    inscp_scp_amt: int
    chrgitm_lv: str
    pric_uplmt_amt: int | None
    selfpay_bp: int

    def buckets(self) -> dict[str, int]:
        """The amount and its four buckets, as a fee's row keeps them."""
        return {"amount": self.amount, "fulamt_ownpay_amt": self.fulamt_ownpay_amt,
                "overlmt_selfpay": self.overlmt_selfpay, "preselfpay_amt": self.preselfpay_amt,
                "inscp_scp_amt": self.inscp_scp_amt}


@dataclass(frozen=True, slots=True)
class Catalogue:
    """One province's medical-insurance catalogue."""

    admdvs: str
    entries: dict[str, CatalogueEntry] = field(default_factory=dict)
    #: the class-B self-pay share of every B entry, a *parameter* per province (DOMAIN.md §3;
    #: a policy file's `selfpay_bp`)
    selfpay_bp: int = 1000

    def __post_init__(self) -> None:
        if not 0 <= self.selfpay_bp <= BP_ONE:
            raise ValueError(f"catalogue {self.admdvs}: selfpay_bp {self.selfpay_bp} is not a "
                             "share (0–10000 bp)")

    def classify(self, code: str, quantity: int, price: int) -> ItemSplit:
        """Split `quantity * price` fen into own-pay, over-ceiling, class-B self-pay and the
        in-scope amount the insured-place policy applies to."""
        if quantity <= 0 or price <= 0:
            raise ValueError("quantity and price must be positive")
        amount = quantity * price
        entry = self.entries.get(code)
        if entry is None or entry.item_class is ItemClass.C:
            return ItemSplit(amount, amount, 0, 0, 0, CHRGITM_LV[ItemClass.C], None, 0)
        ceiling = entry.ceiling
        unit = price if ceiling is None else min(price, ceiling)
        allowed = quantity * unit
        over = amount - allowed
        if entry.item_class is ItemClass.B:
            bp = self.selfpay_bp
            pre = apply_bp(allowed, bp)
        else:
            bp, pre = 0, 0
        return ItemSplit(amount, 0, over, pre, allowed - pre, CHRGITM_LV[entry.item_class],
                         ceiling, bp)


@dataclass(frozen=True, slots=True)
class FeeTotals:
    """Sum of a visit's item splits: what the insured-place policy needs (and nothing else)."""

    medfee_sumamt: int = 0
    fulamt_ownpay_amt: int = 0
    overlmt_selfpay: int = 0
    preselfpay_amt: int = 0
    inscp_scp_amt: int = 0

    @classmethod
    def of(cls, splits: Iterable[ItemSplit]) -> FeeTotals:
        return cls.of_buckets(s.buckets() for s in splits)

    @classmethod
    def of_buckets(cls, fees: Iterable[Mapping[str, int]]) -> FeeTotals:
        """The sums of fees as `ItemSplit.buckets` gives them (a visit's row keeps them so)."""
        total = own = over = pre = scope = 0
        for f in fees:
            total += f["amount"]
            own += f["fulamt_ownpay_amt"]
            over += f["overlmt_selfpay"]
            pre += f["preselfpay_amt"]
            scope += f["inscp_scp_amt"]
        return cls(total, own, over, pre, scope)

    def as_dict(self) -> dict[str, int]:
        return {
            "medfee_sumamt": self.medfee_sumamt,
            "fulamt_ownpay_amt": self.fulamt_ownpay_amt,
            "overlmt_selfpay": self.overlmt_selfpay,
            "preselfpay_amt": self.preselfpay_amt,
            "inscp_scp_amt": self.inscp_scp_amt,
        }
