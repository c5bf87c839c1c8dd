"""The options several `huimin` commands share, and their checks before any work starts."""

from __future__ import annotations

import errno
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client import start_http_server

from huimin.cli_app import errors, refusal_exit
from huimin.policy_file import read_policy_file
from settlement.parameters import ParameterError, parse_parameters, unlikely_values
from simulators.faults import FaultPlan, FaultPlanError
from simulators.hospital_metrics import HOSPITAL_REGISTRY
from simulators.regions import PROVINCES
from simulators.visits import DEFAULT_START, MAX_VISITS, VisitSpec
from simulators.world import (
    MAX_PERSONS,
    SEED_BOUND,
    WORLD_BUILD_S_PER_MILLION,
    WORLD_MIB_PER_MILLION,
    WorldSpec,
    filings_left_out,
)
from streams import topics
from streams.broker import BOOTSTRAP_ENV, BROKER_KINDS, bootstrap_problem, unreachable
from streams.config import STORES
from streams.security import PASSWORD_ENV, ClusterSecurity
from streams.topics import records_held

Seed = Annotated[int, typer.Option(min=-SEED_BOUND, max=SEED_BOUND - 1,
                                   help="Seed of the world and the visits.")]
Persons = Annotated[int, typer.Option(min=1, max=MAX_PERSONS,
                                      help="Insured persons in the world.")]
VisitsOption = Annotated[int, typer.Option(
    "--visits", min=1, max=MAX_VISITS,
    help="Visits to carry out (outpatient, and 15 % inpatient stays).")]
CrossShare = Annotated[float, typer.Option(min=0.0, max=1.0,
                                           help="Share of cross-province visits.")]
DEFAULT_START_DAY = DEFAULT_START.split()[0]
StartDay = Annotated[str, typer.Option(
    "--start", metavar="yyyy-MM-dd",
    help="The first simulated day of the visits (from 08:00). The default's 60 days cross a "
         "new year, so annual deductibles and caps restart mid-run; 2027-01-01 keeps them "
         "in one year. The world's filings are dated (README, Days and years).")]
PolicyFile = Annotated[Path | None, typer.Option(
    "--policy", help="A YAML file of the provinces' policy parameters: deductibles, ratios, "
                     "caps, the retiree bonus, the unfiled cut, the class-B self-pay share, "
                     "the clearing's prepayment, the lab results' reuse window "
                     "(docs/parameters.yaml). Every worker of the platform needs the same.")]


