"""The `huimin` command line: the commands of a run and a replay (run, generate, world, replay,
verify, clearing). The others are in cli_bench, cli_cluster, cli_compare and cli_fhir,
registered at the end; the app, its error policy and the shared options in cli_app and
cli_options."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shlex
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.progress import Progress

from huimin.cli_app import app, check_output, console, errors, refusal_exit
from huimin.cli_options import (
    DEFAULT_START_DAY,
    CrossShare,
    Persons,
    PolicyFile,
    SaslMechanism,
    SaslUsername,
    SecurityProtocol,
    Seed,
    SslCafile,
    StartDay,
    StopAfterUnreachable,
    Store,
    VisitsOption,
    check_broker_kind,
    check_cluster_address,
    check_reachable,
    check_world_fits,
    checked_store,
    fault_plan,
    note_changes_outside,
    platform_records,
    security_settings,
    serve_metrics,
    visit_spec_of,
    world_of_options,
)
from huimin.cli_progress import progress_display, reporters
from huimin.local_platform import check_fresh
from huimin.logfiles import (
    LogFormatError,
    LogHeader,
    expected_path_for,
    expected_record,
    of_world,
    read_records,
    read_visit_log,
    record_line,
    reserve_header,
    whole_file,
    write_header_in_place,
    write_visit,
)
from huimin.replay_results import LINGER_S, ReplayRecorder
from huimin.report import (
    accounted,
    counted,
    daily_reconciliation_line,
    daily_reconciliation_summary,
    platform_settings,
    print_statement,
    print_summary,
    replay_pace,
    replay_summary,
    summarise,
    write_dead_letters,
    write_outputs,
)
from huimin.run import (
    Execution,
    RunOptions,
    arrivals_at_rate,
    arrivals_at_speed,
    default_out_dir,
    execute,
    look_ahead,
    run_scenario,
    write_money_views,
)
from huimin.run_checks import (
    account,
    check_bad_requests,
    check_daily_reconciliation,
    replay_failures,
    replay_verdict,
)
from huimin.verify import (
    ResultsFile,
    events_of_visit,
    infnos_of,
    visits_with_results,
    write_json,
    write_junit,
)
from huimin.verify import verify as verify_answers
from messages import topics
from messages.visitlog import Visit
from settlement.clearing import clear
from settlement.ledger import SettlementEvent
from settlement.oracle import Oracle
from settlement.parameters import MAX_PREPAYMENT_MONTHS
from settlement.retention import WINDOW_DAYS
from simulators.bad_messages import MAX_BAD_PER_KIND, BadMessage, generate_bad_messages
from simulators.cluster_watch import STOP_AFTER_UNREACHABLE_S, lost_reason
from simulators.faults import FaultPlan
from simulators.interrupt import GentleInterrupt, is_the_stop, stop_handled, terminated
from simulators.visit_run import HospitalRunResult
from simulators.visits import MAX_DAYS, VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world, clearing_policy, world_tag
from simulators.world_export import write_world
from streams.broker import BOOTSTRAP_ENV


@app.command()
def run(
    ctx: typer.Context,
    persons: Persons = 5_000,
    visits: VisitsOption = 2_000,
    cross_share: CrossShare = 0.2,
    days: Annotated[int, typer.Option(
        min=1, max=MAX_DAYS, help="Simulated days the visits span, from --start (the clock "
                                  "runs as fast as --rate lets it).")] = 60,
    start: StartDay = DEFAULT_START_DAY,
    seed: Seed = 42,
    rate: Annotated[float, typer.Option(min=0.1, help="Visit arrivals per second (open loop).")
                    ] = 50.0,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions per topic.")] = 8,
    bad_per_kind: Annotated[int, typer.Option(
        min=0, max=MAX_BAD_PER_KIND, help="Bad requests of each of the 18 kinds mixed in.")] = 2,
    out: Annotated[Path | None, typer.Option(help="Output folder (default out/run-<time>).")
                   ] = None,
    faults: Annotated[str | None, typer.Option(
        help="Fault plan: fault=value pairs joined by commas, of duplicate, reorder, "
             "malformed, lose-answer (shares of the requests), kill-worker, join-worker "
             "(times), e.g. kill-worker=1 or reorder=0.05 (README, Faults)")] = None,
    broker: Annotated[str, typer.Option(
        "--broker", help="tansu (embedded, default) or kafka (Apache Kafka from its Maven "
                         "Central jars; needs java ≥ 17 and mvn)")] = "tansu",
    workers: Annotated[int, typer.Option(
        min=1, help="Platform worker processes in the consumer group from the start.")] = 1,
    metrics_port: Annotated[int | None, typer.Option(
        min=1, max=65535,
        help="Serve the hospitals' Prometheus metrics on this port while running (the "
             "workers serve theirs at /metrics on their web ports: workers.json).")] = None,
    ehr: Annotated[bool, typer.Option(
        help="Health-record steps in the visits (lab lookup, publish, find, retrieve).")
                   ] = True,
    store: Store = "memory",
    answer_timeout: Annotated[float, typer.Option(
        min=0.1, max=86400.0, help="Seconds a hospital waits for an answer before giving "
        "the visit up. A killed worker's partitions wait for its restart (8–23 s).")
                          ] = 30.0,
    policy: PolicyFile = None,
    stop_after_unreachable: StopAfterUnreachable = STOP_AFTER_UNREACHABLE_S,
) -> None:
    """Simulate, settle every visit through the platform, verify against the oracle, report.

    Uses the embedded broker unless KAFKA_BOOTSTRAP_SERVERS names a cluster. Exits 1 if any
    answer differs from the oracle or any request went unanswered.
    """
    plan = fault_plan(faults)
    if plan.kill_worker or plan.join_worker or workers > 1:
        _warn_if_redelivery_outlives_window(days, visits / rate, "fewer --days or a lower --rate")
    check_broker_kind(broker)
    visit_spec = visit_spec_of(start, visits=visits, cross_share=cross_share, days=days, ehr=ehr)
    world = world_of_options(seed, persons, policy)
    note_changes_outside(world, visit_spec)
    check_world_fits(persons, 1 + workers + plan.join_worker,
                     f"this run and its {workers + plan.join_worker} worker(s)",
                     "give fewer --persons or --workers")
    check_cluster_address(None)
    serve_metrics(metrics_port)
    out = out or default_out_dir()  # named if a Ctrl-C stops the run
    if out.exists() and not out.is_dir():
        raise refusal_exit(f"--out {out} is a file: give a folder for the run's results")
    opts = RunOptions(world=world, faults=plan,
                      visits=visit_spec,
                      rate=rate, partitions=partitions, bad_per_kind=bad_per_kind, out_dir=out,
                      broker=broker, workers=workers, store=checked_store(store),
                      answer_timeout_s=answer_timeout,
                      stop_after_unreachable_s=stop_after_unreachable)
    check_reachable(os.environ.get(BOOTSTRAP_ENV))
    try:
        with progress_display() as progress:
            on_stage, on_progress = reporters(progress, visits)
            report = run_scenario(opts, on_stage=on_stage, on_progress=on_progress)
    except BaseException as exc:  # unwound: what it started is stopped
        sigterm = terminated()  # its SystemExit, or an error it surfaced as
        if not (is_the_stop(exc) or sigterm):
            raise
        console.print(f"[yellow]{interrupted_run(out, 'SIGTERM' if sigterm else 'Ctrl-C')}[/]",
                      soft_wrap=True, highlight=False)
        raise typer.Exit(143 if sigterm else 130) from None
    summary = summarise(report) | ({"policy_file": str(policy.resolve())} if policy else {})
    write_outputs(report, summary)
    print_summary(summary, report.out_dir, console)
    if not report.ok and not report.result.cluster_lost:  # that, no rerun reproduces
        # one line, whatever the terminal's width, so that it pastes as one command
        where = " (on a fresh cluster, as this one now holds this run's requests)" \
            if os.environ.get(BOOTSTRAP_ENV) else ""
        console.print(f"Reproduce with{where}: " + reproduce_command(ctx.params),
                      soft_wrap=True, markup=False, highlight=False)
    raise typer.Exit(0 if report.ok else 1)


def faults_line(plan: FaultPlan, kills: int | None) -> str:
    """What a replay's platform faults did (`kills`: None when the replay stopped before it
    could say): each named, as the run's summary names them."""
    done = [f"the worker killed and restarted {counted(kills, 'time')}"
            if plan.kill_worker and kills is not None else "",
            f"{counted(plan.join_worker, 'worker')} started to join the group"
            if plan.join_worker and kills is not None else ""]
    return f"Faults {plan}" + (f": {', '.join(d for d in done if d)}" if any(done) else "")


