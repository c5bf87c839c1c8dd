"""`huimin bench-compare`: two benchmark runs side by side, rate by rate, with a caution
where their machines' speed (the CPU probes) differ."""

from __future__ import annotations

from typing import Any

from benchmarks.report import STOPPED_IN, ms_text, setting_text, stopped_by


def _change(before: float | None, after: float | None) -> str:
    if not before or after is None:
        return "–"
    return f"{100 * (after - before) / before:+.0f} %"


def _components(cpu: dict[str, float]) -> str:
    return " / ".join(f"{cpu[k]:g}" if k in cpu else "–"
                      for k in ("broker", "workers", "hospitals"))


def _inside_outside(point: dict[str, Any]) -> str:
    by_role = point.get("worker_cpu_ms_per_visit_by_role") or {}
    if "handlers" not in by_role:
        return "–"
    outside = by_role.get("outside")
    return f"{by_role['handlers']:g} / {'–' if outside is None else f'{outside:g}'}"


def _achieved(point: dict[str, Any]) -> str:
    """Achieved settlements/s, and the visits dropped where the in-flight limit was reached:
    such a rate was past capacity in that run, whatever came through."""
    dropped = point.get("dropped_visits") or 0
    return f"{point['achieved_settlements_per_s']:g}" + (f" ({dropped:,} visits dropped)"
                                                          if dropped else "")


def not_a_result(result: Any) -> str | None:
    """Why `result` is not a `huimin bench` result that `comparison` can read (in words);
    None if it is. A file half like one (no machine versions, a rate without its figures)
    is refused here rather than failing halfway through the comparison."""
    if not isinstance(result, dict) or "started" not in result:
        return "no start time in it"
    if not all(isinstance(result.get(k), dict) for k in ("settings", "machine")):
        return "no settings or machine in it"
    if not isinstance(result["machine"].get("versions"), dict):
        return "no versions in its machine"
    points = result.get("points")
    if not isinstance(points, list):
        return "no rates in it"
    for p in points:
        if not (isinstance(p, dict) and isinstance(p.get("offered_visits_per_s"), int | float)
                and isinstance(p.get("achieved_settlements_per_s"), int | float)
                and isinstance(p.get("settlement_latency_ms"), dict)):
            return "a rate without its offered and achieved rates or its latency"
    cap = result.get("capacity")
    if cap and not (isinstance(cap, dict) and "p99_limit_ms" in cap
                    and "huimin_settlements_per_s" in cap):
        return "a capacity without its p99 limit or huimin's figure"
    return None


#: Settings that runs from before they were recorded had, as they had them: such a run and a
#: later one with the same setting do not differ in it.
UNRECORDED_SETTINGS = {"fetch_min_bytes": 1}