def world_of_options(seed: int, persons: int, policy: Path | None) -> WorldSpec:
    """The world of the options; a policy file that cannot be used is refused (exit 2)."""
    if policy is None:
        return WorldSpec(seed=seed, persons=persons)
    try:
        parameters = read_policy_file(policy)
    except ParameterError as exc:
        raise refusal_exit(exc) from None
    said = [f"{policy} holds no parameters: DOMAIN.md's policy is used"] if parameters is None \
        else [f"{policy}: {note}"  # in range, so taken, but most likely in another unit
              for note in unlikely_values(parse_parameters(parameters, PROVINCES))]
    for warning in said:
        errors.print(f"Warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    return WorldSpec(seed=seed, persons=persons, parameters=parameters)


def visit_spec_of(start: str, **options: Any) -> VisitSpec:
    """The visits of the options, from `start` (yyyy-MM-dd) at 08:00, or refused as bad input;
    said first when part of their days falls outside the world's filings (their cross-province
    visits are then un-filed, which a user choosing the days would not guess)."""
    try:
        day = datetime.strptime(start, "%Y-%m-%d").date().isoformat()  # 2027-1-1 too
    except ValueError:
        raise typer.BadParameter(f"{start} is not a day as yyyy-MM-dd, e.g. 2027-01-01",
                                 param_hint="--start") from None
    try:
        spec = VisitSpec(start=f"{day} {DEFAULT_START.split()[1]}", **options)
    except ValueError as exc:  # the other options' bounds are the command's
        raise typer.BadParameter(str(exc), param_hint="--start") from None
    except OverflowError:  # a start near 9999-12-31: its days run past the calendar
        raise typer.BadParameter(f"the visits' days from {day} are not all in the years "
                                 "1990–2099", param_hint="--start") from None
    if outside := filings_left_out(*(days := spec.settled_days())):
        errors.print(f"Note: the visits' days {' to '.join(days)} are not all "
                     f"within the world's {' or '.join(outside)}: cross-province visits "
                     "outside them are settled as un-filed.",
                     markup=False, highlight=False, soft_wrap=True)
    return spec


def note_changes_outside(world: WorldSpec, visits: VisitSpec) -> None:
    """Say each policy change (a policy file's `changes`) whose day is outside the visits'
    days: one after them changes nothing, one before them holds throughout."""
    first, last = visits.settled_days()
    for day in sorted(parse_parameters(world.parameters, PROVINCES).changes):
        if not first < day <= last:
            errors.print(f"Note: the policy change of {day} is "
                         + (f"after the last day a visit may be settled, {last} (a stay "
                            "begun on the last of the days): it changes nothing here"
                            if day > last else
                            f"on or before the visits' first day, {first}: it holds "
                            "throughout"), markup=False, highlight=False, soft_wrap=True)


#: From this many persons a command says what building the world will cost first.
LARGE_WORLD = 1_000_000


def available_mib() -> int | None:
    """Memory available for new work (Linux: the machine's, or the container's limit less
    what it uses, whichever is less), or None where unknown."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) // 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:  # cgroup v2; "max" where the container has no limit
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            found.append(max(0, int(limit) - int(used)) // 2**20)
    except OSError:
        pass
    return min(found) if found else None


def check_world_fits(persons: int, processes: int, who: str,
                     remedy: str = "give fewer --persons") -> None:
    """Refuse a world whose copies alone (one in each of `processes`, described by `who`)
    would take more memory than is available, rather than let them be killed minutes into
    building it; from LARGE_WORLD persons, say what it costs before it is built."""
    each_mib = -(-persons * WORLD_MIB_PER_MILLION // 1_000_000)  # rounded up
    build_s = persons * WORLD_BUILD_S_PER_MILLION // 1_000_000
    cost = (f"a world of {persons:,} persons takes ~{each_mib:,} MiB and ~{build_s:,} s to "
            f"build in {who if processes == 1 else f'each of {who}'}")
    free = available_mib()
    if free is not None and each_mib * processes > free:
        raise refusal_exit(f"{cost}: ~{each_mib * processes:,} MiB in all, more than the "
                           f"{free:,} MiB available here; {remedy}")
    if persons >= LARGE_WORLD:
        errors.print(f"note: {cost}", markup=False, highlight=False)


FetchMinBytes = Annotated[int, typer.Option(
    min=1, max=2**20,
    help="The least data a worker's fetch waits for (up to the fetch wait) before the broker "
         "answers. 1: answer when anything arrives. On Apache Kafka under load, 8192 with "
         "--fetch-wait-ms 5 took 8-14 % off the worker's CPU a visit, p99 unchanged, but "
         "polls more when quiet (docs/performance.md).")]
StopAfterUnreachable = Annotated[float, typer.Option(
    min=0, help="Stop the visits once the cluster has refused every connection for this many "
                "seconds while no answer came; what was received is written, the rest is "
                "not sent. 0: never (each visit then waits out --answer-timeout, one after "
                "another for a person's visits).")]
Store = Annotated[str, typer.Option(
    "--store", help="Where the workers keep their tables: memory (default; rebuilt from the "
                    "changelogs at start) or rocksdb (on disk in each worker's data folder: "
                    "memory stays flat on long runs).")]


def checked_store(store: str) -> str:
    if store not in STORES:
        raise typer.BadParameter(f"one of {', '.join(STORES)}", param_hint="--store")
    return store


def check_web_address(host: str, port: int) -> None:
    """Refuse, as bad input, a worker's --web-host/--web-port it could not serve on (a port
    another worker holds): Faust would otherwise fail with a traceback after starting."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise cannot_serve(exc, host, port, "--web") from None


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Refuse, as bad input, a broker's --port that another process listens on."""
    try:
        with socket.socket(socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise typer.BadParameter(f"cannot listen on {host}:{port}: {reason}",
                                 param_hint="--port") from None


def cannot_serve(exc: OSError, host: str, port: int, option: str) -> typer.BadParameter:
    """A host and port `option`-host/-port names that cannot be served on, as bad input."""
    reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
    return typer.BadParameter(f"cannot serve on {host}:{port}: {reason}", param_hint=(
        f"{option}-host" if isinstance(exc, socket.gaierror) else f"{option}-port"))


def serve_metrics(port: int | None, host: str = "127.0.0.1") -> None:
    """Serve the hospitals' Prometheus metrics on `port`, if given."""
    if port is None:
        return
    try:
        start_http_server(port, addr=host, registry=HOSPITAL_REGISTRY)
    except OSError as exc:
        raise cannot_serve(exc, host, port, "--metrics") from None


def check_broker_kind(kind: str, option: str = "--broker") -> None:
    """Refuse as bad input a local broker's kind huimin cannot start."""
    if kind not in BROKER_KINDS:
        raise typer.BadParameter(f"one of {', '.join(BROKER_KINDS)}", param_hint=option)


def bootstrap_servers(bootstrap: str | None) -> str:
    value = bootstrap or os.environ.get(BOOTSTRAP_ENV)
    if not value:
        raise typer.BadParameter(f"give --bootstrap or set {BOOTSTRAP_ENV}",
                                 param_hint="--bootstrap")
    check_cluster_address(bootstrap)
    check_reachable(value)
    return value


def check_cluster_address(bootstrap: str | None) -> None:
    """A `--bootstrap` given, else KAFKA_BOOTSTRAP_SERVERS if set, checked (exit 2)."""
    if bootstrap is not None and (problem := bootstrap_problem(bootstrap)):  # "" too
        raise typer.BadParameter(problem, param_hint="--bootstrap")
    external = os.environ.get(BOOTSTRAP_ENV)
    if bootstrap is None and external and (problem := bootstrap_problem(external)):
        raise refusal_exit(f"{BOOTSTRAP_ENV}: {problem}")


def check_reachable(cluster: str | None) -> None:
    """A cluster none of whose addresses can be connected to, refused at once (exit 2), once
    every other option has been checked: the Kafka clients take 30 s to say only that they
    could not bootstrap."""
    if cluster and (problem := unreachable(cluster)):
        raise refusal_exit(f"cannot reach the cluster at {cluster} (is it up?): {problem}")


SecurityProtocol = Annotated[str, typer.Option(
    help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (the SASL password from "
         "HUIMIN_SASL_PASSWORD).")]
SaslMechanism = Annotated[str | None, typer.Option(
    help="PLAIN (the default), SCRAM-SHA-256 or SCRAM-SHA-512; with SASL_PLAINTEXT or "
         "SASL_SSL only.")]
SaslUsername = Annotated[str | None, typer.Option()]
SslCafile = Annotated[Path | None, typer.Option()]


def platform_records(bootstrap: str, client: dict[str, Any]) -> dict[str, int | None]:
    """The hospital requests and answers a platform's cluster holds, refused at once (exit
    2) where its topics are missing: the hospitals would wait 30 s for them, whatever a
    command's own time-out."""
    held = records_held(bootstrap, (topics.HOSP_REQUESTS, topics.HOSP_RESPONSES), client)
    if missing := [name for name, n in held.items() if n is None]:
        raise refusal_exit(f"the cluster at {bootstrap} has no topic {' or '.join(missing)}: "
                           "no huimin platform was set up on it (`huimin topics` makes the "
                           "topics; then start a `huimin worker`)")
    return held


def security_settings(protocol: str, mechanism: str | None, username: str | None,
              cafile: Path | None) -> ClusterSecurity:
    """The cluster's security settings, checked before any connection: without it a missing
    CA file or password shows only as a cluster that cannot be reached, after 30 s."""
    try:
        security = ClusterSecurity(protocol, mechanism.upper() if mechanism else None, username,
                                   str(cafile) if cafile else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--sasl-mechanism" if "SASL mechanism"
                                 in str(exc) else "--security-protocol") from None
    if not security.sasl and (mechanism or username):
        raise typer.BadParameter(f"{protocol} takes no SASL user name or mechanism: give "
                                 "SASL_PLAINTEXT or SASL_SSL to sign in with them",
                                 param_hint="--security-protocol")
    if cafile is not None and not security.tls:  # else dropped, and a password sent in clear
        raise typer.BadParameter(f"{protocol} uses no TLS, so no CA file: give SSL or SASL_SSL "
                                 "to check the cluster's certificate with it",
                                 param_hint="--security-protocol")
    if cafile is not None and not cafile.is_file():
        raise typer.BadParameter(f"{cafile}: " + ("a folder, not a file" if cafile.is_dir()
                                                  else "no such file"),
                                 param_hint="--ssl-cafile")
    if security.sasl and not username:
        raise typer.BadParameter(f"{protocol} needs the user name",
                                 param_hint="--sasl-username")
    if security.sasl and not os.environ.get(PASSWORD_ENV):
        raise refusal_exit(f"{protocol} needs the password in {PASSWORD_ENV}, which is not set")
    return security


def fault_plan(text: str | None) -> FaultPlan:
    try:
        return FaultPlan.parse(text)
    except FaultPlanError as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults") from None



