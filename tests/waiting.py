"""Waiting in end-to-end tests for what a worker or the cluster will show, up to a limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(what: str, read: Callable[[], T], done: Callable[[T], object] = bool,
               timeout_s: float = 60.0, every_s: float = 0.5) -> T:
    """`read()` every `every_s` until `done` says its value will do, and that value; after
    `timeout_s` an AssertionError saying `what` was awaited and what was last read. A read
    that raises OSError (a web server not up yet, or again) is tried again."""
    deadline = time.monotonic() + timeout_s
    seen: T | None = None
    while True:
        try:
            seen = read()
            if done(seen):
                return seen
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"not {what} within {timeout_s:.0f} s (last read: {seen!r})")
        time.sleep(every_s)
