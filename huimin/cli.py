"""The `huimin` command line."""

from __future__ import annotations

import errno
import functools
import inspect
import math
import os
import re
import shlex
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import aiokafka.errors
import kafka.errors
import orjson
import typer
from prometheus_client import start_http_server
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperCommand, TyperGroup

from benchmarks.load import (
    FIND_CAPACITY_LEAST,
    FIND_CAPACITY_MAX,
    MAX_VISITS_IN_FLIGHT,
    huimin_commit,
)
from benchmarks.profiles import py_spy
from huimin.fhir_check import check_fhir_file
from huimin.logfiles import (
    LogFormatError,
    LogHeader,
    expected_path_for,
    expected_record,
    read_records,
    read_visit_log,
    reserve_header,
    whole_file,
    write_header_in_place,
    write_records,
    write_visit,
)
from huimin.moneyflow import events_from_results
from huimin.policy_file import read_policy_file
from huimin.publish import (
    MOST_FILES,
    hospital_for,
    platform_hospitals,
    publish_requests,
    send_publishes,
    sendable,
)
from huimin.report import (
    print_statement,
    print_summary,
    replay_pace,
    summarise,
    write_dead_letters,
    write_latencies,
    write_outputs,
)
from huimin.run import (
    PlatformNotServing,
    RunOptions,
    TopicsUnfit,
    UsedCluster,
    account,
    arrivals_at_rate,
    arrivals_at_speed,
    check_bad_requests,
    check_fresh,
    default_out_dir,
    execute,
    patients_of,
    replay_passed,
    run_scenario,
    visit_period,
    write_money_views,
)
from huimin.verify import checked_visits, results_by_visit, write_json, write_junit
from huimin.verify import verify as verify_answers
from messages.codes import ErrorCode
from messages.dead_letters import DeadLetterEntry, summarise_dead_letters
from messages.identity import is_valid_certno
from messages.visitlog import TIME_FORMAT
from records.validation import Validator
from settlement.clearing import clear
from settlement.oracle import Oracle
from settlement.parameters import MAX_PREPAYMENT_MONTHS, ParameterError
from settlement.retention import WINDOW_DAYS
from simulators.bad_messages import MAX_BAD_PER_KIND, BadMessage, generate_bad_messages
from simulators.faults import FaultPlan, FaultPlanError
from simulators.hospital import (
    SIGNATURE_REFUSALS,
    HospitalRunResult,
    OnProgress,
    PlatformOfAnotherWorld,
    PlatformSilent,
    SignaturesRefused,
    signatures_refused,
)
from simulators.hospital_metrics import HOSPITAL_REGISTRY
from simulators.interrupt import GentleInterrupt
from simulators.visits import MAX_DAYS, MAX_VISITS, VisitSpec, generate_visits
from simulators.world import (
    MAX_PERSONS,
    SEED_BOUND,
    WorldSpec,
    build_world,
    clearing_policy,
    world_tag,
)
from simulators.world_export import write_world
from streams.broker import (
    BOOTSTRAP_ENV,
    BROKER_KINDS,
    BrokerError,
    EmbeddedBroker,
    bootstrap_problem,
    unreachable,
)
from streams.config import FETCH_WAIT_MS, KAFKA_FETCH_WAIT_MS, LINGER_MS, STORES, WorkerConfig
from streams.dead_letters import TopicMissing, read_dead_letters
from streams.kafka_broker import KAFKA_VERSION, ApacheKafkaBroker
from streams.security import PASSWORD_ENV, ClusterSecurity
from streams.spare import max_poll_interval_s
from streams.table_files import DataFolderInUse
from streams.topics import (
    TopicsRefused,
    create_platform_topics,
    topic_problems,
    unfit_topics,
)
from streams.trail import follow_trail
from streams.worker import run_worker

#: A cluster that cannot be reached: kafka-python (the hospitals, the topic admin) gives up
#: after its bootstrap timeout; aiokafka (the benchmarks' raw ceiling) on a refused connection.
UNREACHABLE = (kafka.errors.KafkaTimeoutError, kafka.errors.KafkaConnectionError,
               aiokafka.errors.KafkaConnectionError, aiokafka.errors.NoBrokersAvailable)

#: Errors of a write that name no file, and what they mean to a person.
WRITES_REFUSED = {errno.ENOSPC: "the output: no space left on its device",
                  errno.EDQUOT: "the output: the disk quota is used up",
                  errno.EFBIG: "the output: the file would be too large"}

# no emoji codes: a host "a:b:c" or a path with ":b:" in it is printed as given
console = Console(emoji=False)
errors = Console(stderr=True, emoji=False)
if not console.is_terminal:  # a log or CI: lines kept whole (commands, paths, tables)
    console.width = errors.width = 200
    console.soft_wrap = True


def error_message(exc: BaseException, bootstrap: str | None = None) -> str | None:
    """A one-line message for an error a person can fix (a file or folder that cannot be
    opened, a cluster that cannot be reached); None for anything else: a bug, left to raise
    with its traceback."""
    if isinstance(exc, UsedCluster | TopicsUnfit | TopicsRefused | PlatformNotServing
                  | PlatformSilent | PlatformOfAnotherWorld | SignaturesRefused):
        return str(exc)
    if isinstance(exc, UNREACHABLE):
        where = f"the cluster at {bootstrap}" if bootstrap else "the Kafka cluster"
        return f"cannot reach {where} (is it up?): {exc}"
    if isinstance(exc, OSError) and exc.errno in WRITES_REFUSED:
        return f"cannot write {WRITES_REFUSED[exc.errno]}"
    if isinstance(exc, OSError) and exc.filename is not None:
        name = Path(os.fsdecode(exc.filename))
        if isinstance(exc, FileNotFoundError) and not name.parent.exists():
            return f"{name}: the folder {name.parent} does not exist"
        if isinstance(exc, IsADirectoryError):
            return f"{name} is a folder, not a file"
        return f"{name}: {exc.strerror or exc}"
    return None


