"""The benchmark's outputs: JSON (everything, with the machine and settings) and a Markdown
report, huimin beside the raw broker ceiling (the PNG: benchmarks/plot.py)."""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path
from typing import Any

import orjson


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


def _ratio(a: float, b: float) -> str:
    """A percentage to two significant figures below 10 % (5.1 of 3,198.6 is 0.16 %, not 0)."""
    if not b:
        return "–"
    pct = 100 * a / b
    if pct >= 10 or pct == 0:
        return f"{pct:.0f} %"
    return f"{pct:.2g} %" if pct >= 0.01 else "< 0.01 %"


def ms_text(value: Any) -> Any:
    """A latency as the report shows it: None is past every answer (percentiles())."""
    return "∞" if value is None else value


def markdown(result: dict[str, Any]) -> str:
    from benchmarks.latency import cross_vs_raw

    s, m = result["settings"], result["machine"]
    with_ceiling = any(p.get("ceiling") for p in result["points"])
    columns = ["offered visits/s", "offered settl./s", "achieved settl./s", "p50", "p90",
               "p99", "p99.9", "max",
               *(["raw achieved/s", "raw p50", "raw p99", "cross p99 ÷ raw p99",
                  "throughput ÷ raw at this rate"] if with_ceiling else []),
               "errors", "visits dropped", "CPU cores (broker / workers / hospitals)",
               "peak RSS MiB (broker / workers / hospitals)"]
    lines = [
        "# huimin benchmark",
        "",
        f"{result['started']} · {m['cpus']} × {m['cpu_model']} · Python {m['python']} · "
        f"broker {s['broker']} · {s['workers']} worker(s) · {s['persons']:,} persons · "
        f"seed {s['seed']} · {s['duration_s']:g} s per rate, first {s['warmup_s']:g} s left "
        f"out · {s['partitions']} partition{'' if s['partitions'] == 1 else 's'} per topic · "
        f"linger {s['linger_ms']} ms · fetch wait {s['fetch_wait_ms']} ms"
        + (f" for at least {least:,} bytes (the workers')"
           if (least := s.get("fetch_min_bytes", 1)) > 1 else "") + " · health-record steps "
        f"{'on' if s['health_record_steps'] else 'off'} · tables in "
        f"{s.get('store', 'memory')}",
        "",
        *([interrupted_note(result), ""] if result.get("interrupted") else []),
        "Settlement = 2207/2304 round trip seen by the hospital (ms), all routes, plus how "
        "late its visit was taken up after its scheduled arrival (the start lag below)"
        + (", as the raw ceiling times each message from when it was due" if with_ceiling
           else "") + "; a "
        "settlement never answered (or never sent, its visit cut short) ranks above every "
        "answer, and a percentile among those reads ∞. "
        + ("Raw ceiling = the 6 topics of a "
           "cross-province settlement through 5 plain aiokafka forwarders at the same offered "
           "message rate, on "
           + ("a broker of its own" if s.get("fresh_broker_per_rate", True) else
              "the same cluster (KAFKA_BOOTSTRAP_SERVERS)")
           + "; its latency compares with the cross-province route's (a local settlement "
           "crosses 4 topics): cross p99 ÷ raw p99, – where either left anything unanswered. "
           "Throughput ÷ raw at this rate = settlements answered (OK or refused) per second "
           "÷ raw messages through per second at the same offered rate (huimin also carries "
           "the rest of each visit: 5–7 requests per settlement), so near 100 % wherever both "
           "keep up; the "
           "ratio of what each can carry is under Capacity below. "
           if with_ceiling else "No raw ceiling was measured in this run ("
           + ("stopped before it was" if s.get("ceiling") else "--no-ceiling") + "). ")
        + "CPU cores: the average over the whole rate, its warm-up and drain included.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for p in result["points"]:
        lat = {k: ms_text(v) for k, v in p["settlement_latency_ms"].get("all", {}).items()}
        raw = p.get("ceiling") or {}
        raw_lat = raw.get("latency_ms", {})
        errors = sum(p["errors"].values())
        cpu, rss = p["cpu_cores"], p.get("peak_rss_mib") or {}
        through = p.get("answered_settlements_per_s") or p["achieved_settlements_per_s"]
        # a route's percentiles leave out what was never answered (its route unknown)
        lossy = bool(p["settlement_latency_ms"].get("all", {}).get("unanswered")
                     or raw.get("lost"))
        # the ratio as the section below gives it (from the unrounded percentiles)
        p99_ratio = (p.get("cross_vs_raw_latency")
                     or cross_vs_raw(p["settlement_latency_ms"], raw)).get("p99")
        raw_cells = [str(raw.get("achieved_per_s", "–")), str(raw_lat.get("p50", "–")),
                     str(raw_lat.get("p99", "–")),
                     f"{p99_ratio:.1f}×" if p99_ratio and not lossy else "–",
                     f"{_ratio(through, raw.get('achieved_per_s', 0))} ({through:g}/s "
                     "answered)"] if with_ceiling else []
        cells = [f"{p['offered_visits_per_s']:g}", f"{p['offered_settlements_per_s']:g}",
                 f"{p['achieved_settlements_per_s']:g}", *(str(lat.get(q, "–")) for q in (
                     "p50", "p90", "p99", "p99.9", "max")), *raw_cells,
                 str(errors), str(p.get("dropped_visits", 0)),
                 f"{cpu.get('broker', 0):g} / {cpu.get('workers', 0):g} / "
                 f"{cpu.get('hospitals', 0):g}",
                 f"{rss.get('broker', '–')} / {rss.get('workers', '–')} / "
                 f"{rss.get('hospitals', '–')}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += start_lag_lines(result)
    lines += raw_ratio_lines(result)
    lines += capacity_lines(result)
    lines += cpu_lines(result)
    lines += role_lines(result)
    lines += thread_lines(result)
    lines += memory_lines(result)
    lines += timeline_lines(result)
    lines += ["", "## By route (settlement latency, ms: round trip and start lag)", "",
              "| offered visits/s | route | count | p50 | p90 | p99 | p99.9 | max |",
              "|---|---|---|---|---|---|---|---|"]
    for p in result["points"]:
        for route, lat in p["settlement_latency_ms"].items():
            if route == "all":
                continue
            lines.append(f"| {p['offered_visits_per_s']:g} | {route} | {lat['count']} | "
                         f"{lat.get('p50')} | {lat.get('p90')} | {lat.get('p99')} | "
                         f"{lat.get('p99.9')} | {lat.get('max')} |")
    lines += hop_lines(result)
    lines += profile_lines(result)
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), ""]
    return "\n".join(lines)


