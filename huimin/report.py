"""What a run shows a person: counts, money, latency by route and by hop, the oracle verdict.
Also written to `summary.json` and `results.jsonl` in the run's output folder."""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from huimin.logfiles import LogHeader, whole_file, write_records
from huimin.run import RunReport
from huimin.run_checks import (
    Accounting,
    BadRequestCheck,
    DailyReconciliationCheck,
    counted,
    distinct_dead_letters,
)
from messages.codes import EHR, SETTLEMENTS, ErrorCode, Infno
from messages.envelope import is_cross_province, province_of
from messages.platform import CROSS, LOCAL
from messages.trace import hop_durations_ms
from settlement.clearing import ClearingStatement
from settlement.money import yuan
from simulators.bad_messages import BadMessage
from simulators.cluster_watch import lost_reason
from simulators.faults import FaultPlan
from simulators.regions import PROVINCES
from simulators.visit_run import Exchange, HospitalRunResult
from simulators.visits import GENERATOR_VERSION, VisitSpec
from simulators.world import WorldSpec, world_tag
from streams.broker import BOOTSTRAP_ENV


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    # in exact arithmetic: 99.9 / 100 * 1000 is 999.0000000000001 in floats, whose ceiling
    # took the maximum for the 999th value
    rank = max(1, math.ceil(Fraction(str(q)) * len(sorted_values) / 100))
    return sorted_values[rank - 1]


def latency_summary(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {"count": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95),
            "p99": percentile(v, 99), "max": v[-1] if v else math.nan}


def fell_behind(late_ms: float, options: str) -> str:
    return (f"[yellow]The hospitals fell behind the schedule (up to {late_ms / 1000:.1f} s "
            f"late): this platform and machine (with whatever else runs on it) carry less "
            f"than {options} offered, and the latencies include that wait. Offer less to "
            "measure them unloaded.[/]")


def settled_in_ms(ex: Exchange) -> float | None:
    """A settlement's round trip, if it was answered OK; None for any other request."""
    return ex.latency_ms if ex.answers and ex.infno in SETTLEMENTS and \
        ex.answers[0]["infcode"] == 0 else None


def replay_pace(result: HospitalRunResult, settlements_ms: Sequence[float],
                scheduled_s: float) -> list[str]:
    """How a replay kept to its schedule, for its user: the settlements' round trip
    (`settled_in_ms` of each), and a warning where the hospitals started visits late (a
    schedule faster than the platform or this machine carries: the latencies then include
    the wait)."""
    lat = latency_summary(list(settlements_ms))
    lag, own = result.start_lag.p99_at_most_ms(), result.loop_lag.p99_at_most_ms()
    waited = result.waited_for_person
    with_waits = (f" ({lag:,g} ms counting the {'visit' if waited == 1 else 'visits'} that "
                  "waited for the same person's visit, below)") if waited and own and \
        own != lag else ""
    late = " (answers that came after their visit was given up included)" \
        if result.late_answers else ""
    lines = [f"Settlements (2207/2304) {lat['count']:,}: round trip p50 {lat['p50']:.0f} ms, "
             f"p99 {lat['p99']:.0f} ms{late}. Arrivals were scheduled over "
             f"{scheduled_s:.1f} s; 99 % of the visits started within {(own or lag):,g} ms "
             f"of theirs{with_waits}"
             ] if lat["count"] else []
    if result.loop_lag.p99_at_most_ms() >= 1_000:  # a wait for the person's visit is no sign
        lines.append(fell_behind(result.loop_lag.max_ms, "--rate/--speed"))
    if n := result.waited_for_person:
        lines.append(f"{n:,} visit{'s' if n != 1 else ''} waited for the same person's visit "
                     f"before {'them' if n != 1 else 'it'} to end (a person is at one hospital "
                     "at a time); the start lag includes the wait.")
    return lines


#: What a settlement's payment is made of, fen: the fees, and who paid them.
PAID = ("medfee_sumamt", "hifp_pay", "acct_pay", "psn_cash_pay")


