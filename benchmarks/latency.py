"""Latency percentiles of an open-loop load: what was never answered counts, ranked last."""

from __future__ import annotations

import math

from huimin.report import percentile

QUANTILES = (50, 90, 99, 99.9)


def percentiles(values: list[float], unanswered: int = 0) -> dict[str, float | int | None]:
    """Nearest-rank percentiles, as `huimin run` reports them. `unanswered`: requests sent
    and never answered, ranked above every answer (an open-loop load's latency includes what
    never came back); a percentile that falls among them is None, as is the maximum."""
    v = sorted(values)
    if not v and not unanswered:
        return {"count": 0}
    out: dict[str, float | int | None] = {"count": len(v)}
    if unanswered:
        out["unanswered"] = unanswered
        v += [math.inf] * unanswered
    for q in QUANTILES:
        value = percentile(v, q)
        out[f"p{q:g}"] = round(value, 1) if math.isfinite(value) else None
    out["max"] = round(v[-1], 1) if math.isfinite(v[-1]) else None
    return out