#: A settlement's hops in the order it crosses them: the treatment-province platform (trt),
#: the national platform (nat, cross-province only) and the insured-province one (ins)
HOP_ORDER = ("hosp.send->trt.queued", "trt.queued->trt.in", "trt.in->ins.in",
             "trt.in->nat.in", "nat.in->ins.in", "ins.in->nat.back", "nat.back->trt.back",
             "ins.in->trt.back", "trt.back->hosp.recv")


def hop_route(hop: str) -> str:
    if "nat." in hop:
        return "cross"
    return "local" if hop in ("trt.in->ins.in", "ins.in->trt.back") else "both"


def hop_lines(result: dict[str, Any]) -> list[str]:
    """Each hop of the settlements, in the order they cross them, with the route it is on
    and how many settlements crossed it."""
    rows = []
    for p in result["points"]:
        hops = p["hop_latency_ms"]
        for hop in sorted(hops, key=lambda h: (HOP_ORDER.index(h) if h in HOP_ORDER
                                               else len(HOP_ORDER), h)):
            v = hops[hop]
            rows.append(f"| {p['offered_visits_per_s']:g} | {hop} | {hop_route(hop)} | "
                        f"{v.get('count', '–')} | {v.get('p50')} | {v.get('p99')} |")
    if not rows:
        return []
    return ["", "## By hop (settlements, ms)", "",
            "trt = the treatment province's platform, ins = the insured province's, nat = the "
            "national platform (cross-province only); `hosp.send->trt.queued` is the "
            "hospital's send until the request's Kafka timestamp (~0 on Tansu, whose "
            "timestamps are the client's), `trt.queued->trt.in` its wait in hosp.requests.",
            "", "| offered visits/s | hop | route | count | p50 | p99 |",
            "|---|---|---|---|---|---|", *rows]


