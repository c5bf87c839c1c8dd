"""Two runs' money side by side (`huimin compare`): what a change of policy did, in all and
province by province, read from each run's summary.json (a `huimin run`'s or a replay's).
Pure: no I/O beyond reading them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from huimin.report import PAID

#: What the comparison sets side by side of each province and month (a summary's
#: `money_fen_by_insured_province`, `money_fen_by_month`).
PROVINCE_KEYS = ("settlements", *PAID)


class NotARun(ValueError):
    """A path that is not a run's folder or summary.json, or one without the money in it."""


@dataclass(frozen=True)
class RunMoney:
    """What a run paid, as its summary says it."""

    path: Path
    world: str
    policy_file: str | None
    scenario: dict[str, Any] | None  # None: a run from before summaries said it
    settled: int
    paid: dict[str, int]
    by_province: dict[str, dict[str, int]]
    by_month: dict[str, dict[str, int]]  # empty: a summary from before it said them


def read_run(path: Path) -> RunMoney:
    """The money of the run whose folder (or summary.json) is `path`."""
    summary_file = path / "summary.json" if path.is_dir() else path
    try:
        summary = orjson.loads(summary_file.read_bytes())
    except FileNotFoundError:
        raise NotARun(f"{path}: no summary.json (give a `huimin run` output folder or its "
                      "summary.json, or a replay's <results>.summary.json)") from None
    except orjson.JSONDecodeError as exc:
        hint = " (a replay's answers? give its .summary.json)" \
            if summary_file.suffix == ".jsonl" else ""
        raise NotARun(f"{summary_file} is not JSON: {exc}{hint}") from None
    if not isinstance(summary, dict) or "world" not in summary:  # every summary names it
        raise NotARun(f"{summary_file} is not a summary of a `huimin run` or `huimin replay` "
                      "(give a run's output folder or its summary.json, or a replay's "
                      "<results>.summary.json)")
    if "money_fen_by_insured_province" not in summary:
        raise NotARun(f"{summary_file} has no money by province: a summary of a `huimin run` "
                      "or `huimin replay` of this version (earlier ones did not say it) is "
                      "needed")
    try:
        return RunMoney(summary_file.parent if summary_file != path else path,
                        str(summary["world"]), summary.get("policy_file"),
                        summary.get("scenario"),
                        sum(summary["visits_settled_by_route"].values()),
                        {k: int(summary["money_fen"].get(k, 0)) for k in PAID},
                        _rows(summary["money_fen_by_insured_province"]),
                        _rows(summary.get("money_fen_by_month", {})))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NotARun(f"{summary_file} is not a run's summary as huimin writes it "
                      f"({type(exc).__name__}: {exc})") from None


def _rows(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    return {name: {k: int(v.get(k, 0)) for k in PROVINCE_KEYS} for name, v in rows.items()}


def _side_by_side(a: dict[str, dict[str, int]],
                  b: dict[str, dict[str, int]]) -> dict[str, dict[str, dict[str, int]]]:
    """Each row (a province, a month) of either run: A, B and B less A of each figure."""
    none = dict.fromkeys(PROVINCE_KEYS, 0)
    return {name: {k: {"a": (mine := a.get(name, none)[k]), "b": (theirs := b.get(name, none)[k]),
                       "b_less_a": theirs - mine} for k in PROVINCE_KEYS}
            for name in sorted(set(a) | set(b))}


#: Of a summary's scenario, what changes no visit's answer: the bad requests come from
#: hospitals that do not see their person in the visits (simulators/bad_messages.py), and are
#: all refused, so a run's default 2 of each kind beside a replay of a log generated without
#: them settled the same visits (a review: compare said otherwise of byte-identical results).
ANSWERING_NO_VISIT = frozenset({"bad_per_kind"})


def differences_beyond_policy(a: RunMoney, b: RunMoney) -> list[str]:
    """What the two runs differ in that decides their visits (so their money differs for more
    than the policy's sake): empty if they settled the same visits."""
    if a.scenario is None or b.scenario is None:
        return ["a summary does not say what decided its visits"]
    out = []
    for part in sorted((set(a.scenario) | set(b.scenario)) - ANSWERING_NO_VISIT):
        mine, theirs = a.scenario.get(part), b.scenario.get(part)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            out += [f"{part}.{k}: {mine.get(k)!r} and {theirs.get(k)!r}"
                    for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
        elif part == "generator" and mine != theirs:  # None: a run from before it was said
            out.append(f"the visits' generator: {_generator(mine)} and {_generator(theirs)}")
        elif mine != theirs:
            out.append(f"{part}: {mine!r} and {theirs!r}")
    return out


def _generator(version: Any) -> str:
    return ("unsaid (a run or log from before logs and summaries said it)" if version is None
            else f"version {version}")


def compared(a: RunMoney, b: RunMoney) -> dict[str, Any]:
    """Both runs' money and B less A, in all, by the insured person's province and by the
    month of settlement (fen; no months if either summary is from before it said them)."""
    return {
        "a": {"run": str(a.path), "world": a.world, "policy_file": a.policy_file},
        "b": {"run": str(b.path), "world": b.world, "policy_file": b.policy_file},
        "same_visits": not differences_beyond_policy(a, b),
        "differences_beyond_policy": differences_beyond_policy(a, b),
        "settled": {"a": a.settled, "b": b.settled, "b_less_a": b.settled - a.settled},
        "paid_fen": {k: {"a": a.paid[k], "b": b.paid[k], "b_less_a": b.paid[k] - a.paid[k]}
                     for k in PAID},
        "by_insured_province_fen": _side_by_side(a.by_province, b.by_province),
        "by_month_fen": _side_by_side(a.by_month, b.by_month)
        if a.by_month and b.by_month else {},
    }