def interrupted_run(out: Path, stopper: str = "Ctrl-C") -> str:
    """What a `huimin run` stopped by Ctrl-C (or SIGTERM) says: what it stopped, and what it
    left in `out` (a run is judged whole, so no summary)."""
    started = "the workers" if os.environ.get(BOOTSTRAP_ENV) else "the broker and the workers"
    left = [what for what, there in (("its visit log", (out / "visits.jsonl").exists()),
                                     ("the workers' logs", any(out.glob("worker-*.log"))))
            if there]
    return (f"Stopped by {stopper}: {started} this run started, if any, are stopped. A run is "
            "judged whole, so there is no summary"
            + (f"; {' and '.join(left)} {'are' if len(left) > 1 else 'is'} in {out}/ (to "
               "judge part of a run, replay its log: `huimin replay`, Ctrl-C, then `huimin "
               "verify --replayed-only`)" if left else "") + ".")


#: `huimin run` options a reproduction always names, so that it holds if a default changes.
REPRODUCE_ALWAYS = ("persons", "visits", "cross_share", "days", "start", "seed", "rate",
                    "broker", "workers")
#: Left out: where the outputs go (a second run there would overwrite the failed run's).
REPRODUCE_NEVER = ("out",)


def reproduce_command(values: Mapping[str, Any],
                      environ: Mapping[str, str] = os.environ) -> str:
    """The shell command that runs `huimin run` again with the options `values` (by parameter
    name, as the command's context holds them; missing ones: the defaults): those of
    REPRODUCE_ALWAYS, and every other that differs from its default. Prefixed with
    KAFKA_BOOTSTRAP_SERVERS=… when the run used the cluster that variable names (`--broker`
    still says which kind it is: the clients' settings follow it)."""
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    words = ["huimin", "run"]
    for param in command.commands["run"].params:
        if not isinstance(param, typer.core.TyperOption) or param.name in REPRODUCE_NEVER:
            continue
        value = values.get(param.name or "", param.default)
        if param.name == "faults":
            value = str(fault_plan(value)) or None  # as parsed: "" and None are no faults
        if value is None or (value == param.default and param.name not in REPRODUCE_ALWAYS):
            continue
        long = max(param.opts, key=len)
        if param.is_flag and param.secondary_opts:
            words.append(long if value else max(param.secondary_opts, key=len))
        else:
            words += [long, shlex.quote(str(value))]
    external = environ.get(BOOTSTRAP_ENV)
    return " ".join(words) if not external else \
        f"{BOOTSTRAP_ENV}={shlex.quote(external)} " + " ".join(words)


#: Seconds a killed worker's partitions wait for its restart and recovery: 8–13 s on an idle
#: machine, up to ~23 s with other work beside it (docs/streams.md, 12-03).
RECOVERY_S = 15.0


def redelivery_outlives_window(days: int, wall_s: float) -> bool:
    """Whether a request redelivered RECOVERY_S after it was first sent may find its person's
    rows moved on by more than the operating window, in simulated time, when `days` of
    visits arrive over `wall_s` seconds. Only if the visits span more than the window:
    otherwise hardly any person's later request is that far ahead (an inpatient stay's steps,
    6 simulated hours apart, reach a few days past the span)."""
    return days > WINDOW_DAYS and days / max(wall_s, 1e-9) * RECOVERY_S > WINDOW_DAYS


