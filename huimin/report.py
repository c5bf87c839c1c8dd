"""What a run shows a person: counts, money, latency by route and by hop, the oracle verdict.
Also written to `summary.json` and `results.jsonl` in the run's output folder."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from huimin.run import RunReport
from messages.codes import Infno
from messages.trace import hop_durations_ms
from settlement.money import yuan


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {"count": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95),
            "p99": percentile(v, 99), "max": v[-1] if v else math.nan}


def summarise(report: RunReport) -> dict[str, Any]:
    res = report.result
    routes: Counter[str] = Counter()
    money = Counter()
    outcomes: Counter[str] = Counter()
    settle_latency: dict[str, list[float]] = defaultdict(list)
    hops: dict[str, list[float]] = defaultdict(list)
    for ex in res.exchanges.values():
        if ex.answer is None:
            outcomes[f"{ex.infno} unanswered"] += 1
            continue
        code = "ok" if ex.answer["infcode"] == 0 else ex.answer.get("err_code") or "error"
        outcomes[f"{ex.infno} {code}"] += 1
        if ex.infno == Infno.OUTPATIENT_SETTLE and ex.latency_ms is not None:
            settle_latency[ex.route].append(ex.latency_ms)
            for hop, ms in hop_durations_ms(ex.trace).items():
                hops[f"{ex.route} {hop}"].append(ms)
    for s in res.sessions:
        setl = s.settlement
        if setl is None:
            continue
        exchange = res.exchanges[s.answers[Infno.OUTPATIENT_SETTLE]["inf_refmsgid"]]
        routes[exchange.route] += 1
        for k in ("medfee_sumamt", "hifp_pay", "acct_pay", "psn_cash_pay"):
            money[k] += setl[k]
    cmp = report.comparison
    return {
        "visits": len(res.sessions),
        "settlements_by_route": dict(routes),
        "answers_by_outcome": dict(sorted(outcomes.items())),
        "money_fen": dict(money),
        "settlement_latency_ms": {r: latency_summary(v) for r, v in sorted(settle_latency.items())},
        "hop_latency_ms_p50": {h: percentile(sorted(v), 50) for h, v in sorted(hops.items())},
        "oracle": {"settlements_expected": cmp.settlements_expected,
                   "settlements_equal": cmp.settlements_equal,
                   "answers_compared": cmp.answers_compared, "answers_equal": cmp.answers_equal,
                   "mismatches": cmp.mismatches},
        "unanswered": len(res.unanswered),
        "duplicate_answers": res.duplicate_answers,
        "conflicting_duplicates": res.conflicting_duplicates,
        "unexpected_answers": res.unexpected_answers,
        "timing_s": {"setup": report.setup_s, "platform_ready": report.sign_in_s,
                     "visits": res.wall_s, "total": report.total_s},
        "rate": report.options.rate,
        "bootstrap": report.bootstrap,
        "seed": report.options.world.seed,
        "ok": report.ok,
    }


def write_outputs(report: RunReport, summary: dict[str, Any]) -> None:
    out = report.out_dir
    (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    with open(out / "results.jsonl", "wb") as f:
        for s in report.result.sessions:
            f.write(orjson.dumps({
                "visit_no": s.visit.visit_no,
                "outcome": "settled" if s.settlement else (s.failed or {}).get("err_code", ""),
                "setlinfo": s.settlement}) + b"\n")


def print_summary(summary: dict[str, Any], out_dir: Path, console: Console) -> None:
    routes = summary["settlements_by_route"]
    money = summary["money_fen"]
    console.print()
    console.print(f"[bold]Visits[/] {summary['visits']:,}   "
                  f"[bold]settled[/] local {routes.get('local', 0):,}, "
                  f"cross-province {routes.get('cross', 0):,}")
    console.print(f"[bold]Paid[/] medical fees ¥{yuan(money.get('medfee_sumamt', 0))} = "
                  f"fund ¥{yuan(money.get('hifp_pay', 0))} + "
                  f"personal account ¥{yuan(money.get('acct_pay', 0))} + "
                  f"cash ¥{yuan(money.get('psn_cash_pay', 0))}")

    console.print("[bold]Answers by transaction and outcome[/]")
    answers = Table()
    answers.add_column("infno")
    answers.add_column("outcome")
    answers.add_column("count", justify="right")
    for key, n in summary["answers_by_outcome"].items():
        infno, outcome = key.split(" ", 1)
        answers.add_row(infno, outcome, f"{n:,}")
    console.print(answers)

    console.print("[bold]2207 settlement round trip (ms), by route[/]")
    lat = Table()
    for col in ("route", "count", "p50", "p95", "p99", "max"):
        lat.add_column(col, justify="right" if col != "route" else "left")
    for route, s in summary["settlement_latency_ms"].items():
        lat.add_row(route, f"{s['count']:,}", *(f"{s[k]:.0f}" for k in ("p50", "p95", "p99",
                                                                        "max")))
    console.print(lat)
    hops = summary["hop_latency_ms_p50"]
    if hops:
        console.print("[bold]Median per hop (ms)[/]: " + "; ".join(
            f"{h} {ms:.0f}" for h, ms in hops.items() if h.startswith("cross")))

    o = summary["oracle"]
    verdict = (f"{o['settlements_equal']:,} of {o['settlements_expected']:,} settlements equal "
               f"to the oracle ({o['answers_equal']:,} of {o['answers_compared']:,} answers)")
    console.print(("[bold green]PASS[/] " if summary["ok"] else "[bold red]FAIL[/] ") + verdict)
    problems = [f"{summary['unanswered']} requests unanswered" if summary["unanswered"] else "",
                f"{summary['conflicting_duplicates']} conflicting duplicate answers"
                if summary["conflicting_duplicates"] else ""]
    for line in [p for p in problems if p] + o["mismatches"][:10]:
        console.print(f"  [red]- {line}[/]")
    t = summary["timing_s"]
    console.print(f"Wall time {t['total']:.1f} s (platform ready after {t['platform_ready']:.1f} "
                  f"s, visits {t['visits']:.1f} s).  Output: {out_dir}/")
