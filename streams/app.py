"""The Faust app: each platform role is an agent that calls its pure handler in `settlement/`
and sends the outcome on. Values are raw bytes (orjson), never Faust Records.

    hosp.requests --treatment--> nat.requests --national--> ins.requests --insured--+
         |  (local: straight to ins.requests)                                       |
         +--> hosp.responses <--treatment-- trt.answers <--national-- nat.answers <-+
                                            (local: insured -> trt.answers)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors

from messages import topics
from messages.codec import decode, encode, encode_to_keep
from messages.codes import ErrorCode, Infno
from messages.dead_letters import CODE_HEADER, REASON_HEADER, SOURCE_HEADER, TRUNCATED_HEADER
from messages.envelope import error_answer, province_of
from messages.platform import CROSS, WORLD_HEADER, hospital_context, wrap_answer, wrap_request
from messages.signing import Signer
from messages.trace import INS_IN, NAT_BACK, NAT_IN, TRT_BACK, received, stamp
from records.exchange import (
    EhrAnswer,
    IndexRow,
    NationalIndex,
    ProvincialGateway,
    RecordsRow,
    SourceRepositories,
)
from settlement.clearing import clear
from settlement.insured import InsuredPlatform
from settlement.ledger import Ledger, SettlementEvent
from settlement.national import BackToTreatment, NationalPlatform
from settlement.person import PersonRow
from settlement.reconciliation import ClearingIndex, answer_reconciliation, period_of
from settlement.treatment import DeadLetter, Forward, Reply, TreatmentPlatform, TreatmentRow
from simulators.world import build_world, world_tag
from streams import metrics, tolerant_records
from streams.config import CLEARING_TABLE, RECON_TABLE, TABLES, WorkerConfig, table_options
from streams.faust_offsets import guard_commits
from streams.faust_recovery import guard_recovery
from streams.faust_tuning import (
    set_idempotent_producer,
    set_rocksdb_tuning,
    set_worker_fetch_max_wait,
)
from streams.fhir_views import register_fhir_views
from streams.lost_writes import stop_for_lost_write
from streams.owner_fence import guard_changelogs
from streams.partitioner import choose
from streams.security import SECRET_ENV, configured_secret

log = logging.getLogger("huimin.streams")

#: The topics that carry a hospital's request towards the role that answers it.
REQUESTS_INWARD = frozenset({topics.HOSP_REQUESTS, topics.NAT_REQUESTS, topics.INS_REQUESTS,
                             topics.RECON_REQUESTS, topics.EHR_NATIONAL, topics.EHR_SOURCES})

#: How often a worker looks whether a rebalance left its clearing positions' gauge to build
#: anew from the table (`clearing_positions`).
CATCH_UP_EVERY_S = 5.0

#: The largest record a role writes (a table row, an answer, a forwarded request): under the
#: 1,000,000-byte request Faust's producer and Kafka brokers take by default, with room for
#: the key and headers. A larger one would fail in the producer, after the event was taken.
#: HUIMIN_MAX_RECORD_BYTES lowers it for a broker with a smaller `message.max.bytes`.
MAX_RECORD_BYTES = int(os.environ.get("HUIMIN_MAX_RECORD_BYTES") or 900_000)


def oversized(sends: list[Send], writes: list[tuple[Any, bytes, bytes]]) -> str:
    """Why the records an event would produce cannot be written, or "" if they can."""
    for what, key, value in [*(("an answer or message", k, v) for _, k, v, _ in sends),
                             *(("a table row", k, v) for _, k, v in writes)]:
        size = len(key or b"") + len(value)
        if size > MAX_RECORD_BYTES:
            return (f"{what} of {size:,} bytes would be over the {MAX_RECORD_BYTES:,} a "
                    "record may hold (a reconciliation over a shorter period answers in less)")
    return ""

Send = tuple[Any, bytes | None, bytes, dict[str, bytes] | None]  # topic, key, value, headers
Handler = Callable[..., list[Send]]  # (key, value) or (key, value, headers, record_ms)


def _record_ms(timestamp_s: float | None) -> int | None:
    """A record's Kafka timestamp as Faust gives it (seconds, a float) in whole ms."""
    return round(timestamp_s * 1000) if timestamp_s else None