def setting_text(value: Any) -> str:
    """A setting as a person reads it: on/off, – for none, 12,800 not 12800.0."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "–"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return " / ".join(setting_text(v) for v in value)
    return str(value)


def stopped_by(result: dict[str, Any]) -> str:
    """What stopped an interrupted bench: Ctrl-C, or SIGTERM (`interrupted_by`)."""
    return str(result.get("interrupted_by") or "Ctrl-C")


#: What a Ctrl-C or SIGTERM stopped (`interrupted` in bench.json), in words.
STOPPED_IN = {"rates": "the rates offered", "search": "the capacity search (--find-capacity)",
              "sweep": "the raw ceiling's sweep"}


def interrupted_note(result: dict[str, Any]) -> str:
    """A bench stopped by Ctrl-C or SIGTERM: what it measured, and that every figure after (the
    capacities, the ratio, "may be higher") counts only that."""
    points = result["points"]
    offered = len(result["settings"]["rates_visits_per_s"])
    added = sum(1 for p in points if p.get("searched"))
    during = STOPPED_IN.get(result["interrupted"], "the run")
    return (f"**Stopped by {stopped_by(result)}** during {during}: "
            f"{len(points)} rate(s) measured ({offered} offered"
            + (f", {added} added by the search" if added else "") + "); a rate whose own "
            "load was under way is left out (one whose raw ceiling was running is kept "
            "without it), and the capacities below count only what was measured.")


def raw_bound(cap: dict[str, Any]) -> str:
    """How far the raw ceiling's capacity can lie above the figure given. Results from before
    `raw_bracketed` existed say nothing."""
    bracketed = cap.get("raw_bracketed")
    if bracketed and (between := cap.get("raw_between_per_s")):
        return (f": it was sustained at {between[0]:g} messages/s offered, not at "
                f"{between[1]:g}")
    if bracketed:
        return ": the capacity is at most 25 % above this"
    if bracketed is None:
        return ""
    if cap.get("raw_messages_per_s"):
        most = cap.get("raw_sweep_max_per_s")
        return (": no higher rate it offered went unsustained, so the capacity may be higher "
                "still" + (f"; the sweep offers at most {most:g} messages/s, --sweep-max" if most
                           else ""))
    return ": no rate offered was sustained"


def raw_ratio_lines(result: dict[str, Any]) -> list[str]:
    """Each percentile of the cross-province route as a multiple of the raw ceiling's at the
    same offered rate (both cross 6 topics); results from before `cross_vs_raw_latency` was
    kept are worked out from their figures the same way."""
    from benchmarks.latency import RATIOED, cross_vs_raw

    rows = []
    for p in result["points"]:
        ratios = p.get("cross_vs_raw_latency") or cross_vs_raw(p["settlement_latency_ms"],
                                                                p.get("ceiling") or {})
        if ratios:
            rows.append(f"| {p['offered_visits_per_s']:g} | " + " | ".join(
                "–" if ratios.get(k) is None else f"{ratios[k]:.1f}×" for k in RATIOED)
                + " |")
    if not rows:
        return []
    return ["", "## Cross-province latency ÷ the raw ceiling's", "",
            "Each percentile of the cross-province settlements ÷ the same percentile of the "
            "raw ceiling at the same offered rate; – where either left anything unanswered.",
            "", "| offered visits/s | " + " | ".join(RATIOED) + " |",
            "|" + "---|" * (len(RATIOED) + 1), *rows]


#: A start lag past this share of the p99 target: the load generator fell behind, and that
#: much of the rate's latency is its own, not the platform's.
LAG_SHARE_OF_TARGET = 0.1


def start_lag_lines(result: dict[str, Any]) -> list[str]:
    """How late the load generator took up visits. A settlement's latency includes its
    visit's lag (but not a wait for the same person's visit before it), as the raw ceiling's
    includes its sender's, so a loop that fell behind its schedule shows there (no
    coordinated omission); said apart too, since that part is the load generator's."""
    lags = [(p["offered_visits_per_s"], p["start_lag_ms"]) for p in result["points"]
            if p.get("start_lag_ms")]
    if not lags:
        return []
    limit = (result.get("capacity") or {}).get("p99_limit_ms")
    late = [rate for rate, lag in lags  # a wait for the person's visit is not falling behind
            if limit and lag.get("loop_p99_at_most", lag["p99_at_most"])
            > LAG_SHARE_OF_TARGET * limit]
    said = "; ".join(f"{rate:g}/s: p99 ≤ {lag['p99_at_most']:g} ms, max {lag['max']:g} ms"
                     + (f", {lag['waited_for_person']:,} "
                        f"{'visit' if lag['waited_for_person'] == 1 else 'visits'} waited for "
                        "the person's visit before" if lag.get("waited_for_person") else "")
                     + _own_lag(lag) for rate, lag in lags)
    raw = " as the raw ceiling's includes its sender's" if any(
        p.get("ceiling") for p in result["points"]) else ""
    lines = ["", "Start lag (how late the hospitals took up each visit after its scheduled "
             "arrival, a wait for the same person's visit before it to end included; each "
             "settlement's latency includes its visit's lag, that wait left out"
             f"{',' + raw if raw else ''}): {said}."]
    if late:
        lines.append(f"At {', '.join(f'{r:g}' for r in late)} visits/s the start lag's p99 "
                     f"(to its bucket's upper edge; without the waits for the same person's "
                     f"visit) passed {LAG_SHARE_OF_TARGET:.0%} of the "
                     "p99 target: the hospitals may have fallen behind their schedule, and "
                     "that much of those rates' latency may be the load generator's, not the "
                     "platform's.")
    return lines


