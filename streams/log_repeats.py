"""Repeated log lines let through once in a while, with how many were held back.

While the cluster is down, aiokafka logs every failed connection at ERROR, and its clients
retry at once: a worker wrote ~1,300 lines a second (89 MB in four minutes of outage), which
buried what else it said. The first line of a kind shows at once, later ones at most once a
`window_s`, each saying how many like it were left out meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


def template(record: logging.LogRecord) -> str:
    return str(record.msg)


class RepeatsHeldBack(logging.Filter):
    """A record whose logger, level and kind (by default its message template) were let
    through less than `window_s` ago is held back and counted; the next one let through says
    how many."""

    def __init__(self, window_s: float = 10.0,
                 kind: Callable[[logging.LogRecord], str] = template) -> None:
        super().__init__()
        self.window_s = window_s
        self.kind = kind
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, self.kind(record))
        now = time.monotonic()
        shown_at, held = self._seen.get(key, (-self.window_s, 0))
        if now - shown_at < self.window_s:
            self._seen[key] = (shown_at, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            record.msg = (f"{record.getMessage()} ({held:,} more like it in the last "
                          f"{now - shown_at:.0f} s not shown)")
            record.args = ()  # not None: Faust's (mode's) formatter makes that (None,)
        return True


def hold_back_repeats(prefixes: tuple[str, ...], window_s: float = 10.0) -> RepeatsHeldBack:
    """The filter on every logger now known under `prefixes` (a record is filtered by the
    logger it is made on, not by its parents)."""
    held = RepeatsHeldBack(window_s)
    names = [name for name in list(logging.root.manager.loggerDict)
             if name.split(".")[0] in prefixes]
    for name in {*prefixes, *names}:
        logging.getLogger(name).addFilter(held)
    return held
