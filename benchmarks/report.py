"""The benchmark's outputs: JSON (everything, with the machine and settings), a Markdown
report, and a PNG plot of latency percentiles against offered load, huimin beside the raw
broker ceiling."""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


def _ms(value: Any) -> Any:
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
        f"linger {s['linger_ms']} ms · fetch wait {s['fetch_wait_ms']} ms · health-record steps "
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
           "message rate, on a broker of its own; its latency compares with the cross-province "
           "route's (a local settlement crosses 4 topics): cross p99 ÷ raw p99, – where either "
           "left anything unanswered. Throughput ÷ "
           "raw at this rate = settlements answered (OK or refused) per second ÷ raw messages "
           "through per second at the same offered rate (huimin also carries the rest of each "
           "visit: 5–7 requests per settlement), so near 100 % wherever both keep up; the "
           "ratio of what each can carry is under Capacity below. "
           if with_ceiling else "No raw ceiling was measured in this run (--no-ceiling). ")
        + "CPU cores: the average over the whole rate, its warm-up and drain included.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for p in result["points"]:
        lat = {k: _ms(v) for k, v in p["settlement_latency_ms"].get("all", {}).items()}
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


def _setting(value: Any) -> str:
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
        return " / ".join(_setting(v) for v in value)
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
                "(`--find-capacity` searches for it)." if above else ".")]
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


#: A target rate whose CPU budget per visit the plot draws: issue #8's 1,000 settlements/s.
TARGET_VISITS_PER_S = 1000


def cpu_segments(point: dict[str, Any]) -> list[tuple[str, float]]:
    """A rate's CPU per visit in the parts the report splits it into (ms): the broker, the
    workers' handlers and the rest of the workers, the hospitals' loop and kafka-python's
    network threads; a point without the splits gives the three components whole."""
    per = point.get("cpu_ms_per_visit") or {}
    roles = point.get("worker_cpu_ms_per_visit_by_role") or {}
    threads = point.get("hospitals_cpu_ms_per_visit_by_thread") or {}
    parts = [("broker", per.get("broker", 0.0))]
    if "handlers" in roles and "outside" in roles:
        parts += [("worker: the handlers", roles["handlers"]),
                  ("worker: Faust, the client, polling", roles["outside"])]
    else:
        parts.append(("workers", per.get("workers", 0.0)))
    if threads:
        clients = sum(v for k, v in threads.items() if k in ("requests", "answers",
                                                             "dead_letters"))
        parts += [("hospitals: their loop", threads.get("loop", 0.0)),
                  ("hospitals: kafka-python's threads", clients),
                  ("hospitals: the bench's own threads", threads.get("other", 0.0))]
    else:
        parts.append(("hospitals", per.get("hospitals", 0.0)))
    return parts


def _past_every_answer(sl: dict[str, Any], key: str) -> bool:
    """Whether a slice's latency `key` is None because settlements went unanswered (ranked
    last), not because every answer was a refusal (whose latency is not counted). Slices
    from before `unanswered` was kept say it by a share answered under 1."""
    unanswered = sl.get("unanswered")
    if unanswered is None:
        unanswered = sl["settlements"] and (sl["answered_share"] or 0) < 1
    return bool(unanswered) and sl[key] is None