def _own_lag(lag: dict[str, Any]) -> str:
    """The hospitals' own lag where the waits for a person's earlier visit made it differ:
    the figure that says whether the load generator fell behind."""
    own = lag.get("loop_p99_at_most")
    if not own or own == lag["p99_at_most"]:  # 0: every visit waited, no lag of its own
        return ""
    return f" (those waits left out, p99 ≤ {own:g} ms)"


def ratio_line(cap: dict[str, Any]) -> str:
    """The ratio of the two capacities, said as a bound where one of them is not pinned down
    (a capacity above every rate offered makes its side of the ratio a lower bound)."""
    value = _ratio(cap["huimin_settlements_per_s"], cap["raw_messages_per_s"] or 0)
    huimin, raw = cap.get("huimin_bracketed"), cap.get("raw_bracketed")
    if huimin is None or raw is None or not cap["huimin_settlements_per_s"] \
            or not cap["raw_messages_per_s"]:
        return f"**{value}**"  # results from before the flags existed; or nothing sustained
    if huimin and raw:
        return f"**{value}**"
    if raw:
        return (f"**at least {value}**: huimin sustained the highest rate offered, so its "
                "capacity may be higher (`--find-capacity` searches for it)")
    if huimin:
        return (f"**at most {value}**: the raw ceiling sustained the highest rate its sweep "
                "offered, so its capacity may be higher (`--sweep-max`)")
    return (f"**{value}, not a bound either way**: neither capacity is pinned down (huimin "
            "sustained the highest rate offered, the raw ceiling the highest its sweep did)")