def _clear_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command`, exiting 2 with a one-line message on the errors of `error_message`."""
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (OSError, UsedCluster, TopicsUnfit, TopicsRefused, PlatformNotServing,
                PlatformSilent, PlatformOfAnotherWorld, SignaturesRefused, *UNREACHABLE) as exc:
            message = error_message(exc, kwargs.get("bootstrap") or os.environ.get(BOOTSTRAP_ENV))
            if message is None:
                raise
            errors.print(f"Error: {message}", style="red", soft_wrap=True, markup=False,
                         highlight=False)
            raise typer.Exit(2) from None
    return wrapper


def _check_output(output: Path | None, option: str, **inputs: Path | None) -> None:
    """Refuse (exit 2), before any work, an output file that cannot be written (a folder, or
    in a folder that does not exist) or that is one of the command's inputs: writing it would
    destroy what it reads, or a check would compare a file with itself."""
    if output is None:
        return
    if output.is_dir():
        raise _refused(f"{output} is a folder, not a file")
    if not output.resolve().parent.is_dir():
        raise _refused(f"{output}: the folder {output.parent} does not exist")
    for what, path in inputs.items():
        if path is not None and (output.resolve() == path.resolve() or (output.exists()
                                 and path.exists() and os.path.samefile(output, path))):
            raise _refused(f"{option} {output} is the {what.replace('_', ' ')}: writing it "
                           "would overwrite that; give another file")


def _refused(exc: Exception | str) -> typer.Exit:
    """Print `exc` as one red `Error:` line on stderr (unwrapped, without markup), for exit 2:
    a file that is not what it should be, a broker that did not start. Stdout keeps only
    what a command produces."""
    errors.print(f"Error: {exc}", style="red", soft_wrap=True, markup=False, highlight=False)
    return typer.Exit(2)


class _FlagsUntyped:
    """A flag's row in `--help` shows no type: Typer 0.29 tags it `<bool>`, which reads as if
    it took a value (`--json true`)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsUntyped, TyperCommand):
    pass


class _Group(_FlagsUntyped, TyperGroup):
    pass


class _Typer(typer.Typer):
    """Every command's bad input (an unwritable -o, an unreachable --bootstrap) ends in a
    one-line message and exit 2, not a traceback (see `error_message`)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]],
                                                             Callable[..., Any]]:
        def decorator(f: Callable[..., Any]) -> Callable[..., Any]:
            help_text = kwargs.pop("help", None) or _unwrapped(f.__doc__ or "")
            super(_Typer, self).command(*args, help=help_text, cls=_Command,
                                        **kwargs)(_clear_errors(f))
            return f
        return decorator


def _unwrapped(docstring: str) -> str:
    """A docstring's paragraphs each on one line: Typer's Rich help keeps the source's line
    breaks after the first paragraph, which then wrap badly in a terminal."""
    paragraphs = inspect.cleandoc(docstring).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


app = _Typer(cls=_Group, add_completion=False, no_args_is_help=True,
             help="huimin: cross-province medical-insurance settlement and health-record "
                  "exchange, simulated on a real Kafka-protocol broker.")


def _print_version(asked: bool) -> None:
    if asked:
        commit = huimin_commit()
        print(f"huimin {package_version('huimin')}"
              + (f" (git {commit})" if commit != "?" else ""))
        raise typer.Exit()



def _exit_on_sigterm(signum: int, _frame: object) -> None:
    errors.print("terminated (SIGTERM): stopping what this command started",
                 markup=False, highlight=False)
    raise SystemExit(128 + signum)


@app.callback()
def _stop_cleanly_on_sigterm(version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print huimin's version (and git commit, in a checkout) and exit.")] = False
                             ) -> None:
    # SIGTERM (a CI runner's timeout, `kill`, systemd) unwinds like Ctrl-C, so that a run
    # stops the broker and the workers it started instead of leaving them running.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:  # what the workers a command starts will read: refused before anything starts
        max_poll_interval_s()
    except ValueError as exc:
        raise _refused(exc) from None


Seed = Annotated[int, typer.Option(min=-SEED_BOUND, max=SEED_BOUND - 1,
                                   help="Seed of the world and the visits.")]
Persons = Annotated[int, typer.Option(min=1, max=MAX_PERSONS,
                                      help="Insured persons in the world.")]
VisitsOption = Annotated[int, typer.Option(
    "--visits", min=1, max=MAX_VISITS,
    help="Visits to carry out (outpatient, and 15 % inpatient stays).")]
CrossShare = Annotated[float, typer.Option(min=0.0, max=1.0,
                                           help="Share of cross-province visits.")]
PolicyFile = Annotated[Path | None, typer.Option(
    "--policy", help="A YAML file of the provinces' policy parameters: deductibles, ratios, "
                     "caps, the retiree bonus, the unfiled cut, the class-B self-pay share, "
                     "the clearing's prepayment, the lab results' reuse window "
                     "(docs/parameters.yaml). Every worker of the platform needs the same.")]


def _world(seed: int, persons: int, policy: Path | None) -> WorldSpec:
    """The world of the options; a policy file that cannot be used is refused (exit 2)."""
    if policy is None:
        return WorldSpec(seed=seed, persons=persons)
    try:
        return WorldSpec(seed=seed, persons=persons, parameters=read_policy_file(policy))
    except ParameterError as exc:
        raise _refused(exc) from None


Store = Annotated[str, typer.Option(
    "--store", help="Where the workers keep their tables: memory (default; rebuilt from the "
                    "changelogs at start) or rocksdb (on disk in each worker's data folder: "
                    "memory stays flat on long runs).")]


def _store(store: str) -> str:
    if store not in STORES:
        raise typer.BadParameter(f"one of {', '.join(STORES)}", param_hint="--store")
    return store


def _check_web_address(host: str, port: int) -> None:
    """Refuse, as bad input, a worker's --web-host/--web-port it could not serve on (a port
    another worker holds): Faust would otherwise fail with a traceback after starting."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else \
            exc.strerror or str(exc)
        raise typer.BadParameter(f"cannot serve on {host}:{port}: {reason}", param_hint=(
            "--web-host" if isinstance(exc, socket.gaierror) else "--web-port")) from None


def _serve_metrics(port: int | None, host: str = "127.0.0.1") -> None:
    """Serve the hospitals' Prometheus metrics on `port`, if given."""
    if port is None:
        return
    try:
        start_http_server(port, addr=host, registry=HOSPITAL_REGISTRY)
    except OSError as exc:
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else \
            exc.strerror or str(exc)
        raise typer.BadParameter(f"cannot serve on {host}:{port}: {reason}", param_hint=(
            "--metrics-host" if isinstance(exc, socket.gaierror) else "--metrics-port")
                                 ) from None


@app.command()
def run(
    ctx: typer.Context,
    persons: Persons = 5_000,
    visits: VisitsOption = 2_000,
    cross_share: CrossShare = 0.2,
    days: Annotated[int, typer.Option(
        min=1, max=MAX_DAYS, help="Simulated days the visits span, from 2026-12-01 (the "
                                  "clock runs as fast as --rate lets it).")] = 60,
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
        min=0.1, help="Seconds a hospital waits for an answer before giving the visit up. "
                      "A killed worker's partitions wait for its restart (8–23 s).")
                          ] = 30.0,
    policy: PolicyFile = None,
) -> None:
    """Simulate, settle every visit through the platform, verify against the oracle, report.

    Uses the embedded broker unless KAFKA_BOOTSTRAP_SERVERS names a cluster. Exits 1 if any
    answer differs from the oracle or any request went unanswered.
    """
    plan = _fault_plan(faults)
    if plan.kill_worker or plan.join_worker or workers > 1:
        _warn_if_redelivery_outlives_window(days, visits / rate, "fewer --days or a lower --rate")
    if broker not in BROKER_KINDS:
        raise typer.BadParameter(f"one of {', '.join(BROKER_KINDS)}", param_hint="--broker")
    world = _world(seed, persons, policy)
    _check_cluster_address(None)
    _serve_metrics(metrics_port)
    out = out or default_out_dir()  # named if a Ctrl-C stops the run
    if out.exists() and not out.is_dir():
        raise _refused(f"--out {out} is a file: give a folder for the run's results")
    opts = RunOptions(world=world, faults=plan,
                      visits=VisitSpec(visits=visits, cross_share=cross_share, days=days,
                                       ehr=ehr),
                      rate=rate, partitions=partitions, bad_per_kind=bad_per_kind, out_dir=out,
                      broker=broker, workers=workers, store=_store(store),
                      answer_timeout_s=answer_timeout)
    _check_reachable(os.environ.get(BOOTSTRAP_ENV))
    try:
        with _progress() as progress:
            on_stage, on_progress = _reporters(progress, visits)
            report = run_scenario(opts, on_stage=on_stage, on_progress=on_progress)
    except KeyboardInterrupt:  # unwound: what it started is stopped
        console.print(f"[yellow]{interrupted_run(out)}[/]", soft_wrap=True, highlight=False)
        raise typer.Exit(130) from None
    summary = summarise(report)
    write_outputs(report, summary)
    print_summary(summary, report.out_dir, console)
    if not report.ok:
        # one line, whatever the terminal's width, so that it pastes as one command
        where = " (on a fresh cluster, as this one now holds this run's requests)" \
            if os.environ.get(BOOTSTRAP_ENV) else ""
        console.print(f"Reproduce with{where}: " + reproduce_command(ctx.params),
                      soft_wrap=True, markup=False, highlight=False)
    raise typer.Exit(0 if report.ok else 1)


def interrupted_run(out: Path) -> str:
    """What a `huimin run` stopped by Ctrl-C says: what it stopped, and what it left in `out`
    (a run is judged whole, so no summary)."""
    started = "the workers" if os.environ.get(BOOTSTRAP_ENV) else "the broker and the workers"
    left = [what for what, there in (("its visit log", (out / "visits.jsonl").exists()),
                                     ("the workers' logs", any(out.glob("worker-*.log"))))
            if there]
    return (f"Stopped by Ctrl-C: {started} this run started, if any, are stopped. A run is "
            "judged whole, so there is no summary"
            + (f"; {' and '.join(left)} {'are' if len(left) > 1 else 'is'} in {out}/ (to "
               "judge part of a run, replay its log: `huimin replay`, Ctrl-C, then `huimin "
               "verify --replayed-only`)" if left else "") + ".")


