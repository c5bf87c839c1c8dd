"""`huimin` commands that operate a Kafka cluster: topics, dead-letters, trail, worker, broker."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import kafka.errors
import orjson
import typer
from rich.markup import escape

from huimin.cli_app import app, console, errors, refusal_exit
from huimin.cli_options import (
    FetchMinBytes,
    Persons,
    PolicyFile,
    SaslMechanism,
    SaslUsername,
    SecurityProtocol,
    Seed,
    SslCafile,
    Store,
    bootstrap_servers,
    check_broker_kind,
    check_port_free,
    check_web_address,
    check_world_fits,
    checked_store,
    security_settings,
    world_of_options,
)
from messages.codes import ErrorCode
from messages.dead_letters import DeadLetterEntry, summarise_dead_letters
from messages.identity import holds_certno
from simulators.interrupt import is_the_stop, stop_handled, terminated
from streams.broker import BOOTSTRAP_ENV, BrokerError, EmbeddedBroker
from streams.config import (
    FETCH_MIN_BYTES,
    FETCH_WAIT_MS,
    KAFKA_FETCH_WAIT_MS,
    STORES,
    WorkerConfig,
)
from streams.dead_letters import TopicMissing, read_dead_letters
from streams.kafka_broker import KAFKA_VERSION, ApacheKafkaBroker
from streams.table_files import DataFolderInUse
from streams.topics import (
    create_platform_topics,
    platform_topics,
    settings_advice,
    topic_problems,
    unfit_topics,
)
from streams.trail import follow_trail


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
    security = security_settings(security_protocol, sasl_mechanism, sasl_username, ssl_cafile)
    where = bootstrap_servers(bootstrap)

    def refuse_unfit(problems: list[str]) -> None:
        if problems:
            raise refusal_exit(f"{unfit_topics(where, partitions, problems)} A topic's "
                               "partitions cannot be made fewer, and more would move its keys: "
                               "delete those topics (and the consumer group `huimin`), or use "
                               "the --partitions they have")

    # the topics already there checked first: made beside them, the missing ones would get
    # the count asked for, and "use the --partitions they have" would then fail (a review)
    refuse_unfit([p for p in topic_problems(where, partitions, security.kafka_python(),
                                            wait_s=0) if not p.startswith("missing: ")])
    created = create_platform_topics(where, partitions, replication, security.kafka_python())
    refuse_unfit(topic_problems(where, partitions, security.kafka_python()))
    console.print(f"Topics ready: {', '.join(created)}", soft_wrap=True)
    # a topic there before (written to before `huimin topics`, or made by an older huimin)
    # keeps its settings: said, not changed (an operator may have set them on purpose)
    for line in settings_advice(where, created, security.kafka_python()):
        errors.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)


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
    security = security_settings(security_protocol, sasl_mechanism, sasl_username, ssl_cafile)
    where = bootstrap_servers(bootstrap)
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
        raise refusal_exit(exc) from None
    except BaseException as exc:  # --follow ends on Ctrl-C; what was read is summed up below
        if not is_the_stop(exc) or terminated():  # a SIGTERM was said as it came
            raise
        stop_handled()
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
    if any(holds_certno(m) for m in msgids):  # not echoed: the argument holds one
        raise typer.BadParameter(
            "holds a citizen ID number: a trail follows requests, and one of a person would "
            "say where their records are without their consent or an audit (search the "
            "records through the FHIR views, which check both)", param_hint="MSGIDS")
    security = security_settings(security_protocol, sasl_mechanism, sasl_username, ssl_cafile)
    try:
        found = follow_trail(bootstrap_servers(bootstrap), msgids, group, security.kafka_python(),
                             time_allowed_s=within)
    except kafka.errors.KafkaError as exc:
        raise refusal_exit(f"could not read the cluster's topics: {exc}") from None
    except TopicMissing as exc:
        raise refusal_exit(exc) from None
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
    fetch_min_bytes: FetchMinBytes = FETCH_MIN_BYTES,
    store: Store = "memory",
    policy: PolicyFile = None,
) -> None:
    """Run one platform worker (all roles) in the consumer group `huimin`.

    Start more to scale out. The topics must exist (`huimin topics`)."""
    store_url = STORES[checked_store(store)]
    world = world_of_options(seed, persons, policy)
    check_world_fits(persons, 1, "this worker")
    check_web_address(web_host, web_port)
    security = security_settings(security_protocol, sasl_mechanism, sasl_username, ssl_cafile)
    where = bootstrap_servers(bootstrap)
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
        raise refusal_exit(f"{unfit_topics(where, partitions, problems)} "
                           f"{said[0].upper()}{said[1:]}")
    # topics of an older huimin (changelogs deleted after 7 days: rows lost on a restart)
    for line in settings_advice(where, platform_topics(partitions), security.kafka_python()):
        errors.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)
    from streams.worker import run_worker  # Faust: ~0.2 s, this command's alone

    try:
        run_worker(WorkerConfig(bootstrap=where, partitions=partitions,
                                web_port=web_port, web_host=web_host, data_dir=str(data_dir),
                                world=world, idempotent=idempotent,
                                fetch_max_wait_ms=fetch_wait_ms,
                                fetch_min_bytes=fetch_min_bytes, store=store_url,
                                security=security))
    except DataFolderInUse as exc:
        raise refusal_exit(str(exc)) from None


@app.command()
def broker(
    kind: Annotated[str, typer.Option(
        help="tansu: the embedded Tansu broker (memory storage); kafka: a single-node Apache "
             "Kafka (KRaft) from its Maven Central jars (needs java ≥ 17 and mvn; the jars "
             "are cached in ~/.cache/huimin).")] = "tansu",
    port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="The loopback port to listen on (default: a free one; with "
                               "--data-dir, its last start's).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        file_okay=False, help="kafka only: keep the broker's data in this folder (made if "
                              "missing), so that it can be stopped or killed and started "
                              "again on it, on the same ports, with its topics, messages and "
                              "consumer groups (default: a temporary folder, removed).")] = None,
) -> None:
    """Start a local broker alone, print its address, stop it on Ctrl-C or SIGTERM."""
    check_broker_kind(kind, "--kind")
    if port is not None:  # in use: the broker exited at start, "code 0" (a review)
        check_port_free(port)
    if kind == "kafka":
        try:
            server: EmbeddedBroker | ApacheKafkaBroker = ApacheKafkaBroker(port=port,
                                                                            data_dir=data_dir)
        except BrokerError as exc:
            raise refusal_exit(exc) from None
        name = f"Apache Kafka {KAFKA_VERSION} (KRaft, single node)"
    elif data_dir is not None:
        raise typer.BadParameter("the embedded broker keeps its data in memory: --data-dir is "
                                 "for --kind kafka", param_hint="--data-dir")
    else:
        server, name = EmbeddedBroker(port), "Embedded broker (Tansu, memory storage)"
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.start()
    except BrokerError as exc:
        raise refusal_exit(exc) from None
    try:
        console.print(f"{name} listening on [bold]{server.bootstrap}[/]\nUse it with: "
                      f"export KAFKA_BOOTSTRAP_SERVERS={server.bootstrap}\n"
                      + (f"Its data is kept in {escape(str(data_dir))}: started again with "
                         f"--data-dir {escape(str(data_dir))}, it resumes there.\n"
                         if data_dir else "")
                      + "Ctrl-C stops it.", markup=True, highlight=False)
        try:
            while not stop and server.process is not None and server.process.poll() is None:
                time.sleep(0.5)
        except BaseException as exc:  # Ctrl-C, whatever error it surfaced as
            if not is_the_stop(exc):
                raise
            stop_handled()
        # not asked to stop: the broker ended by itself (a crash, or a kill of its process)
        died = None if stop or server.process is None else server.process.poll()
    finally:
        server.stop()
    if died is not None:  # not a clean stop: whoever uses the broker must hear of it
        refusal_exit(f"the broker exited by itself (code {died}), not on Ctrl-C or SIGTERM: "
                     + (f"its data is kept in {data_dir} (`huimin broker --kind kafka "
                        f"--data-dir {data_dir}` starts it again on it)" if data_dir else
                        "everything it held is gone"))
        raise typer.Exit(1)
    console.print("Broker stopped.")