#: Wall time past which a replay's arrivals are announced before it starts (seconds).
LONG_REPLAY_S = 3600.0


def _check_platform_there(bootstrap: str, client: dict[str, Any]) -> int:
    """A platform someone else runs: its topics there (else refused at once, where the
    hospitals waited 30 s for them), and whether it holds requests already, which a replay's
    answers then depend on (a visit settled before is answered from what was kept, settling
    nothing anew; a person's earlier settlements count in their balances and caps): how
    many requests it holds."""
    held = platform_records(bootstrap, client)
    if earlier := held[topics.HOSP_REQUESTS] or 0:
        console.print(f"[yellow]The cluster at {bootstrap} already holds {earlier:,} hospital "
                      "requests: the platform answers a visit it settled before from what it "
                      "kept (a log replayed again gets its first answers, settling nothing "
                      "anew, where a request is within 7 days of its hospital's latest for the "
                      "person; one dated earlier is refused as a replay, E6003, which `verify` "
                      "counts apart), and settles new visits on top of its persons' earlier ones "
                      "(balances, deductibles, caps), which `verify` does not know of; "
                      "the hospitals' daily reconciliations (3201/3202) of days replayed "
                      "before get the answers given then.[/]")
    return earlier


def _warn_if_redelivery_outlives_window(days: int, wall_s: float, remedy: str) -> None:
    """Say so where a worker's restart or a rebalance would refuse redelivered requests."""
    if redelivery_outlives_window(days, wall_s):
        pace = f"runs {days / wall_s:.1f} days per second" if wall_s > 0 else \
            "runs all its days at once"
        console.print(f"[yellow]The simulated clock {pace}: "
                      f"the ~{RECOVERY_S:.0f} s in which a killed worker recovers, or a worker "
                      "starved of CPU is removed from the group, span more than the "
                      f"{WINDOW_DAYS}-day operating window, so redelivered requests may be "
                      f"refused as replays (E6003) or their answers forgotten. Use {remedy}.[/]")


@app.command()
def generate(
    output: Annotated[Path, typer.Option("-o", "--output", help="The visit log to write.")],
    persons: Persons = 5_000,
    visits: VisitsOption = 2_000,
    cross_share: CrossShare = 0.2,
    days: Annotated[int, typer.Option(min=1, max=MAX_DAYS,
                                      help="Simulated days the visits span, from --start.")
                    ] = 60,
    start: StartDay = DEFAULT_START_DAY,
    seed: Seed = 42,
    bad_per_kind: Annotated[int, typer.Option(
        min=0, max=MAX_BAD_PER_KIND, help="Bad requests of each kind to go with the log.")] = 0,
    faults: Annotated[str | None, typer.Option(
        help="Faults written into the log: duplicate, reorder, lose-answer, malformed "
             "(platform faults are for run and replay).")] = None,
    expected: Annotated[Path | None, typer.Option(
        help="Where the oracle's answers go (default <log>.expected.jsonl).")] = None,
    policy: PolicyFile = None,
) -> None:
    """Write a visit log (JSON Lines) and the oracle's expected answers to it, streaming.

    The same options and seed give byte-identical files.
    """
    plan = fault_plan(faults)
    if plan.on_platform().any:
        raise typer.BadParameter("kill-worker and join-worker happen to a platform: give them "
                                 "to huimin replay or huimin run", param_hint="--faults")
    check_output(output, "-o")
    if output.exists() and not output.is_file():
        raise refusal_exit(f"{output} is not a file: a visit log's header is written last, "
                           "in place")
    check_output(expected, "--expected", visit_log=output)
    visit_spec = visit_spec_of(start, visits=visits, cross_share=cross_share, days=days)
    world_spec = world_of_options(seed, persons, policy)
    note_changes_outside(world_spec, visit_spec)
    check_world_fits(persons, 1, "this process")
    expected = expected or expected_path_for(output)
    try:
        with progress_display() as progress:
            requests = _write_visit_log(progress, output, expected, world_spec, visit_spec,
                                        plan, bad_per_kind)
    except BaseException as exc:  # whole_file put nothing in place, but in a pipe or a device
        if not is_the_stop(exc) or terminated():  # a SIGTERM was said as it came
            raise
        files = all(p.is_file() or not p.exists() for p in (output, expected))
        console.print("[yellow]Stopped by Ctrl-C before the visit log was complete: "
                      + (f"nothing was put in place ({output} and {expected} are as they "
                         "were)" if files else "what was written so far went where it was "
                         "sent") + ".[/]", soft_wrap=True, highlight=False)
        raise typer.Exit(130) from None
    console.print(f"Wrote {visits:,} visits ({requests:,} requests) to {output} and the "
                  f"oracle's answers to {expected}", markup=False)


def _write_visit_log(progress: Progress, output: Path, expected: Path, world_spec: WorldSpec,
                     visit_spec: VisitSpec, plan: FaultPlan, bad_per_kind: int) -> int:
    """`huimin generate`'s files, each put in place only once whole: the requests written."""
    requests = 0
    stage, done = reporters(progress, visit_spec.visits)
    stage("building the world")
    world = build_world(world_spec)
    oracle = Oracle(world.ref)
    stage("generating and settling")
    tag = world_tag(world_spec)
    with whole_file(output) as log, whole_file(expected) as exp:
        # the header's bad_per_kind needs the number of requests: write it last
        width = reserve_header(log, LogHeader(world_spec, visit_spec, str(plan)))
        for visit in plan.apply(generate_visits(world, visit_spec), world_spec.seed):
            write_visit(log, visit)
            requests += len(visit.steps)
            exp.write(record_line(oracle.run_visit(visit), tag, expected=True))
            done(1, 0)
        log.seek(0)
        header = LogHeader(world_spec, visit_spec, str(plan),
                           plan.bad_per_kind(requests, bad_per_kind))
        write_header_in_place(log, header, width)
    return requests