def comparison(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Two runs side by side, rate by rate: what a change did. The settings that differ come
    first, and each rate's CPU probe beside it, since a machine that ran slower during one run
    explains a difference as well as the change does (benchmarks/cpu_probe.py)."""
    was, now = ({**UNRECORDED_SETTINGS, **run["settings"]} for run in (before, after))
    differ = [f"{k} {setting_text(was.get(k))} → {setting_text(now.get(k))}"
              for k in sorted(was.keys() | now.keys()) if was.get(k) != now.get(k)]
    old, new = before["machine"], after["machine"]
    versions = [f"{k} {old['versions'].get(k, '?')} → {new['versions'].get(k, '?')}"
                for k in dict.fromkeys([*old["versions"], *new["versions"]])
                if old["versions"].get(k) != new["versions"].get(k)]
    versions += [f"{k} {old.get(k, '?')} → {new.get(k, '?')}"
                 for k in ("cpus", "cpu_model", "python", "system") if old.get(k) != new.get(k)]
    lines = ["# huimin benchmark: before → after", "",
             f"{before['started']} → {after['started']}", "",
             "Settings that differ: " + ("; ".join(differ + versions) or "none") + ".", "",
             *[f"The {name} run was stopped by {stopped_by(run)} during "
               f"{STOPPED_IN.get(run['interrupted'], 'the run')}: its capacities count only "
               "the rates it measured.\n" for name, run in (("before", before), ("after", after))
               if run.get("interrupted")],
             "| offered visits/s | achieved settl./s | p50 ms | p99 ms | CPU ms per visit "
             "(broker / workers / hospitals) | CPU ms per visit, all | the workers' ms per "
             "visit in the handlers / outside them | messages written per visit | CPU probe "
             "ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    heading = len(lines)
    after_points = {p["offered_visits_per_s"]: p for p in after["points"]}
    for b in before["points"]:
        a = after_points.get(b["offered_visits_per_s"])
        if a is None:
            continue
        bl = b["settlement_latency_ms"].get("all", {})
        al = a["settlement_latency_ms"].get("all", {})
        bc, ac = b.get("cpu_ms_per_visit") or {}, a.get("cpu_ms_per_visit") or {}
        bw = (b.get("broker_messages_per_visit") or {}).get("all")
        aw = (a.get("broker_messages_per_visit") or {}).get("all")
        lines.append(
            f"| {b['offered_visits_per_s']:g} | {_achieved(b)} → {_achieved(a)} | "
            f"{ms_text(bl.get('p50', '–'))} → {ms_text(al.get('p50', '–'))} "
            f"({_change(bl.get('p50'), al.get('p50'))}) | {ms_text(bl.get('p99', '–'))} → "
            f"{ms_text(al.get('p99', '–'))} ({_change(bl.get('p99'), al.get('p99'))}) | "
            f"{_components(bc)} → "
            f"{_components(ac)} | {bc.get('all', '–')} → {ac.get('all', '–')} "
            f"({_change(bc.get('all'), ac.get('all'))}) | {_inside_outside(b)} → "
            f"{_inside_outside(a)} | {bw or '–'} → {aw or '–'} | "
            f"{b.get('cpu_probe_ms') or '–'} → {a.get('cpu_probe_ms') or '–'} |")
    if len(lines) == heading:
        lines.append("| (no offered rate in both runs) | | | | | | | | |")
    bcap, acap = before.get("capacity") or {}, after.get("capacity") or {}
    if bcap and acap:
        low, high = bcap["p99_limit_ms"], acap["p99_limit_ms"]
        limits = f"{high:g} ms" if low == high else f"{low:g} → {high:g} ms (the targets differ)"

        def raw(cap: dict[str, Any]) -> str:
            messages = cap.get("raw_messages_per_s")
            return "–" if messages is None else f"{messages:g}"

        def huimin(cap: dict[str, Any]) -> str:  # every rate sustained: a lower bound
            bound = "at least " if cap.get("huimin_bracketed") is False \
                and cap["huimin_settlements_per_s"] else ""
            return f"{bound}{cap['huimin_settlements_per_s']:g}"

        lines += ["", f"Capacity within p99 ≤ {limits}: {huimin(bcap)} → {huimin(acap)} "
                  f"settlements/s; raw ceiling {raw(bcap)} → {raw(acap)} messages/s."]
    lines += _probes_disagree(before, after)
    return "\n".join(lines) + "\n"


#: CPU probes further apart than this share: the machine itself ran at another speed.
PROBES_AGREE_WITHIN = 0.15


def _probes_disagree(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """A caution where a shared rate's CPU probes differ by more than PROBES_AGREE_WITHIN:
    the machine's speed then explains a difference as well as the change does."""
    after_points = {p["offered_visits_per_s"]: p for p in after["points"]}
    apart = []
    for b in before["points"]:
        a = after_points.get(b["offered_visits_per_s"])
        bp, ap = b.get("cpu_probe_ms"), (a or {}).get("cpu_probe_ms")
        if bp and ap and abs(ap - bp) > PROBES_AGREE_WITHIN * min(ap, bp):
            apart.append(f"{b['offered_visits_per_s']:g} visits/s ({bp:g} → {ap:g} ms)")
    if not apart:
        return []
    return ["", f"The CPU probes disagree by more than {PROBES_AGREE_WITHIN * 100:g} % at "
            + ", ".join(apart) + ": the machine ran at another speed, so read those rates' "
            "differences as the machine's as much as the change's."]
