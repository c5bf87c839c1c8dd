"""settlement.money: integer-fen rounding half up (DOMAIN.md §3), basis points, yuan display."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.money import BP_ONE, apply_bp, rhu, yuan

PROPS = settings(max_examples=200, deadline=None)


@pytest.mark.parametrize(("numerator", "denominator", "expected"), [
    (25, 10, 3),  # 2.5 -> 3: exactly half goes up
    (5, 10, 1),  # 0.5 -> 1
    (15, 10, 2),  # 1.5 -> 2 (not banker's rounding to the even 2 by accident: see 2.5 -> 3)
    (24_999, 10_000, 2),  # 2.4999 -> 2
    (25_001, 10_000, 3),  # 2.5001 -> 3
    (4_999, 10_000, 0),  # 0.4999 -> 0
    (7, 1, 7),  # whole numbers are unchanged
    (0, 7, 0),
])
def test_rhu_rounds_exact_halves_up_and_below_half_down(numerator: int, denominator: int,
                                                        expected: int) -> None:
    assert rhu(numerator, denominator) == expected


def test_rhu_default_denominator_is_one() -> None:
    assert rhu(12_345) == 12_345


@pytest.mark.parametrize(("numerator", "denominator"), [(-1, 10), (1, 0), (1, -10)])
def test_rhu_refuses_negative_numerator_or_non_positive_denominator(numerator: int,
                                                                    denominator: int) -> None:
    with pytest.raises(ValueError):
        rhu(numerator, denominator)


@PROPS
@given(st.integers(0, 10**15), st.integers(1, 10**9))
def test_rhu_equals_floor_of_value_plus_one_half(numerator: int, denominator: int) -> None:
    exact = Fraction(numerator, denominator)
    assert rhu(numerator, denominator) == math.floor(exact + Fraction(1, 2))
    assert abs(rhu(numerator, denominator) - exact) <= Fraction(1, 2)


def test_apply_bp_reproduces_the_worked_example_roundings() -> None:
    # DOMAIN.md §3 worked example: class-B drug 3 × 8,005 = 24,015 fen at 10 % self-pay
    # = 2,401.5 -> 2,402; and (484,113 − 100,000) × 85 % = 326,496.05 -> 326,496.
    assert apply_bp(24_015, 1000) == 2_402
    assert apply_bp(384_113, 8500) == 326_496


@pytest.mark.parametrize(("amount", "bp", "expected"), [
    (12_345, 0, 0),  # 0 % of anything is nothing
    (12_345, BP_ONE, 12_345),  # 100 % is the amount itself
    (1, 5000, 1),  # 0.5 fen -> 1
    (1, 4999, 0),  # 0.4999 fen -> 0
    (3, 5000, 2),  # 1.5 -> 2
])
def test_apply_bp_is_rhu_of_amount_times_bp_over_10000(amount: int, bp: int,
                                                       expected: int) -> None:
    assert apply_bp(amount, bp) == expected


@PROPS
@given(st.integers(0, 10**11), st.integers(0, BP_ONE))
def test_apply_bp_never_exceeds_amount_and_is_monotone_in_bp(amount: int, bp: int) -> None:
    assert 0 <= apply_bp(amount, bp) <= amount
    if bp < BP_ONE:
        assert apply_bp(amount, bp) <= apply_bp(amount, bp + 1)


@pytest.mark.parametrize(("fen", "text"), [
    (0, "0.00"),
    (5, "0.05"),
    (100, "1.00"),
    (542_515, "5,425.15"),  # the worked example's medfee_sumamt
    (100_000_000_000, "1,000,000,000.00"),
    (-5, "-0.05"),
    (-100, "-1.00"),
    (-542_515, "-5,425.15"),
])
def test_yuan_formats_fen_as_yuan_with_two_decimals_and_sign(fen: int, text: str) -> None:
    assert yuan(fen) == text


@PROPS
@given(st.integers(-(10**12), 10**12))
def test_yuan_text_parses_back_to_the_same_fen(fen: int) -> None:
    text = yuan(fen)
    sign = -1 if text.startswith("-") else 1
    whole, _, part = text.lstrip("-").replace(",", "").partition(".")
    assert len(part) == 2
    assert sign * (int(whole) * 100 + int(part)) == fen
    assert text.startswith("-") == (fen < 0)