@app.command()
def world(
    out: Annotated[Path, typer.Option("--out", help="The folder to write the files into.")
                   ] = Path("world"),
    persons: Persons = 5_000,
    seed: Seed = 42,
    policy: PolicyFile = None,
) -> None:
    """Write the world a platform of these options settles by: its hospitals, persons and
    catalogues (CSV), for requests a HIS of your own sends.

    The same options as the worker's (`huimin worker --persons --seed --policy`) give the
    world it answers for. The persons are the simulation's own, none real.
    """
    if out.exists() and not out.is_dir():
        raise refusal_exit(f"{out} is a file, not a folder")
    spec = world_of_options(seed, persons, policy)
    check_world_fits(persons, 1, "this process")
    with progress_display() as progress:
        stage, _ = reporters(progress, 1)
        stage("building the world")
        built = build_world(spec)
        stage("writing it")
        counts = write_world(built, out)
    console.print(", ".join(f"{n:,} rows in {name}" for name, n in counts.items())
                  + f" and world.json, in {out}/ ({world_tag(built.spec)})", markup=False)


#: What a replay writes beside its --results, each named `<results stem>.<name>`.
REPLAY_FILES = ("summary.json", "latency.jsonl", "dead_letters.jsonl", "clearing.json",
                "ledger.json", "applications.json")


