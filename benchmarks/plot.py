"""The benchmark's PNG: latency percentiles against offered load, huimin beside the raw
broker ceiling, with each rate's CPU split and its latency over time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.report import past_every_answer

if TYPE_CHECKING:
    from matplotlib.figure import Figure


#: A target rate whose CPU budget per visit the plot draws: issue #8's 1,000 settlements/s.
TARGET_VISITS_PER_S = 1000


def cpu_segments(point: dict[str, Any]) -> list[tuple[str, float]]:
    """A rate's CPU per visit in the parts the report splits it into (ms): the broker, the
    workers' handlers and the rest of the workers, the hospitals' loop and their Kafka
    clients' network threads; a point without the splits gives the three components whole."""
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
        clients = sum(v for k, v in threads.items() if k not in ("loop", "other"))
        parts += [("hospitals: their loop", threads.get("loop", 0.0)),
                  ("hospitals: their Kafka clients' threads", clients),
                  ("hospitals: the bench's own threads", threads.get("other", 0.0))]
    else:
        parts.append(("hospitals", per.get("hospitals", 0.0)))
    return parts


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
        curves["past_every_answer"].append(past_every_answer(sl, "p99_ms"))
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
        return list(matplotlib.colormaps["tab10"].colors[:n])  # type: ignore[attr-defined]
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
    fig, axes = plt.subplot_mosaic(layout,  # type: ignore[arg-type]  # lists of names
                                   figsize=(18, 9 if over_time else 4.5))
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