def _headers(raw: Any) -> dict[str, bytes]:
    """Kafka headers as a dict, whichever form the client gives them in."""
    if not raw:
        return {}
    items = raw.items() if isinstance(raw, dict) else raw
    return {k: v if isinstance(v, bytes) else b"" if v is None else str(v).encode()
            for k, v in items}


def stored(table: Any, key: bytes | None) -> bytes | None:
    """A table's value for `key`, read from its store once. `Table.get` asks the store twice
    (`key in`, then the value: Faust's tables have `__missing__`), which on RocksDB is two
    lookups of a ~10 KB row through two more layers of dict wrappers. The first lookup, which
    reads the row from the file, stays (5–7.5 % of a worker's samples in a million visits);
    the second, its block then cached, and the wrappers were ~2 %. Only Faust's per-read
    sensor is skipped."""
    return table.data.get(key)


def faust_app(cfg: WorkerConfig) -> faust.App:
    """A Faust app with the settings that work on Tansu and Kafka alike (see docs/streams.md)."""
    set_worker_fetch_max_wait(cfg.fetch_max_wait_ms)
    set_idempotent_producer(cfg.idempotent)
    if cfg.store.startswith("rocksdb"):
        set_rocksdb_tuning()
    guard_commits()
    guard_recovery(cfg.bootstrap, cfg.security.kafka_python())
    guard_changelogs()
    tolerant_records.install()
    return faust.App(
        cfg.app_id,
        broker=f"kafka://{cfg.bootstrap}",
        store=cfg.store,
        datadir=cfg.data_dir,
        processing_guarantee="at_least_once",
        # RocksDB tables remember the changelog offset they hold; Faust refuses to recover one
        # that is past the topic's end. Tansu reports a partition's end short (at the first
        # record of its last batch; streams/faust_recovery.py), which crashed restarted and
        # joining workers. Past the end, recovery just has nothing to read.
        recovery_consistency_check=False,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=3.0,
        broker_max_poll_interval=300.0,  # 6 s makes a busy worker leave the group for good
        broker_request_timeout=10.0,
        producer_linger=cfg.linger_ms / 1000,
        producer_partitioner=choose,  # Kafka's default, each key hashed once (partitioner.py)
        producer_acks=1,
        topic_partitions=cfg.partitions,
        topic_disable_leader=True,
        topic_allow_declare=True,
        web_enabled=True,  # the national clearing view: GET /clearing/
        web_host=cfg.web_host,
        web_bind=cfg.web_host,
        web_port=cfg.web_port,
        broker_credentials=cfg.security.faust_credentials(),
    )