class SettledMoney:
    """What the visits' settlements paid, in all, by route, by the insured person's province
    and by the month of settlement: a summary's money (`huimin compare` reads it), counted
    a visit at a time (a replay's visits are not kept)."""

    def __init__(self) -> None:
        self.routes: Counter[str] = Counter()
        self.money: Counter[str] = Counter()
        self.by_province: dict[str, Counter[str]] = defaultdict(Counter)  # the insured's
        self.by_month: dict[str, Counter[str]] = defaultdict(Counter)  # of the settlement time

    def add(self, setl: dict[str, Any] | None) -> None:
        """A visit's settlement in force at its end (None: none)."""
        if setl is None:
            return
        cross = is_cross_province(setl["mdtrtarea_admvs"], setl["insuplc_admdvs"])
        self.routes[CROSS if cross else LOCAL] += 1
        insured = self.by_province[province_of(setl["insuplc_admdvs"])]
        month = self.by_month[setl["setl_time"][:7]]
        for part in (insured, month):
            part["settlements"] += 1
        for k in PAID:
            self.money[k] += setl[k]
            insured[k] += setl[k]
            month[k] += setl[k]

    def to_summary(self) -> dict[str, Any]:
        return {
            "visits_settled_by_route": dict(self.routes),
            "money_fen_by_insured_province": {p: dict(self.by_province[p])
                                              for p in sorted(self.by_province)},
            "money_fen_by_month": {m: dict(self.by_month[m]) for m in sorted(self.by_month)},
            "money_fen": dict(self.money)}


def summarise(report: RunReport) -> dict[str, Any]:
    res = report.result
    outcomes: Counter[str] = Counter()
    settle_latency: dict[str, list[float]] = defaultdict(list)
    hops: dict[str, list[float]] = defaultdict(list)
    for ex in res.exchanges.values():
        for ans in ex.answers[:ex.sends]:  # one a send: answers given again are in Accounting
            outcomes[f"{ex.infno} {_outcome(ans)}"] += 1
        if ex.answers and ex.infno in SETTLEMENTS and ex.answers[0]["infcode"] == 0 \
                and ex.latency_ms is not None:
            settle_latency[ex.route].append(ex.latency_ms)
            for hop, ms in hop_durations_ms(ex.trace).items():
                hops[f"{ex.route} {hop}"].append(ms)
    bad_infno = {b.msgid: b.infno for b in report.bad}
    for msgid, answers in res.bad_answers.items():
        for ans in answers[:1]:  # each bad request is sent once
            outcomes[f"{bad_infno.get(msgid) or '?'} {_outcome(ans)}"] += 1
    for infno, ans in res.daily.answered if res.daily else []:
        outcomes[f"{infno} {_outcome(ans)}"] += 1
    paid = SettledMoney()
    for s in res.sessions:
        paid.add(s.settlement)
    money = paid.to_summary()
    cmp, acc, bad = report.comparison, report.accounting, report.bad_requests
    return {
        "ehr": {**ehr_summary(res.exchanges.values()),
                "audit_events": report.ehr_audit_events,
                "audit_events_expected": report.ehr_audit_events_expected,
                "operator_audit_events": report.ehr_operator_audit_events},
        "visits": len(res.sessions),
        "visits_settled_by_route": money["visits_settled_by_route"],
        "money_fen_by_insured_province": money["money_fen_by_insured_province"],
        "money_fen_by_month": money["money_fen_by_month"],
        "answers_by_outcome": dict(sorted(outcomes.items())),
        "dead_letters_by_code": dict(Counter(
            d.error_code for d in distinct_dead_letters(res, report.bad))),
        "accounting": accounting_summary(acc),
        "bad_requests": bad_requests_summary(bad),
        "money_fen": money["money_fen"],
        "settlement_latency_ms": {r: latency_summary(v) for r, v in sorted(settle_latency.items())},
        # by route, each route's hops in the order a message takes them (as first seen)
        "hop_latency_ms_p50": {h: percentile(sorted(v), 50) for h, v in sorted(
            hops.items(), key=lambda hop: hop[0].split(" ", 1)[0])},
        "oracle": {"settlements_expected": cmp.settlements_expected,
                   "settlements_equal": cmp.settlements_equal,
                   "answers_compared": cmp.answers_compared, "answers_equal": cmp.answers_equal,
                   "timed_out_visits": cmp.timed_out, "mismatches": cmp.mismatches},
        "clearing": {"months": report.clearing_months, "equal_to_oracle": report.clearing_ok},
        "reconciliation": {"sent": report.reconciliation.sent,
                           "balanced": report.reconciliation.balanced,
                           "equal_to_oracle": report.reconciliation.equal_to_oracle,
                           "problems": report.reconciliation.problems,
                           "not_sent": report.reconciliation.not_sent},
        "daily_reconciliation": daily_reconciliation_summary(report.daily_reconciliation),
        # why the visits stopped early (`visits` of `visits_planned` arrived): the cluster
        # refused every connection in silence (simulators/cluster_watch.py)
        "cluster_lost": lost_reason(report.options.stop_after_unreachable_s, res.cluster_lost)
        if res.cluster_lost else None,
        "visits_planned": cmp.visits,
        "timed_out": len(res.timed_out),
        "late_answers": res.late_answers,  # after their visit timed out: not an error
        # where the first unanswered requests went on the cluster (streams/trail.py)
        "unanswered_trail": report.trail.to_dict() if report.trail else None,
        "unanswered_where": report.trail.lines(
            {m: res.exchanges[m].infno for m in res.timed_out if m in res.exchanges})
        if report.trail else [],
        "unexpected_answers": res.unexpected_answers,
        "unexpected_answer_msgids": res.unexpected_msgids,  # the first 20
        "sign_ins_answered_again": res.sign_ins_answered_again,
        # answers/dead letters shown past a batch not stored yet (streams/offset_gaps.py)
        "read_jumps_fetched_again": res.read_jumps,
        "read_holes": res.read_holes,
        # how late the hospitals started visits against the schedule (p99 at most, the
        # latest): the latencies include that wait
        "hospitals_late_ms": {"p99": res.loop_lag.p99_at_most_ms(), "max": res.loop_lag.max_ms},
        "timing_s": {"setup": report.setup_s, "platform_ready": report.sign_in_s,
                     "visits": res.wall_s, "total": report.total_s},
        "rate": report.options.rate,
        "faults": str(report.options.faults),
        "store": report.options.store,
        "platform": platform_settings(
            report.options.broker, report.options.workers + report.options.faults.join_worker,
            report.options.partitions, report.options.store),
        "worker_kills": report.worker_kills,
        "redelivered_answers": report.comparison.redelivered,
        "bootstrap": report.bootstrap,
        "seed": report.options.world.seed,
        "world": world_tag(report.options.world),  # the seed, persons and policy settled by
        # what decides the visits (not the policy): two runs alike here settled the same ones
        "scenario": scenario(report.options.world, report.options.visits,
                             report.bad_per_kind, str(report.options.faults), GENERATOR_VERSION),
        "ok": report.ok,
    }