#: `huimin run` options a reproduction always names, so that it holds if a default changes.
REPRODUCE_ALWAYS = ("persons", "visits", "cross_share", "days", "seed", "rate", "broker",
                    "workers")
#: Left out: where the outputs go (a second run there would overwrite the failed run's).
REPRODUCE_NEVER = ("out",)


def reproduce_command(values: Mapping[str, Any],
                      environ: Mapping[str, str] = os.environ) -> str:
    """The shell command that runs `huimin run` again with the options `values` (by parameter
    name, as the command's context holds them; missing ones: the defaults): those of
    REPRODUCE_ALWAYS, and every other that differs from its default. Prefixed with
    KAFKA_BOOTSTRAP_SERVERS=… when the run used the cluster that variable names."""
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    words = ["huimin", "run"]
    for param in command.commands["run"].params:
        if not isinstance(param, typer.core.TyperOption) or param.name in REPRODUCE_NEVER:
            continue
        value = values.get(param.name or "", param.default)
        if param.name == "faults":
            value = str(_fault_plan(value)) or None  # as parsed: "" and None are no faults
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


def _bootstrap(bootstrap: str | None) -> str:
    value = bootstrap or os.environ.get(BOOTSTRAP_ENV)
    if not value:
        raise typer.BadParameter(f"give --bootstrap or set {BOOTSTRAP_ENV}",
                                 param_hint="--bootstrap")
    _check_cluster_address(bootstrap)
    _check_reachable(value)
    return value


def _check_cluster_address(bootstrap: str | None) -> None:
    """A `--bootstrap` given, else KAFKA_BOOTSTRAP_SERVERS if set, checked (exit 2)."""
    if bootstrap is not None and (problem := bootstrap_problem(bootstrap)):  # "" too
        raise typer.BadParameter(problem, param_hint="--bootstrap")
    external = os.environ.get(BOOTSTRAP_ENV)
    if bootstrap is None and external and (problem := bootstrap_problem(external)):
        raise _refused(f"{BOOTSTRAP_ENV}: {problem}")


def _check_reachable(cluster: str | None) -> None:
    """A cluster none of whose addresses can be connected to, refused at once (exit 2), once
    every other option has been checked: the Kafka clients take 30 s to say only that they
    could not bootstrap."""
    if cluster and (problem := unreachable(cluster)):
        raise _refused(f"cannot reach the cluster at {cluster} (is it up?): {problem}")


