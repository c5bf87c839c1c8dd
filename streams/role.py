"""How a role takes an event: its pure handler decides, and only then are the table writes,
metric updates and sends it asked for made, all of them or none (docs/streams.md, "table
writes and failures")."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

from messages import topics
from messages.codec import MalformedMessage, decode, encode
from messages.codes import ErrorCode, Infno
from messages.dead_letters import CODE_HEADER, REASON_HEADER, SOURCE_HEADER, TRUNCATED_HEADER
from messages.envelope import answerable_msgid, error_answer
from messages.platform import REPEAT_HEADER, NotPlatformMessage, hospital_context, wrap_answer
from messages.signing import fold_headers
from settlement.retention import HORIZON_DAYS, WINDOW_DAYS
from settlement.treatment import MAX_REQUEST_BYTES
from streams import metrics
from streams.env_numbers import number_from_env
from streams.lost_writes import stop_for_lost_write
from streams.partitioner import key_partition

log = logging.getLogger("huimin.streams")

#: The topics that carry a hospital's request towards the role that answers it.
REQUESTS_INWARD = frozenset({topics.HOSP_REQUESTS, topics.NAT_REQUESTS, topics.INS_REQUESTS,
                             topics.RECON_REQUESTS, topics.EHR_NATIONAL, topics.EHR_SOURCES})

#: Requests the treatment side forwarded towards the insured place: their answers come back
#: through `trt.answers`, a failure's too.
FORWARDED_INWARD = frozenset({topics.NAT_REQUESTS, topics.INS_REQUESTS})

MAX_RECORD_BYTES_ENV = "HUIMIN_MAX_RECORD_BYTES"


def max_record_bytes() -> int:
    """The largest record a role writes (a table row, an answer, a forwarded request): under
    the 1,000,000-byte request Faust's producer and Kafka brokers take by default, with room
    for the key and headers; a larger one would fail in the producer, after the event was
    taken. `HUIMIN_MAX_RECORD_BYTES` lowers it for a broker with a smaller
    `message.max.bytes`: ValueError if it is not bytes from 1,000 to 900,000 (every huimin
    command checks it as it starts)."""
    return number_from_env(MAX_RECORD_BYTES_ENV, 900_000, 1_000, 900_000, "bytes", int)


def _max_record_bytes_or_default() -> int:
    try:
        return max_record_bytes()
    except ValueError:  # refused by every command as it starts, in words (huimin/cli_app.py)
        return 900_000


MAX_RECORD_BYTES = _max_record_bytes_or_default()

Send = tuple[Any, bytes | None, bytes, dict[str, bytes] | None]  # topic, key, value, headers
Write = tuple[Any, bytes, bytes]  # table, key, value
Handler = Callable[..., list[Send]]  # (key, value) or (key, value, headers, record_ms)


#: What fills a row of each table that can outgrow a record (a refusal says it).
_WINDOW_HINT = (f"the person's answers by msgid, each hospital's of its last {WINDOW_DAYS} "
                f"days, and {HORIZON_DAYS} days' at most, fill it; older ones are forgotten")
_ROW_HINTS = {"trt_persons": _WINDOW_HINT, "ins_persons": _WINDOW_HINT,
              "ehr_index": "the person's identifiers, published over time, fill it",
              "ehr_records": "the person's documents, lab results, AuditEvents and answers "
                             "of the last 7 days fill it"}


def oversized(sends: list[Send], writes: list[Write]) -> str:
    """Why the records an event would produce cannot be written, or "" if they can."""
    for what, key, value, hint in [
            *(("an answer or message", k, v, "a reconciliation over a shorter period answers "
               "in less") for _, k, v, _ in sends),
            *(("a table row", k, v, _ROW_HINTS.get(getattr(t, "name", ""), "what it keeps "
               "is that large")) for t, k, v in writes)]:
        size = len(key or b"") + len(value)
        if size > MAX_RECORD_BYTES:
            return (f"{what} of {size:,} bytes would be over the {MAX_RECORD_BYTES:,} a "
                    f"record may hold ({hint})")
    return ""


def send(topic: Any, key: bytes | None, value: bytes) -> Send:
    return topic, key, value, None


def stored(table: Any, key: bytes | None) -> bytes | None:
    """A table's value for `key`, read from its store once. `Table.get` asks the store twice
    (`key in`, then the value: Faust's tables have `__missing__`), which on RocksDB is two
    lookups of a ~10 KB row through two more layers of dict wrappers. The first lookup, which
    reads the row from the file, stays (5–7.5 % of a worker's samples in a million visits);
    the second, its block then cached, and the wrappers were ~2 %. Only Faust's per-read
    sensor is skipped."""
    return table.data.get(key)


def _record_ms(timestamp_s: float | None) -> int | None:
    """A record's Kafka timestamp as Faust gives it (seconds, a float) in whole ms."""
    return round(timestamp_s * 1000) if timestamp_s else None


def _headers(raw: Any) -> dict[str, bytes]:
    """Kafka headers as a dict, whichever form the client gives them in."""
    if not raw:
        return {}
    items = raw.items() if isinstance(raw, dict) else raw
    return fold_headers((k, v if isinstance(v, bytes) else b"" if v is None else str(v).encode())
                        for k, v in items)


def decodes(value: bytes | None) -> bool:
    """Whether a message's bytes are a JSON object, as every platform message is."""
    try:
        decode(value)
    except MalformedMessage:
        return False
    return True


class RoleRunner:
    """Runs each role's handler as a Faust agent and holds what the event at hand asked for:
    its table writes (`put`) and metric updates (`later`). One per app: the agents take turns
    on one event loop and a handler never awaits, so one event's writes never mix with
    another's. It also builds what every role may send: an answer to a hospital
    (`to_hospital`) and a dead letter (`dead_letter`)."""

    def __init__(self, app: Any, hosp_responses: Any, dead_letters: Any,
                 signed_in: dict[str, bytes], trt_answers: Any = None) -> None:
        self.app = app
        self._hosp_responses = hosp_responses
        self._dead_letters = dead_letters
        self._trt_answers = trt_answers  # where a failed forward's answer goes (`failed`)
        self._signed_in = signed_in  # the headers of a 9001's answer
        self.writes: list[Write] = []
        self.effects: list[Callable[[], object]] = []
        self.at = ""  # the event being handled, as topic[partition]@offset (`where`)
        self.partition = -1  # and its partition (-1: none being handled, as between events)

    def put(self, table: Any, key: bytes | None, value: bytes) -> None:
        """A table write, made only once the event's handler has returned and what it would
        write and send fits in a record: a handler that fails changes no row. A row is a
        person's or an event's: a message without a key has none, and is dead-lettered."""
        if not key:
            raise ValueError("a message without a key")
        self.writes.append((table, key, value))

    def where(self, value: bytes | None, source: str) -> str:
        """The event being handled, for a log line an operator can follow to the message
        (`huimin trail`, `huimin dead-letters`): topic[partition]@offset, and the msgid of
        the request it carries where one may be shown (never personal data)."""
        # one over what a request may be is read for its envelope only: not parsed for a log line
        ctx = hospital_context(value, source == topics.HOSP_REQUESTS) \
            if len(value or b"") <= MAX_REQUEST_BYTES else None
        msgid = ctx["msgid"] if ctx is not None and answerable_msgid(ctx["msgid"]) else ""
        return (self.at or source) + (f", msgid {msgid}" if msgid else "")

    def misplaced(self, key: bytes) -> int | None:
        """The partition `key` belongs on, if the event at hand is on another: a client that
        places keys otherwise than murmur2 (librdkafka's default, crc32) would have a person
        decided on a partition that does not hold their rows."""
        if self.partition < 0:
            return None
        mine = key_partition(key, self.app.conf.topic_partitions)
        return mine if mine != self.partition else None

    def later(self, effect: Callable[[], object]) -> None:
        """A metric update, made with the event's writes: a refused event counts only what
        its refusal sends (one answer, one dead letter), not what it had built."""
        self.effects.append(effect)

    def dead_letter(self, key: bytes | None, value: bytes | None, code: str, reason: str,
                    source: str) -> Send:
        """The original bytes, untouched, with why in the headers (never personal data). A
        message too large to write again whole (a request of ~1 MB the broker took) keeps
        its first bytes, and says how large it was."""
        log.warning("dead-lettered %s: %s", self.where(value, source), code)
        self.later(metrics.DEAD_LETTERS.labels(code, source).inc)  # our codes, topic names
        value = value or b""
        headers = {CODE_HEADER: code.encode(), REASON_HEADER: reason.encode()[:2_000],
                   SOURCE_HEADER: source.encode()}
        if len(key or b"") + len(value) > MAX_RECORD_BYTES:  # the key counts too
            headers[TRUNCATED_HEADER] = str(len(value)).encode()
            key = key[:MAX_RECORD_BYTES // 2] if key else key
            value = value[:MAX_RECORD_BYTES - len(key or b"")]
        return self._dead_letters, key, value, headers

    def to_hospital(self, ans: dict[str, Any], ctx: dict[str, Any], trace: list,
                    repeat: bool = False) -> Send:
        """The answer to a hospital, its request no longer in flight; `repeat`: the msgid was
        answered before (a duplicate, or a request or answer redelivered after a rebalance),
        so the answer is counted but not timed: timed from the request's first record, a
        redelivery's answer read as a wait of seconds no hospital had (the settlement SLO
        alert went pending)."""
        self.later(partial(metrics.observe_answer, ans, ctx, [] if repeat else trace))
        self.later(partial(metrics.FORWARDED.answered, ctx["msgid"]))
        headers = self._signed_in if ctx.get("infno") == Infno.SIGN_IN else None
        if repeat:  # said beside the answer, which stays the first (`ans`; the trace is new)
            headers = {**(headers or {}), REPEAT_HEADER: b"1"}
        return (self._hosp_responses, ctx["fixmedins_code"].encode(),
                encode(wrap_answer(ans, ctx, trace)), headers)

    def failed(self, key: bytes | None, value: bytes | None, source: str, code: ErrorCode,
               reason: str) -> list[Send]:
        """The message dead-lettered, and, where it carries a request on its way in, the
        hospital answered with the same error rather than left waiting: that role's event
        changed nothing, and no role after it has seen the request. An answer on its way
        back (nat.answers, trt.answers) is only dead-lettered: what it answers may have been
        done (a settlement made), and the hospital's time-out and 2601 settle that."""
        sends = [self.dead_letter(key, value, code.value, reason, source)]
        if source not in REQUESTS_INWARD:
            return sends
        ctx = hospital_context(value, source == topics.HOSP_REQUESTS)
        if ctx is None or not answerable_msgid(ctx["msgid"]):  # not echoed: only kept
            return sends
        answer = error_answer(ctx["msgid"], code, reason)
        if source in FORWARDED_INWARD and self._trt_answers is not None and key:
            # back the way every insured-side answer goes: the treatment row keeps it (for a
            # duplicate) and reads it as the answer a held request may wait for
            # (settlement/treatment_row.py, `queue_request`), then answers the hospital
            msg = decode(value)  # a platform message, its ctx whole (hospital_context)
            trace = t if isinstance(t := msg.get("trace"), list) else []
            back = encode(wrap_answer(answer, {**msg["ctx"], **ctx}, trace))
            if oversized([(self._trt_answers, key, back, None)], []):  # a ctx grown past a
                back = encode(wrap_answer(answer, ctx, []))  # record: what names the request
            return [*sends, (self._trt_answers, key, back, None)]
        sends.append(self.to_hospital(answer, ctx, []))
        return sends

    def role(self, source: Any, name: str, handler: Handler,
             with_headers: bool = False) -> None:
        """An agent that runs `handler` on each event (with its headers and its Kafka
        timestamp in ms, if asked), then makes the table writes and metric updates it asked
        for and sends what it returned. An exception, or a record too large to write, makes
        none of them: the message is dead-lettered and answered instead (`failed`), and the
        platform goes on. Sends go to the app's producer directly, not through Faust's
        channel layer (a future message and sensor calls per send): the offsets are still
        committed only after the producer is flushed, so at-least-once holds. The handler's
        CPU time is counted by role (`huimin_role_cpu_seconds_total`, ~2 µs an event): what
        the worker spends on the platform's own work, against what Faust and the client
        cost around it."""
        cpu = metrics.child(metrics.ROLE_CPU, name)
        events = metrics.child(metrics.ROLE_EVENTS, name)
        writes, effects = self.writes, self.effects

        async def agent(stream: Any) -> None:
            producer = self.app.producer
            source_topic = source.get_topic_name()
            async for event in stream.events():
                started = time.thread_time()
                writes.clear()
                effects.clear()
                self.partition = event.message.partition
                self.at = f"{source_topic}[{self.partition}]@{event.message.offset}"
                frames = ""
                try:
                    # the record's own headers: the event's are a dict, a name given twice
                    # left once there (a request signed twice must be seen as such)
                    sends = handler(event.key, event.value, _headers(event.message.headers),
                                    _record_ms(event.message.timestamp)) \
                        if with_headers else handler(event.key, event.value)
                    problem = oversized(sends, writes)
                    code = ErrorCode.TOO_LARGE
                except Exception as exc:
                    if isinstance(exc, NotPlatformMessage):  # JSON no role wrote: as below
                        problem = f"not a platform message ({exc})"
                        code = ErrorCode.SCHEMA_VIOLATION
                    elif isinstance(exc, MalformedMessage) and not decodes(event.value):
                        # bytes no role wrote (by hand, another producer): bad input, not
                        # the platform's fault, so no E9001 and no critical page
                        problem = "not a platform message (it does not decode)"
                        code = ErrorCode.MALFORMED_JSON
                    else:
                        problem = f"internal error in {name}: {type(exc).__name__}"
                        code = ErrorCode.INTERNAL_ERROR
                        # where it was raised, without the exception's message or any
                        # value (they may hold personal data): files, lines, functions
                        frames = "".join(traceback.format_list(
                            traceback.extract_tb(exc.__traceback__))).rstrip()
                if problem:
                    log.log(logging.WARNING if code in (ErrorCode.MALFORMED_JSON,
                                                        ErrorCode.SCHEMA_VIOLATION)
                            else logging.ERROR, "%s: %s (%s)%s", name, problem,
                            self.where(event.value, source_topic),
                            f"\nwhere it was raised:\n{frames}" if frames else "")
                    writes.clear()
                    effects.clear()
                    try:
                        sends = self.failed(event.key, event.value, source_topic, code,
                                            problem)
                    except Exception as exc:  # not even the answer could be built: kept
                        log.error("%s: no answer to its failure (%s)", name,
                                  type(exc).__name__)
                        effects.clear()
                        sends = [self.dead_letter(event.key, event.value, code.value,
                                                  problem, source_topic)]
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
                self.partition, self.at = -1, ""  # nothing is being handled now
                for topic, out_key, out_value, extra in sends:
                    try:
                        await producer.send(topic.get_topic_name(), out_key, out_value, None,
                                            None, extra)
                    except Exception as exc:  # the event is taken: stop before it is acked
                        stop_for_lost_write(topic.get_topic_name(), exc)
        agent.__name__ = name
        self.app.agent(source, name=name)(agent)