@app.command()
def replay(
    visit_log: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    rate: Annotated[float | None, typer.Option(min=0.01, help="Visit arrivals per second.")
                    ] = None,
    speed: Annotated[float | None, typer.Option(
        min=0.001, help="Follow the recorded visit times, this many times faster.")] = None,
    bootstrap: Annotated[str | None, typer.Option(
        help="A running platform's Kafka cluster (host:port,…). Default: start our own "
             "platform on the embedded broker (or KAFKA_BOOTSTRAP_SERVERS).")] = None,
    results: Annotated[Path, typer.Option(help="Where the answers go.")] = Path("results.jsonl"),
    bad_per_kind: Annotated[int | None, typer.Option(
        min=0, max=MAX_BAD_PER_KIND,
        help="Bad requests of each kind (default: as the log's header says).")] = None,
    faults: Annotated[str | None, typer.Option(
        help="Platform faults while replaying our own platform: kill-worker=N, "
             "join-worker=N.")] = None,
    partitions: Annotated[int, typer.Option(
        min=1, help="Partitions per topic of the platform started here (without "
                    "--bootstrap).")] = 8,
    answer_timeout: Annotated[float, typer.Option(
        min=0.1, max=86400.0, help="Seconds to wait for an answer before giving the visit "
                                   "up.")] = 30.0,
    stop_after_unreachable: StopAfterUnreachable = STOP_AFTER_UNREACHABLE_S,
    security_protocol: SecurityProtocol = "PLAINTEXT",
    sasl_mechanism: SaslMechanism = None,
    sasl_username: SaslUsername = None,
    ssl_cafile: SslCafile = None,
    metrics_port: Annotated[int | None, typer.Option(
        min=1, max=65535,
        help="Serve the hospitals' Prometheus metrics on this port while replaying.")] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics server binds.")
                            ] = "127.0.0.1",
    idempotent: Annotated[bool, typer.Option(
        help="Idempotent producers for the hospitals, on a --bootstrap cluster that has them "
             "(Apache Kafka; Tansu does not).")] = False,
) -> None:
    """Replay a recorded visit log through the platform; check it with `huimin verify`.

    Drives the log through the real hospital protocol at an open-loop rate and records every
    answer with its latency."""
    check_cluster_address(bootstrap)
    serve_metrics(metrics_port, metrics_host)
    if (rate is None) == (speed is None):
        raise typer.BadParameter("give exactly one of --rate and --speed")
    plan = fault_plan(faults)
    if plan.in_plans().any:
        raise typer.BadParameter("duplicate, reorder, lose-answer and malformed belong in the "
                                 "visit log: huimin generate --faults …", param_hint="--faults")
    if plan.any and bootstrap:
        raise typer.BadParameter("platform faults need our own platform (no --bootstrap)",
                                 param_hint="--faults")
    check_output(results, "--results", visit_log=visit_log,
                  expected_answers_file=expected_path_for(visit_log))
    summary = results.with_name(results.stem + ".summary.json")
    for name in REPLAY_FILES:  # written beside the results, named after them
        check_output(results.with_name(f"{results.stem}.{name}"), f"its {name}",
                     visit_log=visit_log, expected_answers_file=expected_path_for(visit_log))
    try:  # read once for what is needed ahead, and again as the visits arrive
        first_read = _log_stamp(visit_log)  # before it: an edit meanwhile is seen later
        header, visit_iter = read_visit_log(visit_log)
        kept = None if visit_log.is_file() else list(visit_iter)  # a pipe is read once
        ahead = look_ahead(visit_iter if kept is None else kept, times=speed is not None)
    except LogFormatError as exc:
        raise refusal_exit(exc) from None
    if not ahead.count:  # nothing would be sent, after the platform took ~20 s to start
        raise refusal_exit(f"{visit_log} holds a header and no visits: nothing to replay")
    client = security_settings(security_protocol, sasl_mechanism, sasl_username,
                       ssl_cafile).kafka_python()
    ours = 0 if bootstrap else 1 + plan.join_worker  # the workers it starts
    check_world_fits(header.world.persons, 1 + ours,
                     f"this replay and its {ours} worker(s)" if ours else "this replay",
                     "replay it into a platform already running (--bootstrap), or "
                     "generate a log of fewer --persons")
    world = build_world(header.world)
    bad = generate_bad_messages(world, header.bad_per_kind if bad_per_kind is None
                                else bad_per_kind, ahead.period, ahead.patients)
    arrivals = arrivals_at_rate(ahead.count, rate) if rate else \
        arrivals_at_speed(ahead.offsets_s, speed or 1.0)
    del ahead  # its persons are not needed any more
    if arrivals and max(arrivals) > LONG_REPLAY_S:  # a visit mistyped years out, say
        span = max(arrivals)
        pace = f"--rate {rate:g}" if rate else f"--speed {speed or 1.0:g}"
        console.print(f"[yellow]The visits arrive over {span // 3600:,.0f} h "
                      f"{span % 3600 // 60:.0f} min of wall time ({pace}): a higher --speed "
                      "or --rate shortens it.[/]")
    check_reachable(bootstrap or os.environ.get(BOOTSTRAP_ENV))  # before advice about it
    held_before = _check_platform_there(bootstrap, client) if bootstrap else 0
    if plan.kill_worker or plan.join_worker or bootstrap:  # a worker may restart or rebalance
        _warn_if_redelivery_outlives_window(header.visits.days, arrivals[-1] if arrivals else 0,
                                            "a lower --rate or --speed, or a log of fewer days")
    out_dir = results.with_name(results.stem + ".platform")  # our platform's logs, if started
    made_out_dir = False
    if bootstrap is None:
        if os.environ.get(BOOTSTRAP_ENV):  # our platform on the user's cluster: a fresh one?
            check_fresh(os.environ[BOOTSTRAP_ENV], client, partitions)
        made_out_dir = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
    written: list[HospitalRunResult] = []
    over: list[Execution] = []  # what came back before the platform began to stop
    money: list[Path] = []  # the clearing statements, ledger and 3203 answers written
    files = contextlib.ExitStack()  # each put in place once whole (`whole_file`)
    recorder = ReplayRecorder(
        files.enter_context(whole_file(results)),
        files.enter_context(whole_file(results.with_name(results.stem + ".latency.jsonl"))),
        world_tag(header.world))

    def write_results(result: HospitalRunResult) -> None:  # as soon as the visits are over
        recorder.finish()
        summary.unlink(missing_ok=True)  # an earlier replay's: not to be read as this one's
        files.close()
        write_dead_letters(results.with_name(results.stem + ".dead_letters.jsonl"), result, bad)
        written.append(result)

    interrupt, broke_in, began = GentleInterrupt(), False, time.time() - 1  # coarse mtimes
    try:
        with files, progress_display() as progress, interrupt:
            on_stage, on_progress = reporters(progress, len(arrivals))
            visits = kept if kept is not None else _read_again(visit_log, header, len(arrivals),
                                                                  first_read)
            ex = execute(world, visits, arrivals, bad, out_dir,
                         bootstrap=bootstrap, sink=recorder, linger_s=LINGER_S,
                         late=recorder.late_answer,
                         partitions=partitions, answer_timeout_s=answer_timeout,
                         client_config=client, kill_worker=plan.kill_worker,
                         join_worker=plan.join_worker, on_stage=on_stage,
                         on_progress=on_progress, idempotent=idempotent, interrupt=interrupt,
                         on_visits_over=write_results, on_period_over=over.append,
                         stop_after_unreachable_s=stop_after_unreachable)
        over, cut_short = [ex], False
    except LogFormatError as exc:  # read again as the visits arrived: edited since
        raise refusal_exit(f"{visit_log} changed while it was replayed: {exc}") from None
    except BaseException as exc:  # after the visits (the clearing, the reconciliation, the
        if not is_the_stop(exc):  # stop), or as a library's error it surfaced as
            raise
        stop_handled()  # an error while what came back is written is reported
        if not written:  # before them (the platform's start, the sign-in): nothing to keep
            if made_out_dir and not any(out_dir.iterdir()):
                out_dir.rmdir()  # made for the platform's logs, and none was written
            logs = (f"; the platform's logs are in {out_dir}" if bootstrap is None
                    and out_dir.is_dir()  # written by this replay's platform, not an earlier
                    and any(p.stat().st_mtime >= began for p in out_dir.iterdir()) else "")
            how = "terminated (SIGTERM)" if interrupt.terminated else "stopped by Ctrl-C"
            when = ("again, before the answers were written" if interrupt.requested  # 3rd
                    else "before any visit ended")
            errors.print(f"{how} {when}: no results written{logs}",
                         markup=False, highlight=False)
            raise typer.Exit(interrupt.exit_code) from None
        cut_short = True  # in the clearing, the period's close or the platform's stop
        kills: int | None = None
        result, stopped, trail, gone, closing = written[0], True, None, None, []
        broke_in = True  # a Ctrl-C outside the visits: no request was noted, it interrupted
    if over:  # the period's close came back, whether or not the platform's stop was cut short
        ex = over[0]
        if ex.result.period_closed:
            money = write_money_views(
                ex, lambda name: results.with_name(f"{results.stem}.{name}.json"),
                ours=bootstrap is None)
        result, stopped, trail = ex.result, ex.result.interrupted or cut_short, ex.trail
        kills, gone, closing = ex.worker_kills, ex.cluster_gone, list(ex.reconciliation.values())
    stopper = interrupt.stopper
    if stopped and not result.period_closed:
        _report_interrupted(result, recorder, len(arrivals), bad, results,
                            "Stopped (--stop-after-unreachable): "
                            + lost_reason(stop_after_unreachable, result.cluster_lost)
                            if result.cluster_lost else f"Stopped by {stopper}")
        # the cluster lost, unless a person stopped it too (then as a Ctrl-C exits)
        lost = result.cluster_lost and not (interrupt.requested or broke_in)
        raise typer.Exit(1 if lost else interrupt.exit_code)
    if stopped:  # only the platform's stop was cut short: the replay itself is whole
        console.print(f"[yellow]Stopped by {stopper} while the platform stopped, after the "
                      "visits and the period's reconciliation.[/]")
    acc = account(result, bad, recorder.requests)
    # a platform of someone else's may restart or rebalance its workers: a bad request
    # answered or dead-lettered again, identically, is at-least-once delivery
    bad_check = check_bad_requests(result, bad, redelivery=plan.any or bootstrap is not None,
                                   requests=recorder.requests)
    console.print(f"Replayed {len(arrivals):,} visits in {result.wall_s:.1f} s. Sent "
                  + accounted(acc.sent, acc.answered_ok, acc.answered_error, acc.dead_lettered)
                  + (f" + [red]unanswered {acc.unaccounted:,}[/]" if acc.unaccounted else "")
                  + (f" (and {acc.redelivered:,} answers given again to requests processed "
                     "again after a rebalance or a restart)" if acc.redelivered else ""))
    if result.unexpected_answers:  # outside the sum: no request of this replay awaited them
        console.print(f"[yellow]{counted(result.unexpected_answers, 'answer')} to no request "
                      "these hospitals still awaited (given again over a minute after their "
                      "visit was written, or another client's), the first to "
                      f"{', '.join(result.unexpected_msgids[:3])}[/]")
    if plan.any:
        console.print(faults_line(plan, kills))
    if result.timed_out:
        given_up = len(result.timed_out)
        console.print(f"[red]{given_up:,} requests had no answer within the {answer_timeout:g}-s "
                      "answer timeout (--answer-timeout): their visits were given up there, "
                      "and their later steps were not sent"
                      + (f" ({result.late_answers:,} answers came after their visits were "
                         "given up)" if result.late_answers else "") + ".[/]")
        if trail is not None:
            console.print("Where the first went on the cluster (topic\\[partition]@offset; "
                          "committed: the platform's consumer group is past it):")
            for line in trail.lines({m: recorder.timed_out[m] for m in result.timed_out
                                     if m in recorder.timed_out}):
                console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
    for line in replay_pace(result, recorder.settlements_ms, arrivals[-1] if arrivals else 0.0):
        console.print(line)
    if bad:
        console.print(f"Bad requests: {bad_check.as_expected:,} of {bad_check.expected:,} "
                      "answered or dead-lettered as expected")
        for line in bad_check.problems[:10]:
            console.print(f"  [red]- {line}[/]")
    if bad_check.unexpected_dead_letters:
        console.print(f"[red]{counted(bad_check.unexpected_dead_letters, 'other request')} "
                      "of these hospitals (not the bad ones) dead-lettered (huimin "
                      "dead-letters lists them):[/]")
        for line in bad_check.unexpected:
            console.print(f"  - {line}", soft_wrap=True, markup=False, highlight=False)
    day = check_daily_reconciliation(  # as the hospitals saw it
        result, recorder.to_post_of_ended if result.interrupted else recorder.to_post)
    console.print(daily_reconciliation_line(daily_reconciliation_summary(day)))
    if held_before:  # a 3201/3202 msgid is the hospital's and the day's: answered as before
        console.print("  [yellow](not judged: the platform held earlier requests, so a day "
                      "replayed before was reconciled then, and is answered as it was)[/]")
    else:
        for line in day.unbalanced[:10] + ([] if day.posted == day.expected_posted else [
                f"{counted(day.posted, 'settlement')} posted from 3202, "
                f"{day.expected_posted:,} expected (the settlements whose answers the "
                "hospitals lost, or gave up on at their time-out)"]):
            console.print(f"  [red]- {escape(line)}[/]")
    console.print(f"Answers in {results}. Check them: huimin verify "
                  f"{shlex.quote(str(visit_log))} {shlex.quote(str(results))}",
                  markup=False)
    unclosed = sum(1 for answers in closing if not answers)
    if gone:
        console.print(f"[red]The period was not closed: after the visits timed out, the cluster "
                      f"could not be reached ({gone}).[/]", soft_wrap=True)
    elif unclosed:
        console.print(f"[red]The period was not closed: {unclosed:,} of its {len(closing):,} "
                      "closing requests (the hospitals' 3201/3202, the agencies' 3203) had no "
                      "answer within 60 s.[/]")
    elif money:
        console.print("The period closed: " + ", ".join(str(p) for p in money)
                      + (" (the national platform's clearing statements, its ledger and the "
                         "answers to the 3203 clearing applications)" if len(money) > 1 else
                         " (the answers to the 3203 clearing applications; the platform is "
                         "not ours, so its statements and ledger are not read)"),
                      markup=False)
    if acc.foreign_dead_letters:  # on a platform of ours, only its own messages can be
        console.print(("[red]" if bootstrap is None or acc.foreign_failures else "[yellow]")
                      + f"{acc.foreign_dead_letters:,} dead letters of messages that are not "
                      "requests these hospitals sent (another producer's on the cluster, or the "
                      "platform's own), outside the sum above"
                      + (f"; {acc.foreign_failures:,} of them the platform's failures (E9001/"
                         "E9002)" if acc.foreign_failures else "")
                      + ": huimin dead-letters lists them.[/]")
    failures = replay_failures(acc, timed_out=bool(result.timed_out),
                               bad_ok=bad_check.bad_as_expected,
                               own_platform=bootstrap is None, closed=not (unclosed or gone),
                               days_ok=day.ok or held_before > 0,
                               unexpected_dead_letters=bad_check.unexpected_dead_letters)
    ok = not failures
    with whole_file(summary) as f:
        f.write(orjson.dumps(replay_summary(
            header, visit_log, results, recorder.arrived, recorder.paid,
            recorder.settlements_ms, acc, bad_check, daily_reconciliation_summary(day), result,
            bad_per_kind=header.bad_per_kind if bad_per_kind is None else bad_per_kind,
            faults=str(replace(FaultPlan.parse(header.faults), kill_worker=plan.kill_worker,
                               join_worker=plan.join_worker)),
            worker_kills=kills, bootstrap=bootstrap, pace={"rate": rate, "speed": speed},
            platform=platform_settings("cluster", None, None, None) if bootstrap else
            platform_settings("tansu", 1 + plan.join_worker, partitions, "memory"),
            money_files=money, closing_unanswered=unclosed, cluster_gone=gone,
            day_judged=not held_before, ok=ok, interrupted=stopped),
            option=orjson.OPT_INDENT_2))
    console.print(f"Its summary in {summary} (huimin compare sets two side by side)",
                  markup=False)
    console.print(("[bold green]PASS[/] " if ok else "[bold red]FAIL[/] ") + escape(
        replay_verdict(failures, days_judged=not held_before)
        + (f" (stopped by {stopper} while the platform stopped: exit "
           f"{interrupt.exit_code})" if stopped else "")), soft_wrap=True)
    raise typer.Exit(interrupt.exit_code if stopped else 0 if ok else 1)


