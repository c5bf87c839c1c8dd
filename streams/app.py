"""The Faust app of a platform worker: its topics and tables (streams/wiring.py) and each
platform role as an agent around its pure rules: a settlement's (streams/settlement_roles.py),
national clearing's (streams/clearing_roles.py) and the health-record exchange's
(streams/record_roles.py), each event taken as streams/role.py says."""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.web import Request, Response, View

from messages import topics
from messages.platform import WORLD_HEADER
from messages.signing import Signer
from simulators.world import build_world, clearing_policy, world_tag
from streams import metrics, tolerant_records
from streams.clearing_roles import ClearingRoles
from streams.cluster_contact import ASK_EVERY_S, ClusterContact
from streams.config import CLEARING_TABLE, RECON_TABLE, TABLES, WorkerConfig
from streams.faust_offsets import guard_commits
from streams.faust_recovery import guard_recovery
from streams.faust_tuning import (
    set_idempotent_producer,
    set_rocksdb_tuning,
    set_worker_fetch,
)
from streams.fhir_views import register_fhir_views
from streams.http_errors import answer_unparsed_requests_by_status
from streams.owner_fence import guard_changelogs
from streams.partitioner import choose
from streams.record_roles import RecordRoles
from streams.role import RoleRunner
from streams.security import SECRET_ENV, configured_secret
from streams.settlement_roles import SettlementRoles
from streams.spare import keep_a_spare_in_its_group, max_poll_interval_s, spare_tick_s
from streams.wiring import Wiring

log = logging.getLogger("huimin.streams")


def faust_app(cfg: WorkerConfig) -> faust.App:
    """A Faust app with the settings that work on Tansu and Kafka alike (see docs/streams.md)."""
    set_worker_fetch(cfg.fetch_max_wait_ms, cfg.fetch_min_bytes)
    set_idempotent_producer(cfg.idempotent)
    if cfg.store.startswith("rocksdb"):
        set_rocksdb_tuning()
    guard_commits()
    guard_recovery(cfg.bootstrap, cfg.security.kafka_python())
    guard_changelogs()
    tolerant_records.install()
    answer_unparsed_requests_by_status()
    return faust.App(
        cfg.app_id,
        broker=f"kafka://{cfg.bootstrap}",
        store=cfg.store,
        datadir=cfg.data_dir,
        processing_guarantee="at_least_once",
        # RocksDB tables remember the changelog offset they hold; Faust refuses to recover one
        # that is past the topic's end. Tansu reports a partition's end short (just past the
        # first record of its last batch; streams/faust_recovery.py), which crashed restarted and
        # joining workers. Past the end, recovery just has nothing to read.
        recovery_consistency_check=False,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=3.0,
        # 6 s makes a busy worker leave the group for good (docs/streams.md)
        broker_max_poll_interval=max_poll_interval_s(),
        broker_request_timeout=10.0,
        producer_linger=cfg.linger_ms / 1000,
        producer_partitioner=choose,  # Kafka's default, each key hashed once (partitioner.py)
        producer_acks=1,
        topic_partitions=cfg.partitions,
        topic_disable_leader=True,
        topic_allow_declare=True,
        web_enabled=True,  # the national clearing view: GET /clearing/
        # Faust's own views read any table's rows by key (a person's whole record: no
        # operator gate, no audit) and list every worker's address; huimin routes nothing
        # through them (streams/fhir_views.py serves the records, gated and audited)
        web_tables_enabled=False,
        web_router_enabled=False,
        # the host in Faust's canonical URL: an IPv6 address in brackets (RFC 3986)
        web_host=f"[{cfg.web_host}]" if ":" in cfg.web_host else cfg.web_host,
        web_bind=cfg.web_host,
        web_port=cfg.web_port,
        broker_credentials=cfg.security.faust_credentials(),
    )


