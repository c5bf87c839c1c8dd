"""Numbers the workers read from the environment: each checked by every huimin command as
it starts (huimin/cli_app.py), so that a mistyped one is refused in words, not met as a
traceback or as a worker refusing every record."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

N = TypeVar("N", int, float)


def number_from_env(name: str, default: int, low: int, high: int, unit: str,
                    read: Callable[[str], N]) -> N:
    """`name`'s value read by `read`, `default` unless set; ValueError unless it is `unit`
    from `low` to `high`."""
    given = os.environ.get(name) or str(default)
    try:
        value = read(given)
    except ValueError:
        value = read(str(low - 1))
    if not low <= value <= high:
        raise ValueError(f"{name}={given!r}: {unit} from {low:,} to {high:,} ({default:,} "
                         "unless set)")
    return value