def platform_settings(broker: str, workers: int | None, partitions: int | None,
                      store: str | None) -> dict[str, Any]:
    """How the platform that answered was set up, for a reader of two summaries side by side
    (`huimin compare` does not judge it: none of it changes an answer). `broker`: the local
    broker started (tansu, kafka), or `cluster` for one given by KAFKA_BOOTSTRAP_SERVERS or
    --bootstrap; `workers` counts those that joined (`join-worker`); None where this process
    did not start the platform and cannot know."""
    if os.environ.get(BOOTSTRAP_ENV) and broker != "cluster":
        broker = "cluster"
    return {"broker": broker, "workers": workers, "partitions": partitions, "store": store}


def accounting_summary(acc: Accounting) -> dict[str, int]:
    return {"sent": acc.sent, "answered_ok": acc.answered_ok,
            "answered_error": acc.answered_error, "dead_lettered": acc.dead_lettered,
            "unaccounted": acc.unaccounted, "redelivered": acc.redelivered,
            "foreign_dead_letters": acc.foreign_dead_letters,
            "foreign_failures": acc.foreign_failures}


def bad_requests_summary(bad: BadRequestCheck) -> dict[str, Any]:
    return {"sent": bad.expected, "as_expected": bad.as_expected,
            "unexpected_dead_letters": bad.unexpected_dead_letters, "problems": bad.problems}


def scenario(world: WorldSpec, visits: VisitSpec, bad_per_kind: int, faults: str,
             generator: int | None) -> dict[str, Any]:
    """What decides a run's or a replay's visits, the policy left out: two summaries alike
    here settled the same visits (`huimin compare`). Of the faults, those in the visit log:
    a worker killed or joining changes no answer (a review found two replays of one log,
    one with `--faults kill-worker=1`, said to have settled different visits). The bad
    requests' count is for the reader: they change no visit's answer (huimin/compare.py).
    The generator's version (None: a visit log from before headers said it), since the same
    seed and options give other visits from one version to the next."""
    return {"world": {k: v for k, v in asdict(world).items() if k != "parameters"},
            "visits": asdict(visits), "bad_per_kind": bad_per_kind,
            "faults": str(FaultPlan.parse(faults).in_plans()), "generator": generator}