def create_app(cfg: WorkerConfig) -> faust.App:
    ref = build_world(cfg.world).ref
    app = faust_app(cfg)
    w = Wiring.declare(app, cfg.partitions, cfg.store)
    run = RoleRunner(app, w.hosp_responses, w.dead_letters,
                     signed_in={WORLD_HEADER: world_tag(cfg.world).encode()},
                     trt_answers=w.trt_answers)
    records = RecordRoles(run, w, ref)
    settlement = SettlementRoles(run, w, ref, _signer(cfg), records)
    clearing = ClearingRoles(run, w, clearing_policy(cfg.world))
    serving: dict[str, Any] = {"generation": None, "partitions": []}

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # Faust calls it so
    async def log_assignment(sender: Any, assigned: set[Any], **_: Any) -> None:
        """One line per rebalance: which partitions this worker now serves."""
        clearing.rebalanced()
        metrics.FORWARDED.forget()  # their answers may now leave from another worker
        mine = sorted({tp.partition for tp in assigned if tp.topic == topics.HOSP_REQUESTS})
        serving.update(generation=app.consumer_generation_id, partitions=mine)
        log.info("rebalanced: serving partitions %s of %s", mine, topics.HOSP_REQUESTS)

    @app.page("/assignment/")
    async def assignment_view(web: View, request: Request) -> Response:
        """The partitions of hosp.requests this worker serves, in which generation of the
        consumer group, and whether a rebalance (recovery included) is still under way: how
        huimin knows every worker it started has joined before the visits begin (JSON)."""
        return web.json({**serving, "topic": topics.HOSP_REQUESTS,
                         "rebalancing": bool(app.rebalancing),
                         "national_clearing": clearing.serves_table(),
                         "world": world_tag(cfg.world)})

    @app.task
    async def say_world() -> None:
        """The world this worker settles by, in its log as it starts: a worker started with
        another --seed, --persons or --policy joins the group all the same (only a replay's
        sign-in compares the workers' worlds), and its log and /assignment/ show it."""
        log.info("settling by the world of %s", world_tag(cfg.world))

    @app.timer(interval=5.0)
    async def consumer_lag() -> None:
        metrics.update_consumer_lag(app.consumer)
        # a worker held in a rebalance serves nothing while its lag stands still: said apart
        metrics.REBALANCING.set(1 if app.rebalancing else 0)

    contact = ClusterContact(cfg.bootstrap)

    @app.timer(interval=ASK_EVERY_S)
    async def ask_the_cluster() -> None:
        """Whether the cluster still answers (streams/cluster_contact.py): a worker cut off
        from it otherwise looks idle and healthy."""
        await contact.ask(getattr(getattr(app.producer, "_producer", None), "client", None))

    @app.timer(interval=spare_tick_s(app.conf.broker_max_poll_interval))
    async def stay_a_spare() -> None:
        keep_a_spare_in_its_group(app)

    metrics.export_at_zero([t.get_topic_name() for t in w.inward()],
                           (*TABLES, CLEARING_TABLE, RECON_TABLE))
    settlement.register()
    clearing.register_clearing()
    register_fhir_views(app, w.ehr_records, w.ehr_index, w.ehr_sources, ref)
    setup_prometheus_sensors(app, pattern="/metrics", name_prefix="faust")
    metrics.cache_faust_children(app.monitor)
    clearing.register_reconciliation()
    records.register_index_and_sources()
    answer_with_or_without_trailing_slash(app)
    return app


def answer_with_or_without_trailing_slash(app: faust.App) -> None:
    """Each of the worker's pages is answered with or without a trailing slash, as typed:
    an operator's `curl …/assignment` or `…/fhir/DocumentReference/?patient.identifier=…`
    got a bare 404, which reads as "no such view"."""
    views = app.web.views
    for path, view in list(views.items()):
        other = path.rstrip("/") if path.endswith("/") else path + "/"
        if len(path) > 1 and other not in views:
            app.web.route(other, view)


def _signer(cfg: WorkerConfig) -> Signer | None:
    """What checks each hospital request's signature, unless the worker is told not to."""
    if not cfg.authenticate:
        return None
    secret, development = configured_secret()
    if development:
        log.warning("%s is not set: requests are checked against the development "
                    "signing secret", SECRET_ENV)
    return Signer(secret)