def timeline_curves(timeline: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """A rate's slices (benchmarks/timeline.py) as the plot draws them: where each slice
    starts and how long it is (minutes; the last may be shorter), its middle, its p50 and
    p99 (None where none was sent or counts), whether its p99 is past every answer (a
    settlement never answered ranked there, which a log axis cannot place) and the visits it
    dropped a minute."""
    curves: dict[str, list[Any]] = {"start": [], "minutes": [], "minute": [], "p50": [],
                                    "p99": [], "past_every_answer": [],
                                    "dropped_per_minute": []}
    for sl in timeline:
        minutes = (sl["to_s"] - sl["from_s"]) / 60
        curves["start"].append(sl["from_s"] / 60)
        curves["minutes"].append(minutes)
        curves["minute"].append((sl["from_s"] + sl["to_s"]) / 120)
        curves["p50"].append(sl["p50_ms"])
        curves["p99"].append(sl["p99_ms"])
        curves["past_every_answer"].append(_past_every_answer(sl, "p99_ms"))
        curves["dropped_per_minute"].append(sl["dropped_visits"] / minutes if minutes else 0.0)
    return curves


def _plain_numbers(*axes: Any) -> None:
    """Ticks of log axes as 300 and 2000, not 3×10², as the report's tables say them; the
    minor ticks labelled only where matplotlib would label them (an axis spanning little)."""
    import matplotlib.ticker

    class Plain(matplotlib.ticker.LogFormatterSciNotation):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    for axis in axes:
        axis.set_major_formatter(Plain())
        axis.set_minor_formatter(Plain(labelOnlyBase=False))


def _at_the_top(axis: Any, xs: list[float], colour: Any, label: str) -> None:
    """Triangles at the top of a latency panel where a p99 is past every answer, which a
    log axis has no place for."""
    import matplotlib.transforms

    if xs:
        top = matplotlib.transforms.blended_transform_factory(axis.transData, axis.transAxes)
        axis.plot(xs, [0.97] * len(xs), "^", color=colour, transform=top, label=label)


def _rate_colours(n: int) -> list[Any]:
    """One colour a rate: matplotlib's ten distinct ones, or a graded map for more."""
    import matplotlib

    if n <= 10:
        return list(matplotlib.colormaps["tab10"].colors[:n])
    return [matplotlib.colormaps["viridis"](i / (n - 1)) for i in range(n)]


def _plot_timeline(axis: Any, points: list[dict[str, Any]], limit: float | None) -> None:
    """The rates of two minutes or more over time: p50 and p99 by the minute the settlements
    were sent, and the visits dropped a minute on an axis of their own. The legend names each
    rate once by its colour, and the marks once for all (so many rates still fit)."""
    import matplotlib.lines
    import matplotlib.patches
    import matplotlib.ticker

    dropped_axis = axis.twinx()
    axis.set_zorder(dropped_axis.get_zorder() + 1)  # the latencies over the dropped bars
    axis.patch.set_visible(False)
    long = [p for p in points if p.get("timeline")]
    keys: list[Any] = []
    past_any = False
    for colour, p in zip(_rate_colours(len(long)), long, strict=True):
        curves = timeline_curves(p["timeline"])
        axis.plot(curves["minute"], curves["p50"], ":", marker="o", color=colour)
        axis.plot(curves["minute"], curves["p99"], "-", marker="o", color=colour)
        past = [m for m, flag in zip(curves["minute"], curves["past_every_answer"], strict=True)
                if flag]
        past_any = past_any or bool(past)
        _at_the_top(axis, past, colour, "_")
        dropped_axis.bar(curves["start"], curves["dropped_per_minute"], curves["minutes"],
                         align="edge", color=colour, alpha=0.2)
        keys.append(matplotlib.patches.Patch(color=colour,
                                             label=f"{p['offered_visits_per_s']:g} visits/s"))
    line = matplotlib.lines.Line2D
    keys += [line([], [], linestyle=":", marker="o", color="grey", label="p50"),
             line([], [], linestyle="-", marker="o", color="grey", label="p99")]
    if past_any:
        keys.append(line([], [], linestyle="", marker="^", color="grey",
                         label="p99 past every answer (some never answered)"))
    keys.append(matplotlib.patches.Patch(color="grey", alpha=0.2,
                                         label="visits dropped a minute (right axis)"))
    if limit:
        keys.append(axis.axhline(limit, linestyle="--", color="tab:red",
                                 label=f"p99 target {limit:g} ms"))
    axis.set(xlabel="minutes into the rate (settlements by the minute they were sent)",
             ylabel="latency (ms)", yscale="log",
             title="Over time (rates of two minutes or more)")
    _plain_numbers(axis.yaxis)
    dropped_axis.set_ylabel("visits dropped a minute")
    dropped_axis.set_ylim(0, max(1.0, dropped_axis.get_ylim()[1]))  # none dropped: 0 to 1
    dropped_axis.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.legend(handles=keys, fontsize=8, loc="upper left", bbox_to_anchor=(1.05, 1.0),
                ncol=1 + len(long) // 12)


def _past_every_answer_at_rate(point: dict[str, Any]) -> bool:
    """A rate whose p99 over all routes is a settlement never answered: the routes' own
    percentiles, which the plot draws, count answers only."""
    whole = point["settlement_latency_ms"].get("all") or {}
    return bool(whole.get("unanswered")) and whole.get("p99") is None


def figure(result: dict[str, Any]) -> Figure:
    """The bench's plot: latency and throughput against offered load beside the raw ceiling,
    where a visit's CPU goes, and, when a rate lasted two minutes or more, that rate over
    time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    x = [p["offered_settlements_per_s"] for p in points]
    ceiling = sorted([p["ceiling"] for p in points if p.get("ceiling")]
                     + (result.get("ceiling_sweep") or []), key=lambda c: c["offered_per_s"])
    over_time = any(p.get("timeline") for p in points)
    layout = [["lat", "thr", "cpu"]] + ([["time", "time", "time"]] if over_time else [])
    fig, axes = plt.subplot_mosaic(layout, figsize=(18, 9 if over_time else 4.5))
    lat_ax, thr_ax, cpu_ax = axes["lat"], axes["thr"], axes["cpu"]
    plotted: list[float] = []
    for q, style in (("p50", ":"), ("p99", "-")):
        for route, colour in (("local", "tab:blue"), ("cross", "tab:orange")):
            y = [p["settlement_latency_ms"].get(route, {}).get(q) for p in points]
            lat_ax.plot(x, y, style, marker="o", color=colour, label=f"huimin {route} {q}")
            plotted += [v for v in y if v]
        raw = [(c["offered_per_s"], c["latency_ms"].get(q)) for c in ceiling]
        plotted += [v for _, v in raw if v]
        if raw:
            lat_ax.plot(*zip(*raw, strict=True), style, marker="s", color="tab:grey",
                        label=f"raw ceiling {q}")
    _at_the_top(lat_ax, [at for at, p in zip(x, points, strict=True)
                         if _past_every_answer_at_rate(p)],
                "tab:red", "huimin p99 past every answer (over 1 % never answered)")
    limit = (result.get("capacity") or {}).get("p99_limit_ms")
    if limit:
        lat_ax.axhline(limit, linestyle="--", color="tab:red", label=f"p99 target {limit:g} ms")
    # log x: huimin's rates and the raw ceiling's, tens and thousands a second, both readable;
    # with nothing answered at any rate, linear axes (a log axis with no data cannot be drawn)
    scale = "log" if plotted else "linear"
    lat_ax.set(xlabel="offered per second (huimin: settlements; raw ceiling: messages)"
               if ceiling else "offered settlements per second",
               ylabel="latency (ms)", xscale=scale, yscale=scale,
               title="Latency against offered load")
    if plotted:
        _plain_numbers(lat_ax.xaxis, lat_ax.yaxis)
    lat_ax.legend(fontsize=8)
    achieved = [p["achieved_settlements_per_s"] for p in points]
    if ceiling:
        thr_ax.plot([c["offered_per_s"] for c in ceiling],
                    [c["achieved_per_s"] for c in ceiling], marker="s", color="tab:grey",
                    label="raw ceiling messages/s")
    thr_ax.plot(x, achieved, marker="o", zorder=3,  # over the ceiling's squares where they meet
                label="huimin settlements/s")
    offered = [*x, *(c["offered_per_s"] for c in ceiling)]
    thr_ax.plot([min(offered), max(offered)], [min(offered), max(offered)], "--",
                color="lightgrey", label="offered")
    # log where every figure is above 0 (a rate at 0 has no place on one): tens and
    # thousands a second both readable, with no decades spent below the lowest rate
    positive = all(v > 0 for v in [*achieved, *(c["achieved_per_s"] for c in ceiling)])
    thr_ax.set(xlabel="offered per second", ylabel="achieved per second",
               title="Throughput", xscale="log" if positive else "symlog",
               yscale="log" if positive else "symlog")
    if positive:
        _plain_numbers(thr_ax.xaxis, thr_ax.yaxis)
    thr_ax.legend(fontsize=8)
    measured = [p for p in points if (p.get("cpu_ms_per_visit") or {}).get("all")]
    labels = [f"{p['offered_visits_per_s']:g}" for p in measured]
    segments = [dict(cpu_segments(p)) for p in measured]
    bottoms = [0.0] * len(measured)
    for name in dict.fromkeys(name for parts in segments for name in parts):
        heights = [parts.get(name, 0.0) for parts in segments]
        cpu_ax.bar(labels, heights, bottom=bottoms, label=name)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    budget = result["machine"]["cpus"] * 1000 / TARGET_VISITS_PER_S
    cpu_ax.axhline(budget, linestyle="--", color="tab:red",
                   label=f"all a visit may take at {TARGET_VISITS_PER_S:,} visits/s")
    cpu_ax.set(xlabel="offered visits/s", ylabel="CPU per visit (ms)",
               title="Where a visit's CPU goes",
               ylim=(0, max([*bottoms, budget]) * 1.12))  # the tallest bar clear of the frame
    cpu_ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars
    fig.suptitle(f"huimin on {result['settings']['broker']}, "
                 f"{result['machine']['cpus']} cores")
    if over_time:
        _plot_timeline(axes["time"], points, limit)
    fig.tight_layout()
    return fig


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = figure(result)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
#: reported.
THREAD_COLUMNS = (("loop", "their loop"),
                  ("requests", "the requests producer's network thread"),
                  ("answers", "the answers consumer's network thread"),
                  ("dead_letters", "the dead-letter consumer's network thread"),
                  ("other", "the bench's own threads"))


def thread_lines(result: dict[str, Any]) -> list[str]:
    """Where the hospitals' CPU goes, per visit: their own loop against the network threads
    kafka-python runs for each client (docs/performance.md, finding 6)."""
    lines = []
    for p in result["points"]:
        by_thread = p.get("hospitals_cpu_ms_per_visit_by_thread") or {}
        if by_thread:
            lines.append(f"| {p['offered_visits_per_s']:g} | " + " | ".join(
                f"{by_thread[k]:g}" if k in by_thread else "–" for k, _ in THREAD_COLUMNS)
                + " |")
    if not lines:
        return []
    return ["", "## The hospitals' CPU by thread (ms per visit)", "",
            "| offered visits/s | " + " | ".join(title for _, title in THREAD_COLUMNS) + " |",
            "|" + "---|" * (len(THREAD_COLUMNS) + 1), *lines]


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


def _slice_ms(sl: dict[str, Any], key: str) -> str | float:
    """A slice's latency as the report shows it: ∞ past every answer, – where none counts."""
    if _past_every_answer(sl, key):
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


def comparison(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Two runs side by side, rate by rate: what a change did. The settings that differ come
    first, and each rate's CPU probe beside it, since a machine that ran slower during one run
    explains a difference as well as the change does (benchmarks/cpu_probe.py)."""
    keys = sorted(set(before["settings"]) | set(after["settings"]))
    differ = [f"{k} {_setting(before['settings'].get(k))} → "
              f"{_setting(after['settings'].get(k))}" for k in keys
              if before["settings"].get(k) != after["settings"].get(k)]
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
            f"{_ms(bl.get('p50', '–'))} → {_ms(al.get('p50', '–'))} "
            f"({_change(bl.get('p50'), al.get('p50'))}) | {_ms(bl.get('p99', '–'))} → "
            f"{_ms(al.get('p99', '–'))} ({_change(bl.get('p99'), al.get('p99'))}) | "
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