def replay_summary(header: LogHeader, visit_log: Path, results: Path, arrived: int,
                   paid: SettledMoney, settlements_ms: Sequence[float], acc: Accounting,
                   bad: BadRequestCheck, day: dict[str, Any], result: HospitalRunResult, *,
                   bad_per_kind: int, faults: str, worker_kills: int | None,
                   bootstrap: str | None, platform: dict[str, Any], pace: dict[str, float | None],
                   money_files: list[Path], closing_unanswered: int, cluster_gone: str | None,
                   day_judged: bool, ok: bool, interrupted: bool) -> dict[str, Any]:
    """A replay's summary.json: what its console says, for a script to read, with the money
    of its results.jsonl in a `huimin run` summary's keys (so `huimin compare` sets replays
    and runs side by side)."""
    return {
        "replayed": str(visit_log), "results": str(results), "visits": arrived,
        **paid.to_summary(),
        "accounting": accounting_summary(acc),
        "bad_requests": bad_requests_summary(bad),
        # one for all settlements (a run's `settlement_latency_ms` is by route)
        "settlement_round_trip_ms": latency_summary(list(settlements_ms)),
        "daily_reconciliation": {**day, "judged": day_judged},
        "timed_out": len(result.timed_out),
        "late_answers": result.late_answers,
        "unexpected_answers": result.unexpected_answers,
        "period_closed": bool(money_files) and not closing_unanswered and not cluster_gone,
        "closing_unanswered": closing_unanswered,
        "cluster_gone": cluster_gone,
        "money_files": [str(p) for p in money_files],
        "faults": faults,
        "worker_kills": worker_kills,
        "timing_s": {"visits": result.wall_s},
        **pace,
        "bootstrap": bootstrap,
        "platform": platform,
        "world": world_tag(header.world),
        "scenario": scenario(header.world, header.visits, bad_per_kind, faults,
                             header.generator),
        # the replay's verdict (exit 0); `interrupted`: a Ctrl-C cut the platform's stop short
        # after it (the exit code is then the interrupt's)
        "ok": ok,
        "interrupted": interrupted,
    }


def ehr_summary(exchanges: Any) -> dict[str, int]:
    """What the hospitals saw of the record exchange (DOMAIN.md §6)."""
    out = {"published": 0, "queries": 0, "retrievals": 0, "refusals": 0,
           "lab_tests_avoided": 0, "lab_saving_fen": 0}
    for ex in exchanges:
        if ex.infno not in EHR or not ex.answers:
            continue
        ans = ex.answers[0]
        ok, output = ans.get("infcode") == 0, ans.get("output") or {}
        # a searchset's outcome entry names refused sources (forbidden), and those an
        # emergency read past (informational), which were not refused
        refused = ans.get("err_code") == ErrorCode.CONSENT_REFUSED or (ok and (
            "refused" in output or any(
                issue.get("code") == "forbidden" for e in output.get("entry", [])
                if e.get("search", {}).get("mode") == "outcome"
                for issue in e["resource"].get("issue", []))))
        out["refusals"] += refused
        if ex.infno == Infno.EHR_PUBLISH:
            out["published"] += ok
        elif ex.infno == Infno.EHR_RETRIEVE:
            out["retrievals"] += ok
        else:
            out["queries"] += 1
        if ok and ex.infno == Infno.EHR_LAB_LOOKUP:
            out["lab_tests_avoided"] += len(output["reusable"])
            out["lab_saving_fen"] += sum(r["saving"] for r in output["reusable"])
    return out


def audit_against_oracle(ehr: dict[str, Any]) -> str:
    """The audit count's verdict, the operator's reads through the FHIR views set apart:
    audited like any access, but not the hospitals', so not the oracle's."""
    total, expected = ehr["audit_events"], ehr["audit_events_expected"]
    operator = ehr.get("operator_audit_events", 0)
    if total is None:
        return ""
    operators = f"{operator:,} of the operator's reads through the FHIR views"
    if total - operator == expected:
        return (f" ({expected:,} as the oracle's and {operators})" if operator
                else " (as the oracle's)")
    return f" [red](the oracle: {expected:,}{'; ' + operators if operator else ''})[/]"