def capacity_lines(result: dict[str, Any]) -> list[str]:
    """What each sustains within the broker's p99 target, and the raw ceiling pushed to its
    limit (the sweep), so the ratio compares capacities, not equal offered rates."""
    cap = result.get("capacity") or {}
    if not cap:
        return []
    limit = cap["p99_limit_ms"]
    raw = cap.get("raw_messages_per_s")
    huimin = cap["huimin_settlements_per_s"]
    stopped = result.get("interrupted")  # by a Ctrl-C: what was measured is all there is
    above = huimin and cap.get("huimin_bracketed") is False  # every rate offered sustained
    lines = ["", f"## Capacity within p99 ≤ {limit:g} ms", "",
             f"- huimin: **{'at least ' if above else ''}{huimin:g} settlements/s** sustained "
             "(the highest achieved rate with ≥ 95 % of the settlements sent answered, no "
             f"visit dropped and p99 ≤ {limit:g} ms; 0 if no rate was)"
             + (f"; every rate measured was sustained before the {stopped_by(result)}, so the "
                "capacity may be higher." if above and stopped else
                "; every rate offered was sustained, so the capacity may be higher "
                + ("(the search stopped at `--find-capacity-max`)." if cap.get("search")
                   else "(`--find-capacity` searches for it).") if above else ".")]
    lines += [f"- not sustained at {p['offered_visits_per_s']:g} visits/s: {p['unsustained']}."
              for p in result.get("points") or [] if p.get("unsustained")]
    search = cap.get("search")
    if search:
        rates = search["added_visits_per_s"]
        added = (f"{', '.join(f'{r:g}' for r in rates)} visits/s added to the rates offered, "
                 "doubling from the highest rate sustained (halving the lowest if none was), "
                 "then bisecting" if rates else "no rate added")
        if stopped == "search":
            where = f"stopped by {stopped_by(result)} before it had pinned the capacity down"
        elif search["bracketed"] and (between := cap.get("huimin_between_visits_per_s")):
            where = (f"sustained at {between[0]:g} visits/s offered (the capacity above is "
                     f"what that rate achieved), not at {between[1]:g}")
        elif search["bracketed"]:
            where = ("a higher rate offered was not: huimin's capacity lies between the two, "
                     "within 25 % after the bisections")
        elif cap["huimin_settlements_per_s"]:
            where = (f"the highest rate offered was sustained: the capacity is above it "
                     f"(the search stops at {search['max_visits_per_s']:g} visits/s, "
                     "--find-capacity-max)")
        else:
            lowest = min(p["offered_visits_per_s"] for p in result["points"])
            where = f"no rate was sustained, down to {lowest:g} visits/s, the lowest offered"
        lines.append(f"- searched for (--find-capacity): {added}; {where}.")
    if raw is not None and stopped:
        lines.append(f"- raw ceiling: {raw:g} messages/s sustained over the same 6 hops, of "
                     f"the rates measured before the {stopped_by(result)}: its sweep did not "
                     "end, so this is not its capacity.")
        lines.append(f"- huimin ÷ raw: {_ratio(huimin, raw)} of those partial figures, not the "
                     "ratio of the two capacities.")
    elif raw is not None and cap.get("raw_sweep_max_per_s") == 0:
        lines.append(f"- raw ceiling: {raw:g} messages/s sustained over the same 6 hops, at "
                     "the rates offered only (`--sweep-max 0`: no sweep), so this is not its "
                     "capacity.")
        lines.append("- huimin ÷ raw: not given: the raw ceiling's capacity was not searched "
                     "for (leave out `--sweep-max 0`).")
    elif raw is not None:
        lines.append(f"- raw ceiling: **{raw:g} messages/s** over the same 6 hops (the sweep "
                     "doubles the rate until one is not sustained, then bisects twice"
                     f"{raw_bound(cap)}).")
        lines.append(f"- huimin ÷ raw: {ratio_line(cap)}.")
    elif stopped and (result.get("settings") or {}).get("ceiling"):
        lines.append(f"- raw ceiling: not measured (stopped by {stopped_by(result)} before it "
                     "was).")
    sweep = result.get("ceiling_sweep") or []
    if sweep:
        lines += ["", "| raw ceiling offered/s | achieved/s | p50 | p99 | p99.9 | lost | CPU "
                  "cores (broker / forwarders / load) | CPU ms per message written | CPU "
                  "probe ms |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in sweep:
            lat, cpu = c["latency_ms"], c.get("cpu_cores") or {}
            per_write = cpu_ms_per_write(cpu, c["achieved_per_s"] * c.get("hops", 6))
            lines.append(f"| {c['offered_per_s']:g} | {c['achieved_per_s']:g} | "
                         f"{lat.get('p50', '–')} | {lat.get('p99', '–')} | "
                         f"{lat.get('p99.9', '–')} | {c['lost']} | {cpu.get('broker', '–')} / "
                         f"{cpu.get('forwarders', '–')} / {cpu.get('load', '–')} | "
                         f"{per_write or '–'} | {c.get('cpu_probe_ms') or '–'} |")
    return lines


def cpu_ms_per_write(cpu_cores: dict[str, float], writes_per_s: float) -> float | None:
    """Milliseconds of CPU, all components together, per message written to the broker."""
    return round(sum(cpu_cores.values()) * 1000 / writes_per_s, 3) if writes_per_s else None


#: Cores other processes may take over a rate before the report says they took them from it:
#: the kernel's threads, a terminal, the CPU probe's own process come to less.
OTHERS_NOTED = 0.15


def _cores(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def cpu_lines(result: dict[str, Any]) -> list[str]:
    """CPU per visit, by component, the rate the machine's cores would carry at that cost,
    the messages a visit wrote to the broker and the CPU per message written, and how fast
    the cores ran meanwhile (benchmarks/cpu_probe.py): the figures to compare a change by,
    and the reason a rate saturates."""
    cores = result["machine"]["cpus"]
    lines = []
    for p in result["points"]:
        per = p.get("cpu_ms_per_visit") or {}
        if not per.get("all"):
            continue
        writes = (p.get("broker_messages_per_visit") or {}).get("all")
        lines.append(f"| {p['offered_visits_per_s']:g} | {per.get('broker', 0):g} / "
                     f"{per.get('workers', 0):g} / {per.get('hospitals', 0):g} | "
                     f"{per['all']:g} | {cores * 1000 / per['all']:,.0f} | "
                     f"{writes or '–'} | "
                     f"{round(per['all'] / writes, 3) if writes else '–'} | "
                     f"{p.get('cpu_probe_ms') or '–'} | "
                     f"{_cores(p.get('machine_busy_cores'))} / "
                     f"{_cores(p.get('others_busy_cores'))} |")
    if not lines:
        return []
    busy_elsewhere = [(p["offered_visits_per_s"], p["others_busy_cores"]) for p in
                      result["points"] if (p.get("others_busy_cores") or 0) > OTHERS_NOTED]
    return ["", "## CPU per visit (ms, polling included)", "",
            f"| offered visits/s | broker / workers / hospitals | all | visits/s {cores} cores "
            "would carry at this cost | messages written to the broker per visit | CPU ms "
            "per message written | CPU probe ms (median; lower is a faster machine) | "
            "machine busy / others (cores) |",
            "|---|---|---|---|---|---|---|---|", *lines,
            *(["", "Other processes took CPU from " + ", ".join(
                f"{rate:g} visits/s ({others:g} cores)" for rate, others in busy_elsewhere)
               + ": the machine was busier than broker, workers and hospitals made it, so "
               "those rates measured less than it can carry (the CPU probe, timed in CPU "
               "time, does not show it)."] if busy_elsewhere else []),
            "", "The CPU is read over the whole rate, unlike its latency and throughput: the "
            "warm-up and the drain after the last arrival included, shared over every visit "
            "started (the warm-up's too), and the CPU cores in the first table are the "
            "average over that time. Machine busy: every core's busy time over the rate "
            "(/proc/stat, interrupts and a hypervisor's steal included); others: what "
            "processes other than broker, workers and hospitals took of it. "
            "A message written = one record produced to any topic "
            "(a request or answer at each hop, a table's changelog write, a money event, a "
            "dead letter)."
            + (" The raw ceiling writes each of its messages 6 times; its CPU per message "
               "written is in the capacity section's table." if result.get("ceiling_sweep")
               else "")]


def role_lines(result: dict[str, Any]) -> list[str]:
    """Where the workers' CPU goes, per visit: each role's handler (the rules, the rows
    decoded and encoded, the table writes handed to Faust; `huimin_role_cpu_seconds_total`)
    and what is outside them (Faust's event path, the Kafka client, polling)."""
    points = [p for p in result["points"] if p.get("worker_cpu_ms_per_visit_by_role")]
    totals = ("handlers", "outside")
    roles = sorted({r for p in points for r in p["worker_cpu_ms_per_visit_by_role"]
                    if r not in totals})
    if not roles:
        return []
    lines = ["", "## The workers' CPU by role (ms per visit)", "",
             "| offered visits/s | " + " | ".join(r.replace("_", " ") for r in roles)
             + " | in the handlers | outside them (Faust, the Kafka client, polling) | "
             "share in the handlers |",
             "|" + "---|" * (len(roles) + 4)]
    for p in points:
        by_role = p["worker_cpu_ms_per_visit_by_role"]
        inside, outside = by_role.get("handlers", 0.0), by_role.get("outside")
        whole = inside + outside if outside is not None else None
        lines.append(f"| {p['offered_visits_per_s']:g} | "
                     + " | ".join(f"{by_role[r]:g}" if r in by_role else "–" for r in roles)
                     + f" | {inside:g} | {'–' if outside is None else f'{outside:g}'} | "
                     f"{_ratio(inside, whole) if whole else '–'} |")
    return lines


#: The hospitals' threads, as `bench.json` names them (benchmarks/cpu_accounts.py), and as
#: reported; a column is shown where a rate has it (runs before eb5dc6a, 12-06, had
#: kafka-python's requests thread, and librdkafka's threads were the answers reader's alone).
THREAD_COLUMNS = (("loop", "their loop"),
                  ("librdkafka", "librdkafka's threads (the requests and the answers)"),
                  ("requests", "the requests producer's network thread (kafka-python)"),
                  ("answers", "the answers reader's threads (librdkafka)"),
                  ("dead_letters", "the dead-letter consumer's network thread"),
                  ("other", "the bench's own threads"))


def thread_lines(result: dict[str, Any]) -> list[str]:
    """Where the hospitals' CPU goes, per visit: their own loop against the network threads
    their clients run (docs/performance.md, finding 6)."""
    rows = [(p["offered_visits_per_s"], by_thread) for p in result["points"]
            if (by_thread := p.get("hospitals_cpu_ms_per_visit_by_thread"))]
    columns = [(k, title) for k, title in THREAD_COLUMNS
               if any(k in by_thread for _, by_thread in rows)]
    if not rows:
        return []
    return ["", "## The hospitals' CPU by thread (ms per visit)", "",
            "| offered visits/s | " + " | ".join(title for _, title in columns) + " |",
            "|" + "---|" * (len(columns) + 1),
            *(f"| {rate:g} | " + " | ".join(f"{by_thread[k]:g}" if k in by_thread else "–"
                                            for k, _ in columns) + " |"
              for rate, by_thread in rows)]


def profile_lines(result: dict[str, Any]) -> list[str]:
    """The report's section: per rate and component, where its samples were."""
    lines: list[str] = []
    for p in result["points"]:
        for name, summary in sorted((p.get("profile") or {}).items()):
            folder = f", {p['folder']}/profiles/" if p.get("folder") else ""
            lines += ["", f"### {p['offered_visits_per_s']:g} visits/s: {name} "
                      f"({summary['samples']:,} samples{folder})", "",
                      "| in the function (self) | share | under the function (inclusive, "
                      "trunk left out) | share |", "|---|---|---|---|"]
            for (a, a_share), (b, b_share) in zip_longest(
                    summary["self"], summary["inclusive"], fillvalue=("", None)):
                lines.append(f"| {a} | {_percent(a_share)} | {b} | {_percent(b_share)} |")
            lines.append("")
            lines.append("Threads: " + ", ".join(f"{t} {_percent(s)}"
                                                 for t, s in summary["threads"]) + ".")
    if not lines:
        return []
    return ["", "## Where the time goes (py-spy, share of each component's samples; raw stacks "
            "in each rate's folder)", *lines]


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f} %"


def memory_lines(result: dict[str, Any]) -> list[str]:
    """Each component's resident memory as each rate began and at its peak, and how fast it
    grew per visit while the second half of the visits arrived: what a longer run would add
    (docs/performance.md, Memory)."""
    lines = []
    for p in result["points"]:
        start, peak = p.get("start_rss_mib") or {}, p.get("peak_rss_mib") or {}
        growth = p.get("rss_growth_kib_per_visit") or {}
        if not start or not peak:
            continue
        parts = [f"{name} {start[name]} → {peak[name]}"
                 + (f" (+{growth[name]:g} KiB/visit)" if name in growth else "")
                 for name in start if name != "total" and name in peak]
        dropped = p.get("dropped_visits") or 0
        lines.append(f"- {p['offered_visits_per_s']:g} visits/s, {p.get('visits', 0):,} "
                     "visits" + (f" ({dropped:,} dropped: no growth per visit, as visits "
                                 "started only as others finished)" if dropped else "")
                     + ": " + "; ".join(parts))
    if not lines:
        return []
    return ["", "## Memory (resident MiB, as the rate began → peak; growth per visit over the "
            "second half of the arrivals)", "", *lines]


def past_every_answer(sl: dict[str, Any], key: str) -> bool:
    """Whether a slice's latency `key` is None because settlements went unanswered (ranked
    last), not because every answer was a refusal (whose latency is not counted). Slices
    from before `unanswered` was kept say it by a share answered under 1."""
    unanswered = sl.get("unanswered")
    if unanswered is None:
        unanswered = sl["settlements"] and (sl["answered_share"] or 0) < 1
    return bool(unanswered) and sl[key] is None


def _slice_ms(sl: dict[str, Any], key: str) -> str | float:
    """A slice's latency as the report shows it: ∞ past every answer, – where none counts."""
    if past_every_answer(sl, key):
        return "∞"
    return "–" if sl[key] is None else sl[key]


def timeline_lines(result: dict[str, Any]) -> list[str]:
    """Each rate of two minutes or more, slice by slice (benchmarks/timeline.py): when a
    platform that did not keep up fell behind, and how its memory grew meanwhile."""
    rows = []
    for p in result["points"]:
        for sl in p.get("timeline") or []:
            rss = sl.get("rss_mib") or {}
            share = sl.get("answered_share")
            rows.append(
                f"| {p['offered_visits_per_s']:g} | {round(sl['from_s'] / 60, 1):g}–"
                f"{round(sl['to_s'] / 60, 1):g} | "
                f"{sl['settlements']:,} | {'–' if share is None else f'{share * 100:.1f} %'} | "
                f"{_slice_ms(sl, 'p50_ms')} | {_slice_ms(sl, 'p99_ms')} | "
                f"{sl['dropped_visits']:,} | "
                f"{rss.get('broker', '–')} / {rss.get('workers', '–')} / "
                f"{rss.get('hospitals', '–')} |")
    if not rows:
        return []
    return ["", "## Over time (rates of two minutes or more; settlements by the minute they "
            "were sent)", "",
            "| offered visits/s | minutes | settlements sent | answered | p50 | p99 | visits "
            "dropped | RSS MiB at the end (broker / workers / hospitals) |",
            "|" + "---|" * 8, *rows]