def create_app(cfg: WorkerConfig) -> faust.App:
    ref = build_world(cfg.world).ref
    signed_in = {WORLD_HEADER: world_tag(cfg.world).encode()}  # the headers of a 9001's answer
    treatment = TreatmentPlatform(ref)
    national = NationalPlatform(ref)
    insured = InsuredPlatform(ref)
    gateway, index, sources = ProvincialGateway(), NationalIndex(), SourceRepositories(ref)
    signer = None
    if cfg.authenticate:
        secret, development = configured_secret()
        signer = Signer(secret)
        if development:
            log.warning("%s is not set: requests are checked against the development "
                        "signing secret", SECRET_ENV)
    app = faust_app(cfg)

    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw", "partitions": cfg.partitions}
    hosp_requests = app.topic(topics.HOSP_REQUESTS, **raw)
    nat_requests = app.topic(topics.NAT_REQUESTS, **raw)
    ins_requests = app.topic(topics.INS_REQUESTS, **raw)
    nat_answers = app.topic(topics.NAT_ANSWERS, **raw)
    trt_answers = app.topic(topics.TRT_ANSWERS, **raw)
    hosp_responses = app.topic(topics.HOSP_RESPONSES, **raw)
    dead_letters = app.topic(topics.DEAD_LETTERS, **raw)
    money_events = app.topic(topics.MONEY_EVENTS, **{**raw, "partitions": 1})
    recon_requests = app.topic(topics.RECON_REQUESTS, **{**raw, "partitions": 1})
    ehr_national = app.topic(topics.EHR_NATIONAL, **raw)
    ehr_sources = app.topic(topics.EHR_SOURCES, **raw)
    ehr_audit = app.topic(topics.EHR_AUDIT, **raw)
    table = {"key_type": bytes, "value_type": bytes, "default": None,
             **table_options(cfg.store)}
    trt_rows = app.Table("trt_persons", partitions=cfg.partitions, **table)
    ins_rows = app.Table("ins_persons", partitions=cfg.partitions, **table)
    ehr_index = app.Table("ehr_index", partitions=cfg.partitions, **table)
    ehr_records = app.Table("ehr_records", partitions=cfg.partitions, **table)
    clearing_events = app.Table(CLEARING_TABLE, partitions=1, **table)
    recon_answers = app.Table(RECON_TABLE, partitions=1, **table)

    def dead_letter(key: bytes | None, value: bytes | None, code: str, reason: str,
                    source: str) -> Send:
        """The original bytes, untouched, with why in the headers (never personal data). A
        message too large to write again whole (a request of ~1 MB the broker took) keeps
        its first bytes, and says how large it was."""
        log.warning("dead-lettered a message from %s: %s", source, code)
        later(metrics.DEAD_LETTERS.labels(code, source).inc)  # our codes and topic names only
        value = value or b""
        headers = {CODE_HEADER: code.encode(), REASON_HEADER: reason.encode()[:2_000],
                   SOURCE_HEADER: source.encode()}
        if len(key or b"") + len(value) > MAX_RECORD_BYTES:  # the key counts too
            headers[TRUNCATED_HEADER] = str(len(value)).encode()
            key = key[:MAX_RECORD_BYTES // 2] if key else key
            value = value[:MAX_RECORD_BYTES - len(key or b"")]
        return dead_letters, key, value, headers

    def send(topic: Any, key: bytes | None, value: bytes) -> Send:
        return topic, key, value, None

    writes: list[tuple[Any, bytes, bytes]] = []  # the table writes of the event at hand
    effects: list[Callable[[], object]] = []  # and its metric updates

    def put(table: Any, key: bytes | None, value: bytes) -> None:
        """A table write, made only once the event's handler has returned and what it would
        write and send fits in a record: a handler that fails changes no row. A row is a
        person's or an event's: a message without a key has none, and is dead-lettered."""
        if not key:
            raise ValueError("a message without a key")
        writes.append((table, key, value))

    def later(effect: Callable[[], object]) -> None:
        """A metric update, made with the event's writes: a refused event counts only what
        its refusal sends (one answer, one dead letter), not what it had built."""
        effects.append(effect)

    def failed(key: bytes | None, value: bytes | None, source: str, code: ErrorCode,
               reason: str) -> list[Send]:
        """The message dead-lettered, and, where it carries a request on its way in, the
        hospital answered with the same error rather than left waiting: that role's event
        changed nothing, and no role after it has seen the request. An answer on its way
        back (nat.answers, trt.answers) is only dead-lettered: what it answers may have been
        done (a settlement made), and the hospital's time-out and 2601 settle that."""
        sends = [dead_letter(key, value, code.value, reason, source)]
        if source not in REQUESTS_INWARD:
            return sends
        ctx = hospital_context(value, source == topics.HOSP_REQUESTS)
        if ctx is not None:
            sends.append(to_hospital(error_answer(ctx["msgid"], code, reason), ctx, [],
                                     forwarded=source != topics.HOSP_REQUESTS))
        return sends

    def to_hospital(ans: dict[str, Any], ctx: dict[str, Any], trace: list,
                    forwarded: bool = True) -> Send:
        """The answer to a hospital; `forwarded`: it answers a request that went on from the
        provincial platform (so it is no longer in flight)."""
        later(partial(metrics.observe_answer, ans, ctx, trace))
        if forwarded:
            later(metrics.IN_FLIGHT.dec)
        return (hosp_responses, ctx["fixmedins_code"].encode(),
                encode(wrap_answer(ans, ctx, trace)),
                signed_in if ctx.get("infno") == Infno.SIGN_IN else None)

    def role(source: Any, name: str, handler: Handler, with_headers: bool = False) -> None:
        """An agent that runs `handler` on each event (with its headers and its Kafka timestamp in
        ms, if asked), then makes the table writes (`put`) and metric updates (`later`) it asked
        for and sends what it returned. An exception, or a record too large to write, makes none
        of them: the message is dead-lettered and answered instead (`failed`), and the platform
        goes on. Sends go to the app's producer directly, not through Faust's channel layer (a
        future message and sensor calls per send): the offsets are still committed only after
        the producer is flushed, so at-least-once holds. The handler's CPU time is counted by
        role (`huimin_role_cpu_seconds_total`, ~2 µs an event): what the worker spends on the
        platform's own work, against what Faust and the client cost around it."""
        cpu = metrics.child(metrics.ROLE_CPU, name)
        events = metrics.child(metrics.ROLE_EVENTS, name)

        async def agent(stream: Any) -> None:
            producer = app.producer
            source_topic = source.get_topic_name()
            async for event in stream.events():
                started = time.thread_time()
                writes.clear()
                effects.clear()
                try:
                    sends = handler(event.key, event.value, _headers(event.headers),
                                    _record_ms(event.message.timestamp)) \
                        if with_headers else handler(event.key, event.value)
                    problem = oversized(sends, writes)
                    code = ErrorCode.TOO_LARGE
                except Exception as exc:
                    problem = f"internal error in {name}: {type(exc).__name__}"
                    code = ErrorCode.INTERNAL_ERROR
                if problem:
                    log.error("%s: %s", name, problem)
                    writes.clear()
                    effects.clear()
                    try:
                        sends = failed(event.key, event.value, source_topic, code, problem)
                    except Exception as exc:  # not even the answer could be built: kept
                        log.error("%s: no answer to its failure (%s)", name,
                                  type(exc).__name__)
                        effects.clear()
                        sends = [dead_letter(event.key, event.value, code.value, problem,
                                             source_topic)]
                for table, key, value in writes:
                    table[key] = value
                for effect in effects:
                    try:
                        effect()
                    except Exception as exc:  # a metric never fails an event: it is done
                        log.error("%s: an update after the event failed (%s)", name,
                                  type(exc).__name__)
                cpu.inc(time.thread_time() - started)
                events.inc()
                for topic, key, value, extra in sends:
                    try:
                        await producer.send(topic.get_topic_name(), key, value, None, None,
                                            extra)
                    except Exception as exc:  # the event is taken: stop before it is acked
                        stop_for_lost_write(topic.get_topic_name(), exc)
        agent.__name__ = name
        app.agent(source, name=name)(agent)

    def on_hospital_request(key: bytes | None, value: bytes | None,
                            headers: dict[str, bytes], record_ms: int | None) -> list[Send]:
        trace = received(record_ms)
        refusal = treatment.authenticate(signer, headers, key, value) if signer else None
        if refusal is not None:
            later(metrics.REFUSED.labels(refusal.answer["err_code"]).inc)
            log.warning("refused a request from %s: %s", refusal.ctx["fixmedins_code"],
                        refusal.answer["err_code"])
            return [to_hospital(refusal.answer, refusal.ctx, trace, forwarded=False)]
        cur = stored(trt_rows, key) if key else None
        before = TreatmentRow.from_dict(decode(cur)) if cur else None
        outcome, row = treatment.handle_request(
            key.decode(errors="replace") if key else None, value, before)
        if not isinstance(outcome, DeadLetter):
            infno = metrics.infno_label(outcome.ctx.get("infno"))
            later(metrics.child(metrics.REQUESTS, infno).inc)
        if isinstance(outcome, Forward):
            later(metrics.IN_FLIGHT.inc)
        if row is not None:
            put(trt_rows, key, encode_to_keep(row.to_dict()))
        if isinstance(outcome, Reply):
            return [to_hospital(outcome.answer, outcome.ctx, trace, forwarded=False)]
        if isinstance(outcome, Forward) and outcome.to == "ehr":
            return on_ehr_request(key, outcome.req, outcome.ctx, trace)
        if isinstance(outcome, Forward):
            target = {"national": nat_requests, "insured": ins_requests,
                      "reconciliation": recon_requests}[outcome.to]
            return [send(target, key, encode(wrap_request(outcome.req, outcome.ctx, trace)))]
        assert isinstance(outcome, DeadLetter)
        return [dead_letter(key, value, outcome.error_code.value, outcome.reason,
                            topics.HOSP_REQUESTS)]

    def records_row(key: bytes) -> RecordsRow:
        cur = stored(ehr_records, key)
        return RecordsRow.from_dict(decode(cur) if cur else None)

    def on_ehr_request(key: bytes, req: dict[str, Any], ctx: dict[str, Any],
                       trace: list) -> list[Send]:
        """The provincial platform's part of the record exchange (records/exchange.py)."""
        steps, row = gateway.handle(key.decode(), req, ctx, records_row(key))
        if row is not None:
            put(ehr_records, key, encode_to_keep(row.to_dict()))
            later(metrics.EHR_PUBLISHED.labels(province_of(req["mdtrtarea_admvs"])).inc)
        return [to_hospital(step.answer, ctx, trace) if isinstance(step, EhrAnswer) else
                send(ehr_national, key, encode({**step.msg, "ctx": ctx, "trace": trace}))
                for step in steps]

    def on_ehr_national(key: bytes | None, value: bytes | None) -> list[Send]:
        msg = decode(value)
        trace = stamp(msg["trace"], NAT_IN)
        cur = stored(ehr_index, key)
        result, row = index.handle(msg, IndexRow.from_dict(decode(cur) if cur else None))
        if row is not None:
            put(ehr_index, key, encode_to_keep(row.to_dict()))
        if result is None:
            return []
        if isinstance(result, EhrAnswer):
            return [to_hospital(result.answer, msg["ctx"], trace)]
        return [send(ehr_sources, key, encode({**result, "trace": trace}))]

    def on_ehr_sources(key: bytes | None, value: bytes | None) -> list[Send]:
        msg = decode(value)
        if msg.get("op") == "audit":  # a read through the FHIR views (streams/fhir_views.py)
            row = records_row(key)
            audited = row.audited
            row.record_access(msg["event"])
            put(ehr_records, key, encode_to_keep(row.to_dict()))
            later(partial(metrics.observe_audit, row.audit_since(audited)))
            # a redelivery finds it recorded: written again, as its first write may be lost
            return audit_trail(key, row.audit_since(audited) or [msg["event"]])
        trace = stamp(msg["trace"], INS_IN)
        row = records_row(key)
        audited, repeated = row.audited, msg["req"]["msgid"] in row.answers
        answer, row = sources.handle(key.decode() if key else "", msg, row)
        if repeated:  # a duplicate or a redelivery changes nothing and counts once; its
            # AuditEvents go to the trail again, as the first writes may be lost
            return [to_hospital(answer, msg["ctx"], trace),
                    *audit_trail(key, sources.audit_of(row, msg["req"]["msgid"]))]
        put(ehr_records, key, encode_to_keep(row.to_dict()))
        later(partial(metrics.observe_ehr, msg["req"]["infno"], answer,
                      row.audit_since(audited)))
        return [to_hospital(answer, msg["ctx"], trace),
                *audit_trail(key, row.audit_since(audited))]

    def audit_trail(key: bytes | None, events: list[dict[str, Any]]) -> list[Send]:
        """Each AuditEvent recorded, to the trail of record. A redelivered or duplicated
        access writes its events again, with the same ids: readers keep one of each."""
        return [send(ehr_audit, key, encode(event)) for event in events]

    def on_national_request(key: bytes | None, value: bytes | None) -> list[Send]:
        msg = decode(value)
        trace = stamp(msg["trace"], NAT_IN)
        routed = national.route(key.decode() if key else "", msg["req"], msg["ctx"])
        if isinstance(routed, BackToTreatment):
            return [send(trt_answers, key, encode(wrap_answer(routed.answer, routed.ctx, trace)))]
        return [send(ins_requests, key, encode(wrap_request(routed.req, routed.ctx, trace)))]

    def on_insured_request(key: bytes | None, value: bytes | None) -> list[Send]:
        """The insured side, on the person's row, for local requests (from the treatment side)
        and cross-province ones (from the national platform) alike. Local requests come
        through ins.requests too, though the person's rows share a partition: the insured
        side must decide a redelivery from its own row and topic. Answered on the hospital's
        partition instead (12-01), a worker killed after the answer went out and before the
        insured row's changelog write left a settlement the hospital was told of and the
        insured side never kept, once the treatment row had the answer (docs/streams.md)."""
        msg = decode(value)
        trace, ctx, req = stamp(msg["trace"], INS_IN), msg["ctx"], msg["req"]
        cur = stored(ins_rows, key)
        row_in = PersonRow.from_dict(decode(cur)) if cur else None
        answer, row = insured.handle(key.decode() if key else "", row_in, req, ctx)
        if row is not None:
            put(ins_rows, key, encode_to_keep(row.to_dict()))
        target = nat_answers if ctx["route"] == CROSS else trt_answers
        sends = [send(target, key, encode(wrap_answer(answer, ctx, trace)))]
        # also for a replayed request (row unchanged): clearing dedupes by setl_id and event
        event = insured.money_event(req, answer, row or row_in, ctx["fixmedins_code"])
        if event is not None:
            sends.append(send(money_events, event.setl_id.encode(), encode(asdict(event))))
            if row is not None:  # a first, not a replay
                later(partial(metrics.observe_money, event))
        return sends

    clearing_index = ClearingIndex()  # event ids by hospital and day
    # the table was (or may have been) recovered since the index and the net positions'
    # gauge were built from it: [index, gauge]
    stale = [True, True]

    def on_money_event(key: bytes | None, value: bytes | None) -> list[Send]:
        event = SettlementEvent(**decode(value))
        event_id = event.event_id.encode()  # kept once (settlement/ledger.py)
        if stored(clearing_events, event_id) is None:
            put(clearing_events, event_id, encode_to_keep(asdict(event)))
            later(partial(clearing_index.add, event_id, event))
            later(partial(metrics.observe_clearing, event))
        return []

    def catch_up() -> None:
        """The index and the net positions' gauge built anew from the clearing table, as it
        was recovered from its changelog. (Not by comparing sizes: a RocksDB table counts its
        keys by reading them all.)"""
        clearing_index.clear()
        events = []
        for k, v in clearing_events.items():
            events.append(event := SettlementEvent(**decode(v)))
            clearing_index.add(k, event)
        metrics.set_clearing_positions(events)
        stale[:] = [False, False]

    def events_for(req: dict[str, Any]) -> list[SettlementEvent]:
        """The money events a reconciliation request is answered from, read from the table.
        The index follows the table as events arrive; after a rebalance (the start included)
        it is built anew once (`catch_up`)."""
        if stale[0]:
            catch_up()
        return [SettlementEvent(**decode(v)) for i in clearing_index.ids(*period_of(req))
                if (v := stored(clearing_events, i)) is not None]

    @app.timer(interval=CATCH_UP_EVERY_S)
    async def clearing_positions() -> None:
        """After a rebalance (a restart included), the worker serving the clearing table sets
        `huimin_clearing_net_position_fen` from the whole table, not only from the events it
        has taken since; any other worker exports none (its copy is a standby's)."""
        if not stale[1] or app.rebalancing:
            return
        if any(tp.topic == topics.MONEY_EVENTS for tp in app.assignor.assigned_actives()):
            catch_up()
        else:
            metrics.set_clearing_positions(())
            stale[1] = False

    def on_recon_request(key: bytes | None, value: bytes | None) -> list[Send]:
        msg = decode(value)
        msgid = msg["req"]["msgid"].encode()
        kept = stored(recon_answers, msgid)
        if kept is not None:  # a duplicate: the original answer
            answer = decode(kept)
        else:
            answer = answer_reconciliation(msg["req"], events_for(msg["req"]))
            put(recon_answers, msgid, encode_to_keep(answer))
        return [to_hospital(answer, msg["ctx"], stamp(msg["trace"], NAT_IN))]

    @app.page("/clearing/")
    async def clearing_view(web: Any, request: Any) -> Any:
        """The national clearing statements of every month so far (JSON)."""
        events = [SettlementEvent(**decode(v)) for v in clearing_events.values()]
        return web.json({"events": len(events),
                         "statements": [s.as_dict() for s in clear(events)]})

    @app.page("/ledger/")
    async def ledger_view(web: Any, request: Any) -> Any:
        """The national ledger's trial balance, posted from the same events (JSON)."""
        ledger = Ledger()
        ledger.post(SettlementEvent(**decode(v)) for v in clearing_events.values())
        return web.json(ledger.as_dict())

    def on_national_answer(key: bytes | None, value: bytes | None) -> list[Send]:
        msg = decode(value)
        stamp(msg["trace"], NAT_BACK)
        return [send(trt_answers, key, encode(msg))]

    def on_treatment_answer(key: bytes | None, value: bytes | None) -> list[Send]:
        msg = decode(value)
        trace = stamp(msg["trace"], TRT_BACK)
        cur = stored(trt_rows, key)
        row = treatment.handle_answer(msg["ans"], msg["ctx"],
                                      TreatmentRow.from_dict(decode(cur)) if cur else None)
        if row is not None:
            kept = encode_to_keep(row.to_dict())
            if len(kept) <= MAX_RECORD_BYTES:
                put(trt_rows, key, kept)
            else:  # what it answers was done: the hospital hears of it all the same
                log.warning("treatment_answers: a person's row would be %d bytes, over the "
                            "%d a record may hold: left as it was, the answer sent on",
                            len(kept), MAX_RECORD_BYTES)
        return [to_hospital(msg["ans"], msg["ctx"], trace)]

    serving: dict[str, Any] = {"generation": None, "partitions": []}

    @app.on_partitions_assigned.connect
    async def log_assignment(sender: Any, assigned: set[Any], **_: Any) -> None:
        """One line per rebalance: which partitions this worker now serves."""
        stale[:] = [True, True]
        mine = sorted({tp.partition for tp in assigned if tp.topic == topics.HOSP_REQUESTS})
        serving.update(generation=app.consumer_generation_id, partitions=mine)
        log.info("rebalanced: serving partitions %s of %s", mine, topics.HOSP_REQUESTS)

    @app.page("/assignment/")
    async def assignment_view(web: Any, request: Any) -> Any:
        """The partitions of hosp.requests this worker serves, in which generation of the
        consumer group, and whether a rebalance (recovery included) is still under way: how
        huimin knows every worker it started has joined before the visits begin (JSON)."""
        return web.json({**serving, "topic": topics.HOSP_REQUESTS,
                         "rebalancing": bool(app.rebalancing)})

    metrics.export_faults_at_zero(
        [t.get_topic_name() for t in (hosp_requests, nat_requests, ins_requests, nat_answers,
                                      trt_answers, money_events, recon_requests, ehr_national,
                                      ehr_sources)], (*TABLES, CLEARING_TABLE, RECON_TABLE))
    role(hosp_requests, "treatment_requests", on_hospital_request, with_headers=True)
    role(nat_requests, "national_requests", on_national_request)
    role(ins_requests, "insured_requests", on_insured_request)
    role(nat_answers, "national_answers", on_national_answer)
    role(trt_answers, "treatment_answers", on_treatment_answer)
    role(money_events, "national_clearing", on_money_event)
    register_fhir_views(app, ehr_records, ehr_index, ehr_sources, ref)
    setup_prometheus_sensors(app, pattern="/metrics", name_prefix="faust")
    metrics.cache_faust_children(app.monitor)

    @app.timer(interval=5.0)
    async def consumer_lag() -> None:
        metrics.update_consumer_lag(app.consumer)

    role(recon_requests, "reconciliation", on_recon_request)
    role(ehr_national, "ehr_index", on_ehr_national)
    role(ehr_sources, "ehr_sources", on_ehr_sources)
    return app
