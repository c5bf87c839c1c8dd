"""Hospitals that talk to the platform only over Kafka (kafka-python), as HIS clients do.

Visits arrive open-loop at a fixed rate (independent of answers, so a slow platform shows up
as latency, not as a politely reduced load). Within a visit each step waits for the answer to
the previous one. A person is in one place at a time: a visit whose patient is still busy
waits for the earlier visit to finish, which keeps each person's order equal to the log's.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from messages import topics
from messages.codec import MalformedMessage, decode, encode
from messages.codes import Infno
from messages.trace import HOSP_RECV, HOSP_SEND
from messages.visitlog import Visit, VisitSession, make_msgid
from settlement.reference import Hospital


def producer_for(bootstrap: str, **extra: Any) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2,
                         enable_idempotence=False, **extra)


def response_consumer(bootstrap: str, topic: str = topics.HOSP_RESPONSES,
                      **extra: Any) -> KafkaConsumer:
    """All partitions of `topic`, manually assigned, from the end: no group to join."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=10, **extra)
    deadline = time.monotonic() + 30
    while not (parts := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no partitions")
        time.sleep(0.1)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    for tp in tps:  # resolve the end offsets now, before anything is sent
        consumer.position(tp)
    return consumer


@dataclass
class Exchange:
    """One request and its answer, as the hospital saw them."""

    infno: str
    msgid: str
    route: str = ""
    sent_ns: int = 0
    latency_ms: float | None = None
    answer: dict[str, Any] | None = None
    trace: list = field(default_factory=list)


@dataclass
class HospitalRunResult:
    sessions: list[VisitSession]
    exchanges: dict[str, Exchange]  # msgid -> exchange
    unanswered: list[str]  # msgids
    duplicate_answers: int
    conflicting_duplicates: int
    unexpected_answers: int
    wall_s: float


class HospitalFleet:
    """All simulated hospitals behind one producer and one response consumer."""

    def __init__(self, bootstrap: str, answer_timeout_s: float = 30.0) -> None:
        self.bootstrap = bootstrap
        self.answer_timeout_s = answer_timeout_s
        self.consumer = response_consumer(bootstrap)
        self.producer = producer_for(bootstrap)

    def close(self) -> None:
        self.producer.close(timeout=5)
        self.consumer.close()

    def _send(self, key: str, request: dict[str, Any]) -> int:
        sent = time.time_ns()
        self.producer.send(topics.HOSP_REQUESTS, key=key.encode(), value=encode(request))
        return sent

    def _poll(self, timeout_ms: int) -> list[dict[str, Any]]:
        out = []
        for records in self.consumer.poll(timeout_ms=timeout_ms, max_records=2000).values():
            for rec in records:
                try:
                    out.append(decode(rec.value))
                except MalformedMessage:
                    continue
        return out

    def sign_in(self, hospitals: Iterable[Hospital], inf_time: str,
                timeout_s: float = 120.0) -> float:
        """9001 for every hospital; returns seconds until all were answered (the platform is
        up). Raises TimeoutError if the platform does not answer."""
        start = time.monotonic()
        waiting: dict[str, Hospital] = {}
        for h in hospitals:
            msgid = make_msgid(h.fixmedins_code, inf_time, 9_999)
            waiting[msgid] = h
            self._send(h.fixmedins_code, {
                "infno": Infno.SIGN_IN, "msgid": msgid, "mdtrtarea_admvs": h.admdvs,
                "insuplc_admdvs": "", "fixmedins_code": h.fixmedins_code, "inf_time": inf_time,
                "input": {"opter_no": "sim", "mac": "", "ip": ""}})
        self.producer.flush()
        while waiting:
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"the platform answered no sign-in within {timeout_s:.0f} s")
            for msg in self._poll(100):
                waiting.pop(msg.get("ans", {}).get("inf_refmsgid", ""), None)
        return time.monotonic() - start

    def run(self, visits: list[Visit], rate: float,
            on_progress: Callable[[int], None] | None = None) -> HospitalRunResult:
        """Carry out `visits` at `rate` visit arrivals per second; return what was seen."""
        sessions: list[VisitSession] = [VisitSession(v) for v in visits]
        exchanges: dict[str, Exchange] = {}
        inflight: dict[str, VisitSession] = {}
        busy: set[str] = set()
        waiting: dict[str, deque[VisitSession]] = defaultdict(deque)
        unanswered: list[str] = []
        duplicates = conflicts = unexpected = 0
        finished = 0
        t0 = time.monotonic()
        next_arrival = 0

        def send_next(session: VisitSession) -> None:
            nonlocal finished
            req = session.next_request()
            if req is None:
                finished += 1
                busy.discard(session.visit.certno)
                if on_progress:
                    on_progress(1)
                queue = waiting.get(session.visit.certno)
                if queue:
                    start_visit(queue.popleft())
                return
            ex = Exchange(req["infno"], req["msgid"])
            ex.sent_ns = self._send(session.visit.certno, req)
            exchanges[req["msgid"]] = ex
            inflight[req["msgid"]] = session

        def start_visit(session: VisitSession) -> None:
            busy.add(session.visit.certno)
            send_next(session)

        while finished < len(sessions):
            now = time.monotonic() - t0
            while next_arrival < len(sessions) and next_arrival / rate <= now:
                session = sessions[next_arrival]
                next_arrival += 1
                if session.visit.certno in busy:
                    waiting[session.visit.certno].append(session)
                else:
                    start_visit(session)
            wait_s = (next_arrival / rate - now) if next_arrival < len(sessions) else 0.05
            for msg in self._poll(max(1, min(50, int(wait_s * 1000)))):
                ans = msg.get("ans") or {}
                msgid = ans.get("inf_refmsgid", "")
                ex = exchanges.get(msgid)
                if ex is None:
                    unexpected += 1
                    continue
                if ex.answer is not None:
                    duplicates += 1
                    conflicts += ex.answer != ans
                    continue
                recv = time.time_ns()
                ex.answer = ans
                ex.latency_ms = (recv - ex.sent_ns) / 1e6
                ex.route = msg.get("ctx", {}).get("route", "")
                ex.trace = [[HOSP_SEND, ex.sent_ns], *msg.get("trace", []), [HOSP_RECV, recv]]
                session = inflight.pop(msgid, None)
                if session is not None:
                    session.on_answer(ans)
                    send_next(session)
            if inflight:
                oldest_allowed = time.time_ns() - int(self.answer_timeout_s * 1e9)
                for msgid in [m for m, s in inflight.items()
                              if exchanges[m].sent_ns < oldest_allowed]:
                    session = inflight.pop(msgid)
                    unanswered.append(msgid)
                    session.failed = {"infcode": -1, "err_code": "TIMEOUT",
                                      "err_msg": "no answer within the timeout"}
                    send_next(session)
        self.producer.flush()
        return HospitalRunResult(sessions, exchanges, unanswered, duplicates, conflicts,
                                 unexpected, time.monotonic() - t0)