SecurityProtocol = Annotated[str, typer.Option(
    help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (the SASL password from "
         "HUIMIN_SASL_PASSWORD).")]
SaslMechanism = Annotated[str | None, typer.Option(help="PLAIN, SCRAM-SHA-256, …")]
SaslUsername = Annotated[str | None, typer.Option()]
SslCafile = Annotated[Path | None, typer.Option()]


def _security(protocol: str, mechanism: str | None, username: str | None,
              cafile: Path | None) -> ClusterSecurity:
    """The cluster's security settings, checked before any connection: without it a missing
    CA file or password shows only as a cluster that cannot be reached, after 30 s."""
    try:
        security = ClusterSecurity(protocol, mechanism, username,
                                   str(cafile) if cafile else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--security-protocol") from None
    if cafile is not None and not cafile.is_file():
        raise typer.BadParameter(f"{cafile}: no such file", param_hint="--ssl-cafile")
    if security.sasl and not username:
        raise typer.BadParameter(f"{protocol} needs the user name",
                                 param_hint="--sasl-username")
    if security.sasl and not os.environ.get(PASSWORD_ENV):
        raise _refused(f"{protocol} needs the password in {PASSWORD_ENV}, which is not set")
    return security


@app.command()
def topics(
    bootstrap: Annotated[str | None, typer.Option(help=f"Default: ${BOOTSTRAP_ENV}.")] = None,
    partitions: Annotated[int, typer.Option(
        min=1, help="Partitions per topic: as many workers as this can share the work.")] = 8,
    replication: Annotated[int, typer.Option(min=1, help="Copies of each partition.")] = 1,
    security_protocol: SecurityProtocol = "PLAINTEXT",
    sasl_mechanism: SaslMechanism = None,
    sasl_username: SaslUsername = None,
    ssl_cafile: SslCafile = None,
) -> None:
    """Create the platform's topics on a cluster (those that do not exist yet)."""
    security = _security(security_protocol, sasl_mechanism, sasl_username, ssl_cafile)
    where = _bootstrap(bootstrap)
    created = create_platform_topics(where, partitions, replication, security.kafka_python())
    if problems := topic_problems(where, partitions, security.kafka_python()):
        raise _refused(f"{unfit_topics(where, partitions, problems)} A topic's partitions "
                       "cannot be made fewer, and more would move its keys: delete those "
                       "topics (and the consumer group `huimin`), or use the --partitions "
                       "they have")
    console.print(f"Topics ready: {', '.join(created)}", soft_wrap=True)


@app.command("dead-letters")
def dead_letters(
    bootstrap: Annotated[str | None, typer.Option(help=f"Default: ${BOOTSTRAP_ENV}.")] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing those that arrive, until Ctrl-C.")] = False,
    code: Annotated[str | None, typer.Option(
        help="Only this error code, e.g. E1001.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object a line, for scripts.")] = False,
    security_protocol: SecurityProtocol = "PLAINTEXT",
    sasl_mechanism: SaslMechanism = None,
    sasl_username: SaslUsername = None,
    ssl_cafile: SslCafile = None,
) -> None:
    """List the messages the platform kept in `dead.letters`, and why.

    Oldest first (with --follow, as they are read, partition by partition, then as they
    arrive): when, partition@offset,
    error code, source topic, the request's infno and msgid where it names them, and the
    reason; then how many by code and topic. Never a message's key or body (they may hold
    personal data). Reads without joining a consumer group: nothing on the cluster changes."""
    if code is not None and code not in set(ErrorCode):
        raise typer.BadParameter(f"{code} is not one of the platform's error codes (E1001, …: "
                                 "docs/wire.md)", param_hint="--code")
    security = _security(security_protocol, sasl_mechanism, sasl_username, ssl_cafile)
    where = _bootstrap(bootstrap)
    shown: list[DeadLetterEntry] = []
    answering = [True]

    def say_contact(answered: bool) -> None:
        """Following, a cluster gone quiet is said once, and so is its coming back."""
        if answered != answering[0]:
            answering[0] = answered
            errors.print(f"the cluster at {where} answers again" if answered else
                         f"the cluster at {where} does not answer: no dead letter can come "
                         "until it does (still following; Ctrl-C stops)", markup=False,
                         highlight=False, soft_wrap=True)

    try:
        letters = read_dead_letters(where, follow, security.kafka_python(),
                                    on_contact=say_contact)
        if not follow:  # all of them, across partitions, oldest first
            letters = iter(sorted(letters, key=lambda e: (e.timestamp_ms, e.partition,
                                                          e.offset)))
        for entry in letters:
            if code is not None and entry.error_code != code:
                continue
            shown.append(entry)
            if as_json:
                print(orjson.dumps(entry.to_dict()).decode(), flush=True)
            else:
                console.print(entry.line(), soft_wrap=True, markup=False, highlight=False)
    except TopicMissing as exc:
        raise _refused(exc) from None
    except KeyboardInterrupt:
        pass  # --follow ends on Ctrl-C; what was read is summed up below
    if not as_json:
        console.print(summarise_dead_letters(shown), markup=False, highlight=False)


@app.command()
def trail(
    msgids: Annotated[list[str], typer.Argument(help="The requests' msgids.", min=1)],
    bootstrap: Annotated[str | None, typer.Option(help=f"Default: ${BOOTSTRAP_ENV}.")] = None,
    group: Annotated[str, typer.Option(help="The platform's consumer group.")] = "huimin",
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object a msgid, for scripts.")] = False,
    within: Annotated[float, typer.Option(
        min=1, help="Seconds to read the topics in; exit 1 if they were not all read (or a "
                    "msgid is on no topic).")] = 60,
    security_protocol: SecurityProtocol = "PLAINTEXT",
    sasl_mechanism: SaslMechanism = None,
    sasl_username: SaslUsername = None,
    ssl_cafile: SslCafile = None,
) -> None:
    """Where requests went: every record on the cluster that names each msgid.

    The request on hosp.requests, what each hop forwarded, the table rows that remember it,
    its answer on hosp.responses, a dead letter: by topic, partition and offset, oldest first,
    "committed" or "NOT COMMITTED" where the platform's consumer group reads the topic
    (whether it has committed past the record: it commits every few seconds). A request left
    unanswered stopped after the last one.
    Never a record's key or body. Reads without joining a consumer group."""
    msgids = [m.strip() for m in msgids]  # pasted with a space, found as typed
    if "" in msgids:
        raise typer.BadParameter("an empty msgid would match every record", param_hint="MSGIDS")
    security = _security(security_protocol, sasl_mechanism, sasl_username, ssl_cafile)
    try:
        found = follow_trail(_bootstrap(bootstrap), msgids, group, security.kafka_python(),
                             time_allowed_s=within)
    except kafka.errors.KafkaError as exc:
        raise _refused(f"could not read the cluster's topics: {exc}") from None
    except TopicMissing as exc:
        raise _refused(exc) from None
    if as_json:
        for msgid, seen in found.sightings.items():
            print(orjson.dumps({"msgid": msgid, "complete": found.complete,
                                "group_committed": found.group_committed,
                                "sightings": [s.to_dict() for s in seen]}).decode())
    else:
        for line in found.lines():
            console.print(line, soft_wrap=True, markup=False, highlight=False)
    if not found.complete or not all(found.sightings.values()):  # as grep: 1 if not found
        raise typer.Exit(1)


@app.command()
def worker(
    bootstrap: Annotated[str | None, typer.Option(help=f"Default: ${BOOTSTRAP_ENV}.")] = None,
    persons: Persons = 5_000,
    seed: Seed = 42,
    partitions: Annotated[int, typer.Option(
        min=1, help="Partitions per topic, as `huimin topics` made them.")] = 8,
    web_port: Annotated[int, typer.Option(
        min=1, max=65535, help="This worker's web port (/clearing/, /ledger/, /fhir/…).")] = 6066,
    web_host: Annotated[str, typer.Option(help="Address the web server binds.")
                        ] = "127.0.0.1",
    data_dir: Annotated[Path, typer.Option(
        help="This worker's own folder for its tables (one per worker).")
                        ] = Path(".huimin-data"),
    security_protocol: SecurityProtocol = "PLAINTEXT",
    sasl_mechanism: SaslMechanism = None,
    sasl_username: SaslUsername = None,
    ssl_cafile: SslCafile = None,
    idempotent: Annotated[bool, typer.Option(
        help="Idempotent producers (Apache Kafka has them; Tansu does not).")] = False,
    fetch_wait_ms: Annotated[int, typer.Option(
        min=0, help=f"Consumer fetch wait: {FETCH_WAIT_MS} for Tansu (it answers a waiting "
                    f"fetch only when the wait is up), {KAFKA_FETCH_WAIT_MS} for Apache Kafka "
                    "(it answers as soon as data arrives; less polling).")] = FETCH_WAIT_MS,
    store: Store = "memory",
    policy: PolicyFile = None,
) -> None:
    """Run one platform worker (all roles) in the consumer group `huimin`.

    Start more to scale out. The topics must exist (`huimin topics`)."""
    store_url = STORES[_store(store)]
    world = _world(seed, persons, policy)
    _check_web_address(web_host, web_port)
    security = _security(security_protocol, sasl_mechanism, sasl_username, ssl_cafile)
    where = _bootstrap(bootstrap)
    if problems := topic_problems(where, partitions, security.kafka_python()):
        advice = []
        if any(p.startswith("missing:") for p in problems):
            advice.append(f"create them first (huimin topics --bootstrap {where} --partitions "
                          f"{partitions})")
        if not all(p.startswith("missing:") for p in problems):
            advice.append("if they were made with another count, start the worker with "
                          "--partitions of that count; a single topic with another count was "
                          "made by the broker for a worker started before them: delete it, "
                          "and the consumer group `huimin`, then create it again")
        said = "; ".join(advice)
        raise _refused(f"{unfit_topics(where, partitions, problems)} {said[0].upper()}{said[1:]}")
    try:
        run_worker(WorkerConfig(bootstrap=where, partitions=partitions,
                                web_port=web_port, web_host=web_host, data_dir=str(data_dir),
                                world=world, idempotent=idempotent,
                                fetch_max_wait_ms=fetch_wait_ms, store=store_url,
                                security=security))
    except DataFolderInUse as exc:
        raise _refused(str(exc)) from None


@app.command()
def broker(
    kind: Annotated[str, typer.Option(
        help="tansu: the embedded Tansu broker (memory storage); kafka: a single-node Apache "
             "Kafka (KRaft) from its Maven Central jars (needs java ≥ 17 and mvn; the jars "
             "are cached in ~/.cache/huimin).")] = "tansu",
) -> None:
    """Start a local broker alone, print its address, stop it on Ctrl-C or SIGTERM."""
    if kind not in BROKER_KINDS:
        raise typer.BadParameter(f"one of {', '.join(BROKER_KINDS)}", param_hint="--kind")
    if kind == "kafka":
        server: EmbeddedBroker | ApacheKafkaBroker = ApacheKafkaBroker()
        name = f"Apache Kafka {KAFKA_VERSION} (KRaft, single node)"
    else:
        server, name = EmbeddedBroker(), "Embedded broker (Tansu, memory storage)"
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.start()
    except BrokerError as exc:
        raise _refused(exc) from None
    try:
        console.print(f"{name} listening on [bold]{server.bootstrap}[/]\nUse it with: "
                      f"export KAFKA_BOOTSTRAP_SERVERS={server.bootstrap}\n"
                      "Ctrl-C stops it.")
        try:
            while not stop and server.process is not None and server.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        # not asked to stop: the broker ended by itself (a crash, or a kill of its process)
        died = None if stop or server.process is None else server.process.poll()
    finally:
        server.stop()
    if died is not None:  # not a clean stop: whoever uses the broker must hear of it
        _refused(f"the broker exited by itself (code {died}), not on Ctrl-C or SIGTERM: "
                 "everything it held is gone")
        raise typer.Exit(1)
    console.print("Broker stopped.")


@app.command()
def bench(
    rates: Annotated[str, typer.Option(help="Offered loads, visits per second, comma-separated "
                                            "(about one settlement per visit).")
                     ] = "25,50,100",
    duration: Annotated[float, typer.Option(min=1, help="Seconds of load per rate.")] = 30.0,
    warmup: Annotated[float, typer.Option(min=0, help="First seconds of each rate left out.")
                      ] = 5.0,
    broker: Annotated[str, typer.Option("--broker", help="tansu or kafka")] = "tansu",
    workers: Annotated[int, typer.Option(
        min=1, help="Platform workers (each a process, in one consumer group).")] = 1,
    partitions: Annotated[int | None, typer.Option(
        min=1, help="Partitions per topic (default: one per worker; fewer: less for the "
                    "broker to poll, fuller batches).")] = None,
    linger_ms: Annotated[int, typer.Option(
        min=0, help="Producers gather sends this long: fewer broker requests, ms per hop.")
                         ] = LINGER_MS,
    fetch_wait_ms: Annotated[int | None, typer.Option(
        min=0, help=f"Consumers' fetch wait. Default: {FETCH_WAIT_MS} on Tansu (it answers a "
                    f"waiting fetch only when the wait is up), {KAFKA_FETCH_WAIT_MS} on Kafka (it "
                    "answers when data arrives).")
                             ] = None,
    persons: Annotated[int | None, typer.Option(
        min=1, max=MAX_PERSONS,
        help="Insured persons in the world. Default: 200 per visit/s of the highest rate "
             "offered (--find-capacity-max with --find-capacity), at least 20,000, so that "
             "as few visits wait for the same person's visit before them at every rate "
             "(2.5 % at 100/s).")] = None,
    seed: Seed = 42,
    ehr: Annotated[bool, typer.Option(help="Health-record steps in the visits too.")] = False,
    ceiling: Annotated[bool, typer.Option(help="Measure the raw broker ceiling too.")] = True,
    sweep_max: Annotated[float, typer.Option(
        min=0, help="Push the raw ceiling up to this many messages/s, doubling from twice "
                    "the highest rate (0: no sweep).")] = 12_800.0,
    out: Annotated[Path, typer.Option(help="Where bench.json, bench.md and bench.png go.")
                   ] = Path("bench"),
    store: Store = "memory",
    broker_warmup: Annotated[float | None, typer.Option(
        min=0, help="Seconds of unmeasured load on each fresh broker before it is measured. "
                    "Default: 40 on Kafka (its JVM compiles its hot paths meanwhile), 0 on "
                    "Tansu.")] = None,
    max_in_flight: Annotated[int, typer.Option(
        min=0, help="Visits under way at once before arrivals are dropped (and counted): "
                    "far past capacity, a backlog only takes minutes to drain and holds the "
                    "broker's memory. 0: no limit.")] = MAX_VISITS_IN_FLIGHT,
    profile: Annotated[bool, typer.Option(
        help="Sample the workers and the hospitals with py-spy while each rate runs: the "
             "report's 'Where the time goes', raw stacks in each rate's folder.")] = False,
    find_capacity: Annotated[bool, typer.Option(
        help="After --rates, offer more until huimin's capacity within the p99 target is "
             "known to within 25 %: double from the highest rate sustained, then bisect "
             "twice.")] = False,
    find_capacity_max: Annotated[float, typer.Option(
        min=1, help="The highest rate --find-capacity offers, visits/s.")] = FIND_CAPACITY_MAX,
) -> None:
    """Benchmark settlement latency and throughput against the raw broker ceiling.

    Open-loop load at each offered rate, beside the raw ceiling: plain aiokafka forwarders
    over as many hops."""
    from benchmarks.load import bench_persons, run_bench
    from benchmarks.report import markdown, plot, write_json

    if broker not in BROKER_KINDS:
        raise typer.BadParameter(f"one of {', '.join(BROKER_KINDS)}", param_hint="--broker")
    if profile and py_spy() is None:
        raise typer.BadParameter("needs py-spy: pip install py-spy (huimin's dev extras "
                                 "include it)", param_hint="--profile")
    if any(not r.strip() for r in rates.split(",")) and rates.strip():
        raise typer.BadParameter("a rate left empty between commas", param_hint="--rates")
    try:
        offered = [float(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        raise typer.BadParameter("numbers separated by commas", param_hint="--rates") from None
    if not offered or not all(0 < r < math.inf for r in offered):  # nan too
        raise typer.BadParameter("positive numbers", param_hint="--rates")
    for value, hint in ((duration, "--duration"), (warmup, "--warmup"),
                        (sweep_max, "--sweep-max"), (find_capacity_max, "--find-capacity-max"),
                        (broker_warmup or 0.0, "--broker-warmup")):
        if not math.isfinite(value):
            raise typer.BadParameter("a finite number", param_hint=hint)
    if warmup >= duration:
        raise typer.BadParameter(f"{warmup:g} s, not shorter than --duration ({duration:g} s): "
                                 "it must be, as the warm-up is left out of each rate's figures",
                                 param_hint="--warmup")
    if max(offered) * duration > MAX_VISITS:
        raise typer.BadParameter(f"at most {MAX_VISITS:,} visits a rate (rate × duration)",
                                 param_hint="--rates")
    # one visit, or none, would be all the figures; --find-capacity may halve down to its least
    lowest = min([*offered, *([FIND_CAPACITY_LEAST] if find_capacity else [])])
    if lowest * (duration - warmup) < 1:
        what = f"--rates {lowest:g}" if lowest in offered else \
            f"--find-capacity, which may search down to {lowest:g} visits/s,"
        raise _refused(f"{what} gives fewer than one visit after the warm-up ({duration:g} s "
                       f"less {warmup:g} s): rate × (duration − warmup) must be at least 1")
    _check_cluster_address(None)
    _check_reachable(os.environ.get(BOOTSTRAP_ENV))
    if os.environ.get(BOOTSTRAP_ENV):  # every rate runs on that one cluster: fresh at first?
        check_fresh(os.environ[BOOTSTRAP_ENV], partitions=partitions or workers)
    if persons is None:
        persons = bench_persons(max([*offered, find_capacity_max] if find_capacity
                                    else offered))
    if out.exists() and not out.is_dir():
        raise _refused(f"--out {out} is a file: give a folder for bench.json, bench.md and "
                       "bench.png")
    try:
        out.mkdir(parents=True, exist_ok=True)  # what it will write, refused before measuring
    except OSError as exc:
        raise _refused(f"--out {out} cannot be made: {exc.strerror or exc}") from None
    for name in ("bench.json", "bench.md", "bench.png"):
        _check_output(out / name, "--out")
        if not os.access(out / name if (out / name).exists() else out, os.W_OK):
            raise _refused(f"{out / name} cannot be written: no permission")
    terminated: list[int] = []

    def report_what_was_measured(signum: int, _frame: object) -> None:
        """SIGTERM (a CI job's time-out) stops the sweep as Ctrl-C does: the rates measured
        are written and reported (exit 143), not thrown away with the rate under way."""
        errors.print("terminated (SIGTERM): stopping the rate under way, then writing the "
                     "rates measured", markup=False, highlight=False)
        terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, report_what_was_measured)
    try:
        with _progress() as progress:
            stage, done = _reporters(progress, None)
            result = run_bench(offered, duration, warmup, broker, out, seed=seed,
                               persons=persons, workers=workers, ehr=ehr, ceiling=ceiling,
                               partitions=partitions or workers, linger_ms=linger_ms,
                               fetch_wait=fetch_wait_ms, sweep_max=sweep_max,
                               store=_store(store), broker_warmup=broker_warmup,
                               max_in_flight=max_in_flight or None, profile=profile,
                               find_capacity=find_capacity,
                               find_capacity_max=find_capacity_max, on_stage=stage,
                               on_progress=done)
    except KeyboardInterrupt:  # before any rate was measured: nothing to report
        errors.print(f"stopped by {'SIGTERM' if terminated else 'Ctrl-C'} before any rate "
                     f"was measured: no report written to {out} (only the logs of what ran)",
                     markup=False, highlight=False)
        raise typer.Exit(128 + terminated[0] if terminated else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if terminated:
        result["interrupted_by"] = "SIGTERM"
    write_json(result, out / "bench.json")
    report = markdown(result)
    (out / "bench.md").write_text(report)
    plot(result, out / "bench.png")
    console.print(report)
    console.print(f"Wrote {out / 'bench.json'}, {out / 'bench.md'} and {out / 'bench.png'}",
                  markup=False)
    if result["interrupted"]:
        raise typer.Exit(128 + terminated[0] if terminated else 130)


@app.command("check-fhir")
def check_fhir(
    files: Annotated[list[Path], typer.Argument(
        exists=True, help="FHIR R4 resources, one a file (JSON); a folder: its *.json, "
                          "subfolders too.")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object a file, for scripts.")] = False,
) -> None:
    """Check FHIR files as the platform's ingress checks a published document (7001).

    Offline, with the same checks (the R4B models and the platform's rules): `ok` and what the
    resource is, or the error code a publish would get and where the resource is wrong (never
    a value from it). Exits 0 if every file would be taken, 1 if any would be refused."""
    files = _json_files(files)
    validator = Validator()
    refused = 0
    for path in files:
        check = check_fhir_file(path, validator)
        refused += check.code is not None
        if as_json:
            print(orjson.dumps(check.as_dict()).decode(), flush=True)
            continue
        mark = "[green]ok[/]   " if check.code is None else f"[red]{check.code}[/]"
        where = f" (at {check.where})" if check.where else ""
        console.print(f"{mark}  {escape(str(path))}  {escape(check.what + where)}",
                      soft_wrap=True, highlight=False)
    if not as_json:
        console.print(f"{len(files) - refused:,} of {len(files):,} files would be taken"
                      + (f"; {refused:,} refused" if refused else ""))
    raise typer.Exit(1 if refused else 0)


def _json_files(paths: list[Path]) -> list[Path]:
    """The files given, a folder's *.json (subfolders too) in its place: regular files only
    (a folder named *.json is not one, and a pipe would be waited on)."""
    files = [f for path in paths for f in (sorted(p for p in path.rglob("*.json") if p.is_file())
                                          if path.is_dir() else [path])]
    if (other := next((f for f in files if f.exists() and not f.is_file()), None)) is not None:
        raise _refused(f"{other} is not a regular file")
    if not files:
        raise _refused("no .json files in the folders given")
    return files


@app.command()
def publish(
    files: Annotated[list[Path], typer.Argument(
        exists=True, help="FHIR R4 resources, one a file (JSON); a folder: its *.json, "
                          "subfolders too.")],
    certno: Annotated[str, typer.Option(help="The person's citizen ID number: the records' "
                                             "subject, the request's key.")],
    hospital: Annotated[str | None, typer.Option(
        help="The publishing hospital's code (fixmedins_code), e.g. H11010000001. Default: "
             "the first of the province the certno's first two digits name.")] = None,
    at: Annotated[str | None, typer.Option(
        help="The requests' time (inf_time, Beijing), YYYY-MM-DD HH:MM:SS. Default: now. "
             "The same --at and files publish again as duplicates, answered as at first.")
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help=f"Default: ${BOOTSTRAP_ENV}.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the answers.")
                       ] = 30,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object a file, for scripts.")] = False,
    security_protocol: SecurityProtocol = "PLAINTEXT",
    sasl_mechanism: SaslMechanism = None,
    sasl_username: SaslUsername = None,
    ssl_cafile: SslCafile = None,
) -> None:
    """Publish FHIR files (7001) to a running platform, as one of its hospitals.

    Each file's resource is sent signed (HUIMIN_SIGNING_SECRET, as the hospitals sign) and
    its answer told: 201 and the DocumentReference's location, or the error code and why.
    Find and read them then through a worker's FHIR views. Exits 0 if every file was
    published, 1 if any was refused or not answered in time."""
    if not is_valid_certno(certno):
        raise typer.BadParameter("not a valid citizen ID number (18 characters, the last "
                                 "its check character)", param_hint="--certno")
    if at is not None:
        try:  # written out in full, as a msgid's time is (2026-1-5 makes one too short)
            at = datetime.strptime(at, TIME_FORMAT).strftime(TIME_FORMAT)
        except ValueError:
            raise typer.BadParameter("give YYYY-MM-DD HH:MM:SS", param_hint="--at") from None
    try:
        sender = hospital_for(certno, hospital, platform_hospitals())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--hospital") from None
    paths = _json_files(files)
    if len(paths) > MOST_FILES:
        raise _refused(f"{len(paths):,} files: a run publishes at most {MOST_FILES:,} (a "
                       "msgid's sequence number has four digits)")
    readable: list[tuple[Path, Any]] = []
    unread: list[tuple[Path, str]] = []  # not sent: what the platform would not even read
    validator = Validator()
    for path in paths:
        check = check_fhir_file(path, validator)
        if check.code in (ErrorCode.MALFORMED_JSON, ErrorCode.MESSAGE_TOO_LARGE):
            unread.append((path, f"{check.code} {check.what}"))  # no request can carry it
        elif (resource := sendable(path)) is None:
            unread.append((path, "nested past the 255 levels a request's JSON may hold"))
        else:  # taken, or refused by the platform with its own answer (E1002, E5001, …)
            readable.append((path, resource))
    security = _security(security_protocol, sasl_mechanism, sasl_username, ssl_cafile)
    where = _bootstrap(bootstrap)
    results = send_publishes(where, certno, publish_requests(readable, sender, at), timeout,
                             security.kafka_python())
    for result in results:
        if as_json:
            print(orjson.dumps(result.as_dict()).decode(), flush=True)
            continue
        mark = "[green]201[/]  " if result.ok else f"[red]{escape(result.code)}[/]"
        console.print(f"{mark}  {escape(str(result.publish.path))}  {escape(result.what)}  "
                      f"[dim]{result.publish.msgid}[/]", soft_wrap=True, highlight=False)
    for path, why in unread:
        if as_json:
            print(orjson.dumps({"file": str(path), "ok": False, "code": "not sent",
                                "what": why}).decode(), flush=True)
        else:
            console.print(f"[red]not sent[/]  {escape(str(path))}  {escape(why)}",
                          soft_wrap=True, highlight=False)
    published = sum(r.ok for r in results)
    if not as_json:
        console.print(f"{published:,} of {len(paths):,} files published by "
                      f"{sender.fixmedins_code} ({sender.admdvs})"
                      + (f"; {len(paths) - published:,} not" if published < len(paths) else ""))
        if refused := next((r.code for r in results if r.code in SIGNATURE_REFUSALS), None):
            said = signatures_refused(refused).removesuffix("; no visit was sent")
            console.print(f"[yellow]{escape(said)}.[/]")
    raise typer.Exit(0 if published == len(paths) else 1)


@app.command("bench-compare")
def bench_compare(
    before: Annotated[Path, typer.Argument(help="A bench folder (or its bench.json): before.")],
    after: Annotated[Path, typer.Argument(help="Another: after the change.")],
) -> None:
    """Compare two `huimin bench` runs side by side (Markdown).

    Rate by rate: settlements/s, p50, p99, CPU per visit and the CPU probe (how fast the
    machine ran meanwhile), with the settings that differ."""
    from benchmarks.report import comparison, not_a_result

    def load(path: Path, hint: str) -> dict:
        file = path / "bench.json" if path.is_dir() else path
        try:
            result = orjson.loads(file.read_bytes())
            if (problem := not_a_result(result)) is not None:
                raise ValueError(problem)
            return result
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"{file} is not a `huimin bench` result ({exc})",
                                     param_hint=hint) from None

    typer.echo(comparison(load(before, "BEFORE"), load(after, "AFTER")), nl=False)


class _LogWhenNotATerminal:
    """Where a long run is, as timestamped lines, for a console that shows no progress bar
    (a log file, CI, `nohup`): each stage, then the visits done once a minute, and how many of
    them were dropped unstarted (the platform too far behind): a run past the platform's
    capacity then does not read as one keeping up."""

    EVERY_S = 60.0

    def __init__(self) -> None:
        self.on = not console.is_terminal
        self.total: int | None = None
        self.description = ""
        self.done, self.dropped, self.last = 0, 0, time.monotonic()

    def stage(self, description: str, visits: int | None) -> None:
        self.description = description
        self.total, self.done, self.dropped, self.last = visits, 0, 0, time.monotonic()
        if self.on:
            console.print(f"{time.strftime('%H:%M:%S')} {description}"
                          + (f": {visits:,} visits" if visits else ""), soft_wrap=True)

    def visits_done(self, finished: int, dropped: int) -> None:
        self.done += finished + dropped
        self.dropped += dropped
        if self.on and time.monotonic() - self.last >= self.EVERY_S:
            self.last = time.monotonic()
            dropped = (f", {self.dropped:,} of them dropped unstarted (the platform too far "
                       "behind)" if self.dropped else "")
            console.print(f"{time.strftime('%H:%M:%S')} {self.done:,} of {self.total or 0:,} "
                          f"visits done{dropped}", soft_wrap=True)


def _progress() -> Progress:
    """The progress bar on a terminal; elsewhere none (not even the blank line rich leaves
    as it stops): `_LogWhenNotATerminal` writes timestamped lines instead."""
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True,
                    disable=not console.is_terminal)


def _reporters(progress: Progress, visits: int | None
               ) -> tuple[Callable[..., None], OnProgress]:
    """A run's stage and visits-done callbacks: the progress bar, and the same as timestamped
    lines where there is no terminal to show the bar (CI, a log file). `visits`: the run's
    count, the bar's total through every stage; None where each stage says its own
    (`huimin bench`, a rate at a time)."""
    task = progress.add_task("starting", total=visits)
    log = _LogWhenNotATerminal()

    def stage(description: str, stage_visits: int | None = None) -> None:
        if visits is None:
            progress.update(task, description=description, total=stage_visits, completed=0)
        else:
            progress.update(task, description=description)
        log.stage(description, stage_visits)
        log.total = log.total or visits

    def done(finished: int, dropped: int) -> None:
        progress.advance(task, finished + dropped)
        log.visits_done(finished, dropped)
        if dropped:
            progress.update(task, description=f"{log.description} ({log.dropped:,} dropped)")
    return stage, done


def _fault_plan(text: str | None) -> FaultPlan:
    try:
        return FaultPlan.parse(text)
    except FaultPlanError as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults") from None


@app.command()
def generate(
    output: Annotated[Path, typer.Option("-o", "--output", help="The visit log to write.")],
    persons: Persons = 5_000,
    visits: VisitsOption = 2_000,
    cross_share: CrossShare = 0.2,
    days: Annotated[int, typer.Option(min=1, max=MAX_DAYS,
                                      help="Simulated days the visits span.")] = 60,
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
    plan = _fault_plan(faults)
    if plan.on_platform().any:
        raise typer.BadParameter("kill-worker and join-worker happen to a platform: give them "
                                 "to huimin replay or huimin run", param_hint="--faults")
    _check_output(output, "-o")
    if output.exists() and not output.is_file():
        raise _refused(f"{output} is not a file: a visit log's header is written last, in place")
    _check_output(expected, "--expected", visit_log=output)
    world_spec = _world(seed, persons, policy)
    visit_spec = VisitSpec(visits=visits, cross_share=cross_share, days=days)
    expected = expected or expected_path_for(output)
    try:
        with _progress() as progress:
            requests = _write_visit_log(progress, output, expected, world_spec, visit_spec,
                                        plan, bad_per_kind)
    except KeyboardInterrupt:  # whole_file put nothing in place, but in a pipe or a device
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
    stage, done = _reporters(progress, visit_spec.visits)
    stage("building the world")
    world = build_world(world_spec)
    oracle = Oracle(world.ref)
    stage("generating and settling")
    with whole_file(output) as log, whole_file(expected) as exp:
        # the header's bad_per_kind needs the number of requests: write it last
        width = reserve_header(log, LogHeader(world_spec, visit_spec, str(plan)))
        for visit in plan.apply(generate_visits(world, visit_spec), world_spec.seed):
            write_visit(log, visit)
            requests += len(visit.steps)
            exp.write(orjson.dumps(expected_record(oracle.run_visit(visit)),
                                   option=orjson.OPT_SORT_KEYS) + b"\n")
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
        raise _refused(f"{out} is a file, not a folder")
    with _progress() as progress:
        stage, _ = _reporters(progress, 1)
        stage("building the world")
        built = build_world(_world(seed, persons, policy))
        stage("writing it")
        counts = write_world(built, out)
    console.print(", ".join(f"{n:,} rows in {name}" for name, n in counts.items())
                  + f" and world.json, in {out}/ ({world_tag(built.spec)})", markup=False)


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
    answer_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for an "
                                                  "answer before giving the visit up.")] = 30.0,
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
    _check_cluster_address(bootstrap)
    _serve_metrics(metrics_port, metrics_host)
    if (rate is None) == (speed is None):
        raise typer.BadParameter("give exactly one of --rate and --speed")
    plan = _fault_plan(faults)
    if plan.in_plans().any:
        raise typer.BadParameter("duplicate, reorder, lose-answer and malformed belong in the "
                                 "visit log: huimin generate --faults …", param_hint="--faults")
    if plan.any and bootstrap:
        raise typer.BadParameter("platform faults need our own platform (no --bootstrap)",
                                 param_hint="--faults")
    _check_output(results, "--results", visit_log=visit_log,
                  expected_answers_file=expected_path_for(visit_log))
    try:
        header, visit_iter = read_visit_log(visit_log)
        visits = list(visit_iter)
    except LogFormatError as exc:
        raise _refused(exc) from None
    if not visits:  # nothing would be sent, after the platform took ~20 s to start
        raise _refused(f"{visit_log} holds a header and no visits: nothing to replay")
    client = _security(security_protocol, sasl_mechanism, sasl_username,
                       ssl_cafile).kafka_python()
    world = build_world(header.world)
    bad = generate_bad_messages(world, header.bad_per_kind if bad_per_kind is None
                                else bad_per_kind, visit_period(visits), patients_of(visits))
    arrivals = arrivals_at_rate(len(visits), rate) if rate else \
        arrivals_at_speed(visits, speed or 1.0)
    if arrivals and max(arrivals) > LONG_REPLAY_S:  # a visit mistyped years out, say
        span = max(arrivals)
        pace = f"--rate {rate:g}" if rate else f"--speed {speed or 1.0:g}"
        console.print(f"[yellow]The visits arrive over {span // 3600:,.0f} h "
                      f"{span % 3600 // 60:.0f} min of wall time ({pace}): a higher --speed "
                      "or --rate shortens it.[/]")
    _check_reachable(bootstrap or os.environ.get(BOOTSTRAP_ENV))  # before advice about it
    if plan.kill_worker or plan.join_worker or bootstrap:  # a worker may restart or rebalance
        _warn_if_redelivery_outlives_window(header.visits.days, arrivals[-1] if arrivals else 0,
                                            "a lower --rate or --speed, or a log of fewer days")
    out_dir = results.with_name(results.stem + ".platform")  # our platform's logs, if started
    if bootstrap is None:
        if os.environ.get(BOOTSTRAP_ENV):  # our platform on the user's cluster: a fresh one?
            check_fresh(os.environ[BOOTSTRAP_ENV], client, partitions)
        out_dir.mkdir(parents=True, exist_ok=True)
    written: list[HospitalRunResult] = []
    money: list[Path] = []  # the clearing statements, ledger and 3203 answers written

    def write_results(result: HospitalRunResult) -> None:  # as soon as the visits are over
        write_records(results, result.sessions)
        write_latencies(results.with_name(results.stem + ".latency.jsonl"), result)
        write_dead_letters(results.with_name(results.stem + ".dead_letters.jsonl"), result, bad)
        written.append(result)

    interrupt = GentleInterrupt()
    try:
        with _progress() as progress, interrupt:
            on_stage, on_progress = _reporters(progress, len(visits))
            ex = execute(world, visits, arrivals, bad, out_dir, bootstrap=bootstrap,
                         partitions=partitions, answer_timeout_s=answer_timeout,
                         client_config=client, kill_worker=plan.kill_worker,
                         join_worker=plan.join_worker, on_stage=on_stage,
                         on_progress=on_progress, idempotent=idempotent, interrupt=interrupt,
                         on_visits_over=write_results)
        if ex.result.period_closed:
            money = write_money_views(
                ex, lambda name: results.with_name(f"{results.stem}.{name}.json"),
                ours=bootstrap is None)
        result, stopped, trail = ex.result, ex.result.interrupted, ex.trail
        kills: int | None = ex.worker_kills
        gone, closing = ex.cluster_gone, list(ex.reconciliation.values())
    except KeyboardInterrupt:  # after the visits (the clearing, the reconciliation, the stop)
        if not written:  # before them (the platform's start, the sign-in): nothing to keep
            if interrupt.terminated:
                errors.print("terminated (SIGTERM) before any visit ended: nothing to write",
                             markup=False, highlight=False)
            raise typer.Exit(interrupt.exit_code) from None
        result, stopped, trail, kills, gone, closing = written[0], True, None, None, None, []
    stopper = interrupt.stopper
    if stopped and not result.period_closed:
        _report_interrupted(result, len(visits), bad, results, stopper)
        raise typer.Exit(interrupt.exit_code)
    if stopped:  # only the platform's stop was cut short: the replay itself is whole
        console.print(f"[yellow]Stopped by {stopper} while the platform stopped, after the "
                      "visits and the period's reconciliation.[/]")
    acc = account(result, bad)
    # a platform of someone else's may restart or rebalance its workers: a bad request
    # answered or dead-lettered again, identically, is at-least-once delivery
    bad_check = check_bad_requests(result, bad, redelivery=plan.any or bootstrap is not None)
    console.print(f"Replayed {len(visits):,} visits in {result.wall_s:.1f} s. Sent "
                  f"{acc.sent:,} = answered OK {acc.answered_ok:,} + answered with an error "
                  f"{acc.answered_error:,} + dead-lettered {acc.dead_lettered:,}"
                  + (f" + [red]unanswered {acc.unaccounted:,}[/]" if acc.unaccounted else "")
                  + (f" (and {acc.redelivered:,} answers given again to requests processed "
                     "again after a rebalance or a restart)" if acc.redelivered else ""))
    if plan.any:
        console.print(f"Faults {plan}" + (f": the worker killed and restarted {kills} "
                                          f"{'time' if kills == 1 else 'times'}"
                                          if plan.kill_worker and kills is not None else ""))
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
            for line in trail.lines({m: result.exchanges[m].infno for m in result.timed_out
                                        if m in result.exchanges}):
                console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
    for line in replay_pace(result, arrivals[-1] if arrivals else 0.0):
        console.print(line)
    if bad:
        console.print(f"Bad requests: {bad_check.as_expected:,} of {bad_check.expected:,} "
                      "answered or dead-lettered as expected")
        for line in bad_check.problems[:10]:
            console.print(f"  [red]- {line}[/]")
    console.print(f"Answers in {results}. Check them: huimin verify {visit_log} {results}",
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
    ok = replay_passed(acc, bool(result.timed_out), bad_check.ok,
                       own_platform=bootstrap is None) and not unclosed
    raise typer.Exit(interrupt.exit_code if stopped else 0 if ok else 1)


def _report_interrupted(result: HospitalRunResult, total: int, bad: list[BadMessage],
                        results: Path, stopper: str) -> None:
    """What a replay stopped by Ctrl-C or SIGTERM leaves: every request sent is still
    accounted for, the ones awaited then as in flight; the period's reconciliation is not
    done."""
    acc = account(result, bad[:result.bad_sent])
    arrived = len(result.sessions)
    over = sum(s.done for s in result.sessions)
    console.print(f"[yellow]Stopped by {stopper}: {arrived:,} of {total:,} visits had arrived "
                  f"in {result.wall_s:.1f} s, {over:,} of them over"
                  + ("" if arrived == total else "; the rest were not sent")
                  + ". The period's reconciliation (3201/3202/3203) was not done.[/]")
    console.print(f"Sent {acc.sent:,} = answered OK {acc.answered_ok:,} + answered with an "
                  f"error {acc.answered_error:,} + dead-lettered {acc.dead_lettered:,} + "
                  f"unanswered when stopped {acc.unaccounted:,} (in flight, or never "
                  "delivered)")
    console.print(f"The answers received are in {results}"
                  + (" (visits still under way end 'not settled')" if over < arrived else "")
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
    _check_output(junit, "--junit", **inputs)
    _check_output(json_out, "--json", **inputs)
    if results.resolve() == inputs["expected_answers_file"].resolve():
        if expected is not None and expected.resolve() != expected_path_for(visit_log).resolve():
            # not the log's expected answers given twice: the results, most likely
            raise _refused(f"RESULTS and --expected are the same file, {results} (compared "
                           "with itself, it would always pass): RESULTS is what `huimin "
                           "replay --results` or a run wrote, --expected the oracle's answers "
                           f"(by default {expected_path_for(visit_log)}, which `huimin "
                           "generate` writes)")
        raise _refused(f"{results} is the oracle's expected answers that verify compares the "
                       "results with (compared with themselves, they would always pass): "
                       "give the file `huimin replay --results` wrote, or a run's results.jsonl")
    try:
        header, visits = read_visit_log(visit_log)
        world = build_world(header.world)
        expected = expected or expected_path_for(visit_log)
        if expected.exists():
            want = read_records(expected)
        else:
            if not visit_log.is_file():  # a pipe (`<(…)`) reads empty the second time
                raise LogFormatError(f"{visit_log} is not a regular file: with no expected "
                                     "answers, verify reads the log twice (save it to a file)")
            console.print(f"{expected} not found: settling the log with the oracle",
                          markup=False)
            oracle = Oracle(world.ref)
            _, again = read_visit_log(visit_log)
            want = (expected_record(oracle.run_visit(v)) for v in again)
        verdict = verify_answers(visits, want, results, world.ref, replayed_only)
    except LogFormatError as exc:
        raise _refused(exc) from None
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
        n = verdict.timed_out
        console.print(f"[yellow]{n:,} {'visit' if n == 1 else 'visits'} timed out at the "
                      "hospital (TIMEOUT): a request got no answer within its --answer-timeout, "
                      "and the visit's later requests were not sent; their expected answers are "
                      "counted as not equal. The platform may have answered late: `huimin trail "
                      "MSGID` shows where a request went, and `huimin dead-letters` what was "
                      "refused.[/]")
    if verdict.no_result:
        console.print(f"[yellow]{verdict.no_result:,} of those {verdict.visits:,} visits have no "
                      "result, so none of their answers was compared: a replay stopped before "
                      "the end of its log is judged on what it replayed with "
                      "--replayed-only.[/]")
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
        records = results_by_visit(results)  # none: an error, not an empty statement
        policy = clearing_policy(header.world)  # as the platform that settled the log
        if prepayment_months is not None:  # for every province, whatever the file said
            policy = replace(policy, prepayment_months=prepayment_months, months={})
        statements = clear(events_from_results(checked_visits(visits, records, results),
                                               results), policy)
    except LogFormatError as exc:
        raise _refused(exc) from None
    chosen = [s for s in statements if month is None or s.month == month]
    if month is not None and not chosen:  # a month of local settlements only has one
        raise _refused(f"No settlements in {month}; months with some: "
                       f"{', '.join(s.month for s in statements) or 'none'}")
    if json_out:
        console.print_json(orjson.dumps([s.as_dict() for s in chosen]).decode())
        return
    for s in chosen:
        print_statement(s, console)


if __name__ == "__main__":
    app()
