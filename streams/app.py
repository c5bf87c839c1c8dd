"""The Faust app: each platform role is an agent that calls its pure handler in `settlement/`
and sends the outcome on. Values are raw bytes (orjson), never Faust Records.

    hosp.requests --treatment--> nat.requests --national--> ins.requests --insured--+
         |  (local: straight to ins.requests)                                       |
         +--> hosp.responses <--treatment-- trt.answers <--national-- nat.answers <-+
                                            (local: insured -> trt.answers)
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from messages import topics
from messages.codec import decode, encode
from messages.platform import CROSS, wrap_answer, wrap_request
from messages.trace import INS_IN, NAT_BACK, NAT_IN, TRT_BACK, TRT_IN, stamp
from settlement.insured import InsuredPlatform
from settlement.national import BackToTreatment, NationalPlatform
from settlement.person import PersonRow
from settlement.treatment import DeadLetter, Forward, Reply, TreatmentPlatform, TreatmentRow
from simulators.world import build_world
from streams.config import WorkerConfig
from streams.faust_tuning import set_worker_fetch_max_wait

log = logging.getLogger("huimin.streams")


def create_app(cfg: WorkerConfig) -> faust.App:
    set_worker_fetch_max_wait(cfg.fetch_max_wait_ms)
    ref = build_world(cfg.world).ref
    treatment = TreatmentPlatform(ref)
    national = NationalPlatform(ref)
    insured = InsuredPlatform(ref)

    app = faust.App(
        cfg.app_id,
        broker=f"kafka://{cfg.bootstrap}",
        store=cfg.store,
        datadir=cfg.data_dir,
        processing_guarantee="at_least_once",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=3.0,
        broker_max_poll_interval=6.0,
        broker_request_timeout=10.0,
        producer_linger=0.002,
        producer_acks=1,
        topic_partitions=cfg.partitions,
        topic_disable_leader=True,
        topic_allow_declare=True,
        web_enabled=False,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        web_port=cfg.web_port,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw", "partitions": cfg.partitions}
    hosp_requests = app.topic(topics.HOSP_REQUESTS, **raw)
    nat_requests = app.topic(topics.NAT_REQUESTS, **raw)
    ins_requests = app.topic(topics.INS_REQUESTS, **raw)
    nat_answers = app.topic(topics.NAT_ANSWERS, **raw)
    trt_answers = app.topic(topics.TRT_ANSWERS, **raw)
    hosp_responses = app.topic(topics.HOSP_RESPONSES, **raw)
    dead_letters = app.topic(topics.DEAD_LETTERS, **raw)
    trt_rows = app.Table("trt_persons", key_type=bytes, value_type=bytes, default=None,
                         partitions=cfg.partitions)
    ins_rows = app.Table("ins_persons", key_type=bytes, value_type=bytes, default=None,
                         partitions=cfg.partitions)

    async def dead_letter(key: bytes | None, value: bytes | None, code: str, reason: str,
                          source: str) -> None:
        log.warning("dead-lettered a message from %s: %s", source, code)
        await dead_letters.send(key=key, value=encode({
            "error_code": code, "reason": reason, "source_topic": source,
            "value": (value or b"").decode("utf-8", "replace")}))

    async def to_hospital(ans: dict[str, Any], ctx: dict[str, Any], trace: list) -> None:
        await hosp_responses.send(key=ctx["fixmedins_code"].encode(),
                                  value=encode(wrap_answer(ans, ctx, trace)))

    @app.agent(hosp_requests, name="treatment_requests")
    async def treatment_requests(stream: Any) -> None:
        async for event in stream.events():
            key, value = event.key, event.value
            trace = stamp([], TRT_IN)
            try:
                certno = key.decode() if key else None
                cur = trt_rows.get(key) if key else None
                row_in = TreatmentRow.from_dict(decode(cur)) if cur else None
                outcome, row = treatment.handle_request(certno, value, row_in)
                if row is not None:
                    trt_rows[key] = encode(row.to_dict())
            except Exception as exc:  # never let one message stop the platform
                log.exception("treatment side failed on a message: %s", type(exc).__name__)
                await dead_letter(key, value, "E9001", f"internal error: {type(exc).__name__}",
                                  topics.HOSP_REQUESTS)
                continue
            if isinstance(outcome, Reply):
                await to_hospital(outcome.answer, outcome.ctx, trace)
            elif isinstance(outcome, Forward):
                target = nat_requests if outcome.to == "national" else ins_requests
                await target.send(key=key, value=encode(
                    wrap_request(outcome.req, outcome.ctx, trace)))
            elif isinstance(outcome, DeadLetter):
                await dead_letter(key, value, outcome.error_code.value, outcome.reason,
                                  topics.HOSP_REQUESTS)

    @app.agent(nat_requests, name="national_requests")
    async def national_requests(stream: Any) -> None:
        async for event in stream.events():
            msg = decode(event.value)
            stamp(msg["trace"], NAT_IN)
            routed = national.route(event.key.decode(), msg["req"], msg["ctx"])
            if isinstance(routed, BackToTreatment):
                await trt_answers.send(key=event.key, value=encode(
                    wrap_answer(routed.answer, routed.ctx, msg["trace"])))
            else:
                await ins_requests.send(key=event.key, value=encode(
                    wrap_request(routed.req, routed.ctx, msg["trace"])))

    @app.agent(ins_requests, name="insured_requests")
    async def insured_requests(stream: Any) -> None:
        async for event in stream.events():
            key = event.key
            msg = decode(event.value)
            stamp(msg["trace"], INS_IN)
            ctx = msg["ctx"]
            try:
                cur = ins_rows.get(key)
                row_in = PersonRow.from_dict(decode(cur)) if cur else None
                answer, row = insured.handle(key.decode(), row_in, msg["req"], ctx)
                if row is not None:
                    ins_rows[key] = encode(row.to_dict())
            except Exception as exc:
                log.exception("insured side failed on a message: %s", type(exc).__name__)
                await dead_letter(key, event.value, "E9001",
                                  f"internal error: {type(exc).__name__}", topics.INS_REQUESTS)
                continue
            target = nat_answers if ctx["route"] == CROSS else trt_answers
            await target.send(key=key, value=encode(wrap_answer(answer, ctx, msg["trace"])))

    @app.agent(nat_answers, name="national_answers")
    async def national_answers(stream: Any) -> None:
        async for event in stream.events():
            msg = decode(event.value)
            stamp(msg["trace"], NAT_BACK)
            await trt_answers.send(key=event.key, value=encode(msg))

    @app.agent(trt_answers, name="treatment_answers")
    async def treatment_answers(stream: Any) -> None:
        async for event in stream.events():
            key = event.key
            msg = decode(event.value)
            stamp(msg["trace"], TRT_BACK)
            cur = trt_rows.get(key)
            row_in = TreatmentRow.from_dict(decode(cur)) if cur else None
            row = treatment.handle_answer(msg["ans"], msg["ctx"], row_in)
            if row is not None:
                trt_rows[key] = encode(row.to_dict())
            await to_hospital(msg["ans"], msg["ctx"], msg["trace"])

    return app