def _log_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is written to, cut short or replaced (None: not a file)."""
    if not path.is_file():
        return None
    seen = path.stat()
    return seen.st_ino, seen.st_size, seen.st_mtime_ns


def _read_again(path: Path, header: LogHeader, count: int,
                stamp: tuple[int, int, int] | None = None) -> Iterator[Visit]:
    """The `count` visits of the log at `path` read again as they arrive, the log refused
    (LogFormatError) if it was changed since its first reading took `header` and `count`."""
    again, visits = read_visit_log(path)
    if again != header:
        raise LogFormatError("its header is not the one it had when the replay began")
    n = 0
    for visit in itertools.islice(visits, count):
        n += 1
        if stamp is not None and _log_stamp(path) != stamp:
            raise LogFormatError("it was written to, cut short or replaced since the replay "
                                 "began")
        yield visit
    if n < count:
        raise LogFormatError(f"it ends after {n:,} of the {count:,} visits it had when the "
                             "replay began")


def _report_interrupted(result: HospitalRunResult, recorder: ReplayRecorder, total: int,
                        bad: list[BadMessage], results: Path, stopped: str) -> None:
    """What a replay stopped early (`stopped`: by a Ctrl-C or SIGTERM, or on a cluster
    lost) leaves: every request sent is still accounted for, the ones awaited then as in
    flight; the period's reconciliation is not done."""
    acc = account(result, bad[:result.bad_sent], recorder.requests)
    arrived, over = recorder.arrived, recorder.over
    console.print(f"[yellow]{escape(stopped)}: {arrived:,} of {total:,} visits had arrived "
                  f"in {result.wall_s:.1f} s, {over:,} of them over"
                  + ("" if arrived == total else "; the rest were not sent")
                  + ". The period's reconciliation (3201/3202/3203) was not done.[/]")
    console.print("Sent " + accounted(acc.sent, acc.answered_ok, acc.answered_error,
                                      acc.dead_lettered)
                  + f" + unanswered when stopped {acc.unaccounted:,} (in flight, or never "
                  "delivered)")
    console.print(f"The answers received are in {results}"
                  + (" (visits still under way end 'not settled', or keep 'settled' marked under "
                     "way if they were)" if over < arrived else "")
                  + ("; `huimin verify --replayed-only` judges what was replayed"
                     if over < total else "") + ".", markup=False)


