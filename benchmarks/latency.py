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


#: The percentiles set beside the raw ceiling's, as ratios.
RATIOED = ("p50", "p90", "p99", "p99.9", "max")


def cross_vs_raw(settlement_latency: dict[str, dict[str, float | int | None]],
                 ceiling: dict[str, object]) -> dict[str, float | None]:
    """Each percentile of a rate's cross-province settlements ÷ the raw ceiling's at the same
    offered rate (both cross 6 topics), by `RATIOED`; empty without a ceiling. None where
    either side lacks it, or where either left anything unanswered: a route's percentiles
    count answers only (what was never answered has no route), so a ratio would flatter."""
    raw = ceiling.get("latency_ms") if ceiling else None
    if not isinstance(raw, dict):
        return {}
    cross = settlement_latency.get("cross", {})
    lossy = bool(settlement_latency.get("all", {}).get("unanswered") or ceiling.get("lost"))
    out: dict[str, float | None] = {}
    for key in RATIOED:
        mine, theirs = cross.get(key), raw.get(key)
        out[key] = round(mine / theirs, 2) if mine and theirs and not lossy else None
    return out
