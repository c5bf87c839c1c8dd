"""Step 1 of DOMAIN.md §3: classifying an item with the treatment-province catalogue."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.catalogue import Catalogue, CatalogueEntry, FeeTotals, ItemClass, ItemSplit

PROPS = settings(max_examples=200, deadline=None)


def catalogue(*entries: CatalogueEntry, selfpay_bp: int = 1000) -> Catalogue:
    return Catalogue("110000", {e.code: e for e in entries}, selfpay_bp=selfpay_bp)


def buckets(s: ItemSplit) -> tuple[int, int, int, int]:
    return (s.fulamt_ownpay_amt, s.overlmt_selfpay, s.preselfpay_amt, s.inscp_scp_amt)


def test_item_not_in_catalogue_is_entirely_own_pay() -> None:
    split = catalogue().classify("NOT-LISTED", 2, 3_000)
    # amount = 2 × 3,000 = 6,000, all of it to fulamt_ownpay_amt
    assert split.amount == 6_000
    assert buckets(split) == (6_000, 0, 0, 0)
    assert split.chrgitm_lv == "03"


def test_class_c_item_is_entirely_own_pay_even_with_a_ceiling() -> None:
    cat = catalogue(CatalogueEntry("C1", "c", "consumable", ItemClass.C, ceiling=1_000))
    split = cat.classify("C1", 2, 3_000)
    # class C ignores the ceiling: all 6,000 to fulamt_ownpay_amt, nothing over-ceiling
    assert buckets(split) == (6_000, 0, 0, 0)
    assert split.chrgitm_lv == "03"


def test_price_above_ceiling_goes_to_overlmt_selfpay_and_the_rest_is_in_scope() -> None:
    cat = catalogue(CatalogueEntry("S1", "s", "service", ItemClass.A, ceiling=450_000))
    split = cat.classify("S1", 1, 500_000)
    # worked example: 1 × (500,000 − 450,000) = 50,000 over the ceiling; allowed 450,000 (A)
    assert buckets(split) == (0, 50_000, 0, 450_000)
    assert split.pric_uplmt_amt == 450_000
    assert split.chrgitm_lv == "01"


def test_over_ceiling_part_is_multiplied_by_quantity() -> None:
    cat = catalogue(CatalogueEntry("S1", "s", "service", ItemClass.A, ceiling=800))
    split = cat.classify("S1", 3, 1_000)
    # amount 3 × 1,000 = 3,000; over 3 × (1,000 − 800) = 600; allowed 3 × 800 = 2,400
    assert buckets(split) == (0, 600, 0, 2_400)


def test_price_below_ceiling_has_nothing_over_the_ceiling() -> None:
    cat = catalogue(CatalogueEntry("S1", "s", "service", ItemClass.A, ceiling=1_000))
    split = cat.classify("S1", 4, 999)
    assert buckets(split) == (0, 0, 0, 3_996)


def test_class_b_self_pay_uses_the_province_default_share() -> None:
    cat = catalogue(CatalogueEntry("B1", "b", "drug", ItemClass.B), selfpay_bp=1000)
    split = cat.classify("B1", 3, 8_005)
    # worked example: 3 × 8,005 = 24,015; 10 % = 2,401.5 -> 2,402 (half up); 24,015 − 2,402
    assert buckets(split) == (0, 0, 2_402, 21_613)
    assert split.selfpay_bp == 1000
    assert split.chrgitm_lv == "02"


def test_class_b_self_pay_follows_a_changed_province_default() -> None:
    cat = catalogue(CatalogueEntry("B1", "b", "drug", ItemClass.B), selfpay_bp=1500)
    split = cat.classify("B1", 1, 10_001)
    # 15 % of 10,001 = 1,500.15 -> 1,500; the rest 8,501 in scope
    assert buckets(split) == (0, 0, 1_500, 8_501)
    assert split.selfpay_bp == 1500


def test_every_class_b_item_takes_the_province_share() -> None:
    # DOMAIN.md §3: selfpay_bp is a parameter per province, not per item
    cat = catalogue(CatalogueEntry("B1", "b", "drug", ItemClass.B),
                    CatalogueEntry("B2", "b", "service", ItemClass.B), selfpay_bp=2000)
    # 20 % of 24,015 = 4,803 exactly; 24,015 − 4,803 = 19,212
    assert buckets(cat.classify("B1", 3, 8_005)) == (0, 0, 4_803, 19_212)
    assert buckets(cat.classify("B2", 3, 8_005)) == (0, 0, 4_803, 19_212)


def test_a_province_share_of_zero_means_no_class_b_self_pay() -> None:
    cat = catalogue(CatalogueEntry("B0", "b", "drug", ItemClass.B), selfpay_bp=0)
    assert buckets(cat.classify("B0", 2, 777)) == (0, 0, 0, 1_554)


def test_class_b_self_pay_applies_to_the_allowed_amount_after_the_ceiling() -> None:
    cat = catalogue(CatalogueEntry("B3", "b", "service", ItemClass.B, ceiling=1_000))
    split = cat.classify("B3", 2, 1_255)
    # amount 2,510; over 2 × 255 = 510; allowed 2,000; 10 % of 2,000 = 200; in scope 1,800
    assert buckets(split) == (0, 510, 200, 1_800)


def test_class_a_item_is_fully_in_scope() -> None:
    cat = catalogue(CatalogueEntry("A1", "a", "drug", ItemClass.A))
    split = cat.classify("A1", 10, 1_250)
    # worked example: 10 × 1,250 = 12,500, all in scope
    assert buckets(split) == (0, 0, 0, 12_500)
    assert split.selfpay_bp == 0


@pytest.mark.parametrize(("quantity", "price"), [(0, 100), (1, 0), (-1, 100), (1, -5)])
def test_classify_refuses_non_positive_quantity_or_price(quantity: int, price: int) -> None:
    with pytest.raises(ValueError):
        catalogue().classify("X", quantity, price)


def test_fee_totals_sum_the_worked_example_items() -> None:
    cat = catalogue(
        CatalogueEntry("A1", "drug A", "drug", ItemClass.A),
        CatalogueEntry("B1", "drug B", "drug", ItemClass.B),
        CatalogueEntry("S1", "service", "service", ItemClass.A, ceiling=450_000),
        CatalogueEntry("C1", "consumable", "consumable", ItemClass.C),
    )
    totals = FeeTotals.of([cat.classify("A1", 10, 1_250), cat.classify("B1", 3, 8_005),
                           cat.classify("S1", 1, 500_000), cat.classify("C1", 2, 3_000)])
    # DOMAIN.md §3: 12,500 + 24,015 + 500,000 + 6,000 = 542,515; in scope
    # 12,500 + 21,613 + 450,000 = 484,113
    assert totals.as_dict() == {"medfee_sumamt": 542_515, "fulamt_ownpay_amt": 6_000,
                                "overlmt_selfpay": 50_000, "preselfpay_amt": 2_402,
                                "inscp_scp_amt": 484_113}


entries = st.builds(
    CatalogueEntry,
    code=st.just("X"),
    name=st.just("x"),
    kind=st.sampled_from(["drug", "service", "consumable"]),
    item_class=st.sampled_from(list(ItemClass)),
    ceiling=st.none() | st.integers(1, 2_000_000),
)


@PROPS
@given(entry=st.none() | entries, default_bp=st.integers(0, 10_000),
       quantity=st.integers(1, 100_000), price=st.integers(1, 10_000_000))
def test_four_buckets_always_sum_to_amount_and_are_non_negative(
        entry: CatalogueEntry | None, default_bp: int, quantity: int, price: int) -> None:
    cat = catalogue(*([entry] if entry else []), selfpay_bp=default_bp)
    split = cat.classify("X", quantity, price)
    assert split.amount == quantity * price
    assert sum(buckets(split)) == split.amount
    assert all(b >= 0 for b in buckets(split))
    if entry is None or entry.item_class is ItemClass.C:
        assert split.fulamt_ownpay_amt == split.amount
    else:
        assert split.fulamt_ownpay_amt == 0
        over = quantity * max(0, price - entry.ceiling) if entry.ceiling is not None else 0
        assert split.overlmt_selfpay == over
        if entry.item_class is ItemClass.A:
            assert split.preselfpay_amt == 0


@PROPS
@given(st.lists(st.tuples(st.none() | entries, st.integers(1, 1_000),
                          st.integers(1, 1_000_000)), min_size=1, max_size=20))
def test_fee_totals_keep_the_four_bucket_identity(
        items: list[tuple[CatalogueEntry | None, int, int]]) -> None:
    splits = []
    for entry, quantity, price in items:
        cat = catalogue(*([entry] if entry else []))
        splits.append(cat.classify("X", quantity, price))
    t = FeeTotals.of(splits)
    assert t.medfee_sumamt == sum(q * p for _, q, p in items)
    assert t.medfee_sumamt == (t.fulamt_ownpay_amt + t.overlmt_selfpay + t.preselfpay_amt
                               + t.inscp_scp_amt)


@pytest.mark.parametrize("bp", [-1, 10_001])
def test_a_self_pay_share_outside_0_to_100_percent_is_refused(bp: int) -> None:
    # more than the whole would make the in-scope amount negative
    with pytest.raises(ValueError, match="not a share"):
        Catalogue("110000", {}, selfpay_bp=bp)


def test_a_hospital_level_other_than_1_2_or_3_is_refused() -> None:
    from settlement.reference import Hospital

    for level in (1, 2, 3):
        assert Hospital("H11010000001", "h", "110100", level).level == level
    for level in (0, 4):  # level 0 would read the level-3 deductible (index −1)
        with pytest.raises(ValueError, match="is not 1, 2 or 3"):
            Hospital("H11010000001", "h", "110100", level)