@app.command()
def verify(
    visit_log: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    results: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    expected: Annotated[Path | None, typer.Option(
        help="The oracle's answers (default <log>.expected.jsonl; computed if missing).")
                        ] = None,
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML report.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the verdict as JSON.")
                        ] = None,
    replayed_only: Annotated[bool, typer.Option(
        "--replayed-only", help="For a replay stopped by Ctrl-C: leave out the visits it did "
        "not replay, and of those under way compare only the answers received.")] = False,
) -> None:
    """Compare answers with the oracle's, field by field, and check the invariants.

    Exits 0 only if everything holds; 2 if RESULTS has no results or another log's."""
    inputs = {"visit_log": visit_log, "results_file": results,
              "expected_answers_file": expected or expected_path_for(visit_log)}
    check_output(junit, "--junit", **inputs)
    check_output(json_out, "--json", **inputs)
    if results.resolve() == inputs["expected_answers_file"].resolve():
        if expected is not None and expected.resolve() != expected_path_for(visit_log).resolve():
            # not the log's expected answers given twice: the results, most likely
            raise refusal_exit(f"RESULTS and --expected are the same file, {results} (compared "
                           "with itself, it would always pass): RESULTS is what `huimin "
                           "replay --results` or a run wrote, --expected the oracle's answers "
                           f"(by default {expected_path_for(visit_log)}, which `huimin "
                           "generate` writes)")
        raise refusal_exit(f"{results} is the oracle's expected answers that verify compares the "
                       "results with (compared with themselves, they would always pass): "
                       "give the file `huimin replay --results` wrote, or a run's results.jsonl")
    try:
        header, visits = read_visit_log(visit_log)
        check_world_fits(header.world.persons, 1, "this process",
                         "verify it where more memory is free")
        world = build_world(header.world)
        tag = world_tag(header.world)
        expected = expected or expected_path_for(visit_log)
        if expected.exists():
            want = of_world(read_records(expected, "expected-answers"), expected, tag)
        else:
            if not visit_log.is_file():  # a pipe (`<(…)`) reads empty the second time
                raise LogFormatError(f"{visit_log} is not a regular file: with no expected "
                                     "answers, verify reads the log twice (save it to a file)")
            console.print(f"{expected} not found: settling the log with the oracle",
                          markup=False)
            oracle = Oracle(world.ref)
            _, again = read_visit_log(visit_log)
            want = (expected_record(oracle.run_visit(v), tag) for v in again)
        verdict = verify_answers(visits, want, results, world.ref, replayed_only, tag)
    except LogFormatError as exc:
        raise refusal_exit(exc) from None
    if junit:
        write_junit(verdict, junit)
    if json_out:
        write_json(verdict, json_out)
    for name, check in verdict.to_dict()["checks"].items():
        mark = "[green]pass[/]" if check["passed"] else "[red]FAIL[/]"
        console.print(f"{mark}  {name}")
        for line in check["failures"][:10]:
            console.print(f"      [red]{line}[/]")
    console.print(("[bold green]PASS[/] " if verdict.ok else "[bold red]FAIL[/] ")
                  + f"{verdict.answers_equal:,} of {verdict.answers_compared:,} answers equal to "
                  f"the oracle over {verdict.visits:,} visits; {verdict.settlements_checked:,} "
                  "settlement answers (2207/2304, cancelled ones included) checked against the "
                  "invariants")
    if verdict.results_are_expected_answers:
        console.print(f"[yellow]{escape(str(results))} holds the oracle's expected answers "
                      "(each with its visit's digest, as `huimin generate` and `huimin run` "
                      "write them), not a run's or a replay's results: this verdict says "
                      "nothing of a platform. Give the file `huimin replay --results` wrote, or "
                      "a run's results.jsonl.[/]", soft_wrap=True)
    if verdict.refused_as_replays:
        n = verdict.refused_as_replays
        console.print(f"[yellow]{n:,} {'request was' if n == 1 else 'requests were'} refused "
                      "as replays (E6003) where the oracle answers them: dated more than 7 "
                      "days before a later request the platform already had from the same "
                      "hospital for the person (or 90 days before its latest at two). "
                      "That happens when a log is replayed again into an earlier replay's "
                      "cluster (replay each log into a fresh platform), or when requests are "
                      "redelivered after a fast simulated clock moved on (give the run more "
                      "wall time per simulated day); what else failed may follow from them.[/]")
    if verdict.timed_out:
        n, settled = verdict.timed_out, verdict.timed_out_after_settling
        after = (f" ({n - settled:,} ended TIMEOUT; {settled:,} after their settlement, "
                 "which their outcome says, with `timed_out` beside it)") if settled else \
            " (TIMEOUT)"
        console.print(f"[yellow]{n:,} {'visit' if n == 1 else 'visits'} timed out at the "
                      f"hospital{after}: a request got no answer within its --answer-timeout, "
                      "and the visit's later requests were not sent; their expected answers are "
                      "counted as not equal. The platform may have answered late: `huimin trail "
                      "MSGID` shows where a request went, and `huimin dead-letters` what was "
                      "refused.[/]")
    if verdict.no_result:
        n, has = verdict.no_result, "has" if verdict.no_result == 1 else "have"
        console.print(f"[yellow]{n:,} of those {verdict.visits:,} visits {has} no result, so "
                      "none of their answers was compared: "
                      + ("they come before visits that have one, so they were not left out as "
                         "not replayed (lost from the results, or of another run?)"
                         if replayed_only else "a replay stopped before the end of its log is "
                         "judged on what it replayed with --replayed-only") + ".[/]")
    if replayed_only:
        console.print(f"[yellow]Left out (--replayed-only): {verdict.not_replayed:,} visits with "
                      f"no result; {verdict.under_way:,} "
                      f"{'visit' if verdict.under_way == 1 else 'visits'} under way when the "
                      "replay stopped, compared on the answers received only.[/]")
    raise typer.Exit(0 if verdict.ok else 1)