def _outcome(answer: dict[str, Any]) -> str:
    return "ok" if answer.get("infcode") == 0 else answer.get("err_code") or "error"


def write_outputs(report: RunReport, summary: dict[str, Any]) -> None:
    out = report.out_dir
    (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    write_records(out / "results.jsonl", report.result.sessions,
                  world_tag(report.options.world))
    write_latencies(out / "latency.jsonl", report.result)
    write_dead_letters(out / "dead_letters.jsonl", report.result, report.bad)


def write_dead_letters(path: Path, result: HospitalRunResult, bad: list[BadMessage]) -> None:
    """Every dead letter the hospitals saw (a bad request's redelivered repeats once), as
    `huimin dead-letters --json` shows it, oldest first, with `bad_request`: the kind of bad
    request sent on purpose that it is, or null for one that should not have happened (the
    run fails on those)."""
    kinds = {b.value: b.kind for b in bad if b.expect == "dead-letter"}
    letters = sorted(distinct_dead_letters(result, bad), key=lambda d: (
        d.entry.timestamp_ms, d.entry.partition, d.entry.offset))  # read partition by partition
    with whole_file(path) as f:
        for letter in letters:
            f.write(orjson.dumps({**letter.entry.to_dict(),
                                  "bad_request": kinds.get(letter.value)}) + b"\n")


def latency_line(ex: Exchange) -> bytes:
    """A request's line in a run's or replay's latency file: its round trip and its hops."""
    return orjson.dumps({"msgid": ex.msgid, "infno": ex.infno, "route": ex.route,
                         "latency_ms": ex.latency_ms, "trace": ex.trace}) + b"\n"


def write_latencies(path: Path, result: HospitalRunResult) -> None:
    with whole_file(path) as f:
        for ex in result.exchanges.values():
            f.write(latency_line(ex))


def accounted(sent: int, ok: int, error: int, dead: int) -> str:
    """Where the requests sent went, as every summary says it (its last term, what is not
    accounted for, is each summary's own)."""
    return (f"{sent:,} = answered OK {ok:,} + answered with an error {error:,} + "
            f"dead-lettered {dead:,}")


#: the money a 3202 detail gives, as summary.json's posted and undone money name it
MONEY_POSTED = ("medfee_sumamt", "hifp_pay", "acct_pay")


def daily_reconciliation_summary(d: DailyReconciliationCheck) -> dict[str, Any]:
    """The hospitals' daily 3201/3202 as summary.json (and the console line) give them."""
    return {"hospital_days": d.days, "balanced_at_once": d.balanced_at_once,
            "balanced_after_posting": d.balanced_after_posting,
            "balanced_after_waiting": d.balanced_after_waiting,
            "unbalanced": d.unbalanced, "posted": d.posted,
            "expected_posted": d.expected_posted, "undoings_posted": d.undoings_posted,
            # what the settlements posted from 3202 paid: in the ledger, not in the visits'
            # results (their HIS never saw the answers)
            "posted_money_fen": dict(zip(MONEY_POSTED, d.posted_fen, strict=True)),
            # and what the cancellations posted from 3202 gave back (their visits' results
            # still hold the settlements: their HIS never saw the cancellations' answers)
            "undone_money_fen": dict(zip(MONEY_POSTED, d.undone_fen, strict=True))}


def daily_reconciliation_line(day: dict[str, Any]) -> str:
    """One line for the hospital-days of a run or a replay, and how each came to balance."""
    return (f"[bold]Daily reconciliation[/] {day['hospital_days']:,} hospital-days: "
            f"{day['balanced_at_once']:,} 平 at once, {day['balanced_after_posting']:,} "
            f"不平 until 3202 detailed {counted(day['posted'], 'settlement')} whose "
            f"answers were lost (expected {day['expected_posted']:,})"
            + (f" and {counted(day['undoings_posted'], 'cancellation')}"
               if day.get("undoings_posted") else "") + ", "
            f"{day['balanced_after_waiting']:,} 平 once the clearing caught up, "
            + (f"[red]{len(day['unbalanced'])} left 不平[/]" if day["unbalanced"]
               else "0 left 不平"))


def print_summary(summary: dict[str, Any], out_dir: Path, console: Console) -> None:
    routes = summary["visits_settled_by_route"]
    money = summary["money_fen"]
    console.print()
    local, cross = routes.get("local", 0), routes.get("cross", 0)
    unsettled = summary["visits"] - local - cross  # refused, failed, given up: every visit counted
    day = summary["daily_reconciliation"]
    lost = day["posted"]  # settled on the platform, the answers lost or given up
    undone = day.get("undoings_posted", 0)  # cancelled there, the answers lost (`2208~`)
    spec = summary.get("scenario", {}).get("visits")  # what a summary of old lacks
    period = f" over {counted(spec['days'], 'simulated day')} from {spec['start'][:10]}" \
        if spec else ""
    console.print(f"[bold]Visits[/] {summary['visits']:,}{period}   "
                  f"[bold]ending settled[/] local {local:,}, cross-province {cross:,}"
                  + (f", otherwise {unsettled:,} (refused, failed, timed out or cancelled"
                     + (f"; {lost:,} of them settled on the platform all the same, their "
                        "answers lost or given up: posted from 3202, below" if lost else "")
                     + ")" if unsettled > 0 else ""))
    if "world" in summary:
        console.print(f"[bold]Settled by[/] the world of {escape(summary['world'])}"
                      + (f"; the policy from {escape(summary['policy_file'])}"
                         if summary.get("policy_file") else ""), soft_wrap=True)
    console.print(f"[bold]Paid[/] medical fees ¥{yuan(money.get('medfee_sumamt', 0))} = "
                  f"fund ¥{yuan(money.get('hifp_pay', 0))} + "
                  f"personal account ¥{yuan(money.get('acct_pay', 0))} + "
                  f"cash ¥{yuan(money.get('psn_cash_pay', 0))}"
                  + (" as the hospitals saw the answers" if lost or undone else ""))
    seen = "; as the hospitals saw the answers: not what was posted from 3202" \
        if lost or undone else ""
    for key, first, title, named in (
            ("money_fen_by_insured_province", "insured in", "Paid, by the insured person's "
             "province (yuan; their fund pays, wherever treated", named_province),
            ("money_fen_by_month", "month", "Paid, by the month of settlement (yuan; a "
             "policy's change from a day shows from its month", str)):
        if rows := summary.get(key):
            console.print(_paid_table(rows, first, f"{title}{seen})", named))
    for n, key, lead, which, word, reading in (
            (lost, "posted_money_fen", "and", "in the", "settlement",
             "their visits read 'not settled' or TIMEOUT in results.jsonl"),
            (undone, "undone_money_fen", "less", "given back by the", "cancellation",
             "their visits read 'settled' in results.jsonl: their HIS never saw the answers")):
        if n:  # what 3202 detailed that the visits' results cannot show
            fees, fund, acct = (day[key][k] for k in MONEY_POSTED)
            console.print(f"  {lead} ¥{yuan(fees)} = fund ¥{yuan(fund)} + personal account "
                          f"¥{yuan(acct)} + cash ¥{yuan(fees - fund - acct)} {which} "
                          f"{word if n == 1 else word + 's'} posted from 3202 (in the ledger; "
                          f"{reading})")

    console.print("[bold]Answers by transaction and outcome[/]")
    answers = Table()
    answers.add_column("infno")
    answers.add_column("outcome")
    answers.add_column("count", justify="right")
    for key, n in summary["answers_by_outcome"].items():
        infno, outcome = key.split(" ", 1)
        answers.add_row(infno, outcome, f"{n:,}")
    console.print(answers)

    console.print("[bold]Settlement round trip, 2207 and 2304 (ms), by route[/]")
    lat = Table()
    for col in ("route", "count", "p50", "p95", "p99", "max"):
        lat.add_column(col, justify="right" if col != "route" else "left")
    for route, s in summary["settlement_latency_ms"].items():
        lat.add_row(route, f"{s['count']:,}", *(f"{s[k]:.0f}" for k in ("p50", "p95", "p99",
                                                                        "max")))
    console.print(lat)
    if cross := [f"{h} {ms:.0f}" for h, ms in summary["hop_latency_ms_p50"].items()
                 if h.startswith("cross")]:
        console.print("[bold]Median per hop (ms)[/]: " + "; ".join(cross))
    if (late := summary.get("hospitals_late_ms", {})).get("p99", 0) >= 1_000:
        console.print(fell_behind(late["max"], "--rate"))

    acc = summary["accounting"]
    console.print("[bold]Accounting[/] sent " + accounted(acc["sent"], acc["answered_ok"],
                                                          acc["answered_error"],
                                                          acc["dead_lettered"])
                  + (f" + [red]unaccounted {acc['unaccounted']:,}[/]" if acc["unaccounted"]
                     else "")
                  + (f" (and {acc['redelivered']:,} answers given again to requests processed "
                     "again after a rebalance or a restart, identical to the first)"
                     if acc["redelivered"] else ""))
    if summary["faults"]:
        console.print(f"[bold]Faults[/] {summary['faults']}")
    bad = summary["bad_requests"]
    letters = ", ".join(f"{c} {n}" for c, n in sorted(summary["dead_letters_by_code"].items()))
    console.print(f"[bold]Bad requests[/] {bad['as_expected']:,} of {bad['sent']:,} answered or "
                  f"dead-lettered as expected (dead letters: {letters or 'none'})")
    clr, rec = summary["clearing"], summary["reconciliation"]
    if rec.get("not_sent"):  # the cluster was gone: nothing was read
        console.print(f"[bold]Clearing[/] [red]not read: {rec['not_sent']}[/]", soft_wrap=True)
    else:
        console.print(f"[bold]Clearing[/] {clr['months']} monthly "
                      f"{'statement' if clr['months'] == 1 else 'statements'} from the "
                      "national platform " + ("equal to the oracle's" if clr["equal_to_oracle"]
                                              else "[red]differ from the oracle's[/]")
                      + " (huimin clearing shows them)")
    ehr = summary["ehr"]
    console.print(f"[bold]Health records[/] {counted(ehr['published'], 'document')} published, "
                  f"{counted(ehr['queries'], 'query', 'queries')} (7002 finds, 7004 lab "
                  f"lookups), {counted(ehr['retrievals'], 'retrieval')}, "
                  f"{ehr['refusals']:,} refused by consent (E5002, or a province's records "
                  "left out of a find or lookup), "
                  + (counted(ehr["audit_events"], "audit event")
                     if ehr["audit_events"] is not None
                     else "audit events [red]not counted (no worker answered)[/]")
                  + audit_against_oracle(ehr)
                  + f", {counted(ehr['lab_tests_avoided'], 'lab test')} avoided "
                    f"(¥{yuan(ehr['lab_saving_fen'])} saved)")
    console.print(daily_reconciliation_line(day))
    if rec.get("not_sent"):
        console.print(f"[bold]Reconciliation[/] [red]not done: {rec['not_sent']}[/]",
                      soft_wrap=True)
    else:
        console.print(f"[bold]Reconciliation[/] {rec['sent']:,} closing 3201/3202/3203 "
                      f"requests, {rec['balanced']:,} balanced (平) or accepted (受理), "
                      f"{rec['equal_to_oracle']:,} answered as the oracle answers them")
    o = summary["oracle"]
    verdict = (f"{o['settlements_equal']:,} of {o['settlements_expected']:,} settled visits' "
               "final settlements equal to the oracle's "
               f"({o['answers_equal']:,} of {o['answers_compared']:,} answers)")
    console.print(("[bold green]PASS[/] " if summary["ok"] else "[bold red]FAIL[/] ") + verdict)
    where = summary["unanswered_where"]
    t = summary["timing_s"]
    problems = [f"the visits stopped after {t['visits']:.0f} s, {summary['visits']:,} of "
                f"{summary['visits_planned']:,} arrived (--stop-after-unreachable): "
                + escape(summary["cluster_lost"]) if summary.get("cluster_lost") else "",
                f"{summary['timed_out']} requests unanswered within the timeout"
                + (f" ({summary['late_answers']} answers came after their visits were "
                   "given up)" if summary.get("late_answers") else "")
                + ("; where the first went on the cluster (topic\\[partition]@offset; "
                   "committed: the platform's consumer group is past it):" if where else "")
                if summary["timed_out"] else "",
                *(f"    {escape(w)}" for w in where),
                f"    and {summary['unexpected_answers']} answers the hospitals did not expect "
                f"(to msgids {', '.join(summary.get('unexpected_answer_msgids', []))})"
                if summary["timed_out"] and summary.get("unexpected_answers") else "",
                "answers or dead letters the broker never showed, stepped over at "
                + ", ".join(escape(h) for h in summary["read_holes"])
                if summary.get("read_holes") else "",
                f"{bad['unexpected_dead_letters']} unexpected dead letters"
                if bad["unexpected_dead_letters"] else "",
                f"{acc['foreign_dead_letters']} dead letters of messages that are not the "
                "hospitals' requests (the platform's own: huimin dead-letters lists them)"
                if acc.get("foreign_dead_letters") else "",
                "" if clr["equal_to_oracle"] or rec.get("not_sent")
                else "clearing statements differ (clearing.json)"]
    if day["posted"] != day["expected_posted"]:
        problems.append(f"{counted(day['posted'], 'settlement')} posted from 3202, "
                        f"{day['expected_posted']} expected")
    for line in [p for p in problems if p] + o["mismatches"][:10] + bad["problems"][:10] + \
            rec["problems"][:10] + day["unbalanced"][:10]:
        console.print(f"  [red]- {line}[/]")
    console.print(f"Wall time {t['total']:.1f} s (platform ready after {t['platform_ready']:.1f} "
                  f"s, visits {t['visits']:.1f} s).  Output: {out_dir}/")


def print_statement(statement: ClearingStatement, console: Console) -> None:
    """A clearing statement as tables, amounts in yuan."""
    console.print(f"[bold]Clearing statement {statement.month}[/] (amounts in yuan)")
    pairs = Table("payer (insured)", "payee (treatment)", "fund payments, net", )
    for (payer, payee), amount in sorted(statement.pairs.items()):
        if not amount:
            continue  # settlements the fund paid nothing for (all under the deductible)
        pairs.add_row(named_province(payer), named_province(payee), yuan(amount))
    console.print(pairs)
    provinces = Table("province", "payable", "receivable", "net", "prepayment target",
                      "before", "after", "top-up due")
    for p in sorted(statement.provinces.values(), key=lambda p: p.province):
        provinces.add_row(named_province(p.province), yuan(p.payable), yuan(p.receivable),
                          yuan(p.net), yuan(p.prepayment_target), yuan(p.prepayment_before),
                          yuan(p.prepayment_after), yuan(p.top_up_due))
    console.print(provinces)
    total = sum(p.net for p in statement.provinces.values())
    # a hospital whose month netted to nothing is listed with 0, and one whose earlier
    # settlements were undone this month owes its agency: neither is "owed"
    owed = [a for a in statement.hospitals.values() if a > 0]
    back = [-a for a in statement.hospitals.values() if a < 0]
    console.print(f"Σ net = {yuan(total)}; {counted(len(owed), 'hospital')} owed "
                  f"¥{yuan(sum(owed))} by their agencies"
                  + (f", {len(back):,} owing ¥{yuan(sum(back))} back (settlements of earlier "
                     f"months undone): ¥{yuan(sum(owed) - sum(back))} net" if back else "")
                  + " (`--json` lists each)")


def _paid_table(rows: dict[str, dict[str, int]], first: str, title: str,
                named: Callable[[str], str]) -> Table:
    """Settlements and what was paid, a row each (a province, a month), with the fund's
    share of the fees."""
    table = Table(first, title=title, title_justify="left")
    for heading in ("settlements", "medical fees", "fund", "personal account", "cash",
                    "fund share"):
        table.add_column(heading, justify="right")
    for name, paid in rows.items():
        table.add_row(named(name), f"{paid.get('settlements', 0):,}",
                      *(yuan(paid.get(k, 0)) for k in PAID),
                      share_of(paid.get("hifp_pay", 0), paid.get("medfee_sumamt", 0)))
    return table


def share_of(part: int, whole: int) -> str:
    """`part` of `whole` (fen) in per cent to one decimal, rounded half up, in integers."""
    if whole <= 0:
        return ""
    tenths = (part * 1000 * 2 + whole) // (2 * whole)
    return f"{tenths // 10}.{tenths % 10} %"


def named_province(admdvs: str) -> str:
    return f"{admdvs} {PROVINCES.get(admdvs, '')}".strip()
