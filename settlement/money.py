"""Integer-fen arithmetic. Ratios are basis points (10000 = 100 %)."""

from __future__ import annotations

BP_ONE = 10_000


def rhu(numerator: int, denominator: int = 1) -> int:
    """Round the non-negative rational numerator/denominator half up to a whole fen."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("rhu is defined for a non-negative numerator and positive denominator")
    return (2 * numerator + denominator) // (2 * denominator)


def apply_bp(amount: int, bp: int) -> int:
    """`rhu(amount * bp / 10000)`."""
    return rhu(amount * bp, BP_ONE)


def yuan(fen: int) -> str:
    """Format fen as yuan with two decimals, for people (never for computation)."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{part:02d}"