@app.command()
def clearing(
    visit_log: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    results: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    month: Annotated[str | None, typer.Option(
        help="yyyy-MM (default: every month with settlements in the results).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")
                        ] = False,
    prepayment_months: Annotated[int | None, typer.Option(
        min=0, max=MAX_PREPAYMENT_MONTHS,
        help="Each province's prepayment target, in months of its expected cross-province "
             "payable. Default: the log's policy file's, else 2.")
    ] = None,
) -> None:
    """The national platform's monthly clearing statement, from a run's answers.

    Per province pair the cross-province fund payments net of cancellations; per province
    payable, receivable, net, prepayment and top-up; per hospital what its agency owes it.
    Exits 2 if RESULTS has no results or another log's, or if the month `--month` names has
    no settlements (a month a user names is input, not a verdict)."""
    if month is not None and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        raise typer.BadParameter("a month as yyyy-MM, e.g. 2026-12", param_hint="--month")
    try:
        header, visits = read_visit_log(visit_log)
        # none, or of another world (a policy): an error, not an empty or wrong statement
        tag = world_tag(header.world)
        policy = clearing_policy(header.world)  # as the platform that settled the log
        if prepayment_months is not None:  # for every province, whatever the file said
            policy = replace(policy, prepayment_months=prepayment_months, months={})
        events: list[SettlementEvent] = []
        no_result = under_way = 0  # visits left out of the statements, or in part
        with ResultsFile(results, tag) as held:
            oracles = held.expected_answers
            for visit, record in visits_with_results(visits, held):
                no_result += record is None
                under_way += record is not None and record.get("under_way") is True
                events += events_of_visit(visit, infnos_of(visit),
                                          record["answers"] if record else {})
        statements = clear(events, policy)
    except LogFormatError as exc:
        raise refusal_exit(exc) from None
    if no_result or under_way:  # on stderr: what --json prints stays JSON
        errors.print(f"Of the log's visits, {no_result:,} {'has' if no_result == 1 else 'have'} "
                     f"no result and {under_way:,} {'was' if under_way == 1 else 'were'} under "
                     "way when the replay stopped: the statements hold only the settlements "
                     "the results show.", markup=False, highlight=False)
    if oracles:  # taken, as what the platform should clear, but said (verify refuses them
        # as results at their own path, and says what they are under another)
        errors.print(f"{results} holds the oracle's expected answers (as `huimin generate` "
                     "and `huimin run` write them), not a run's or a replay's results: these "
                     "are the statements the platform should clear for the log.", markup=False,
                     highlight=False)
    chosen = [s for s in statements if month is None or s.month == month]
    if month is not None and not chosen:  # a month of local settlements only has one
        raise refusal_exit(f"No settlements in {month}; months with some: "
                       f"{', '.join(s.month for s in statements) or 'none'}")
    if prepayment_months is not None:  # not the policy's prepayment: said with the world
        tag += f"; prepayment {prepayment_months} months for every province (--prepayment-months)"
    if json_out:  # each statement names the world (the policy) it was cleared under
        console.print_json(orjson.dumps([{**s.as_dict(), "world": tag} for s in chosen]).decode())
        return
    console.print(f"Cleared in the world of {tag}", markup=False, highlight=False,
                  soft_wrap=True)
    for s in chosen:
        print_statement(s, console)


# the other commands, registered on `app` after these (the order `huimin --help` lists)
from huimin import cli_bench, cli_cluster, cli_compare, cli_fhir  # noqa: E402, F401

if __name__ == "__main__":
    app()
