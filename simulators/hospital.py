"""Hospitals that talk to the platform only over Kafka, as HIS clients do (their requests
sent and answers read by librdkafka, simulators/librdkafka.py; the rest by kafka-python):
`HospitalFleet` signs in, sends, reads the answers and dead letters, and carries out runs of
visits (simulators/visit_run.py: open loop, a step waiting for the answer to the one before,
a person at one hospital at a time).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from messages import topics
from messages.codec import MalformedMessage, decode, encode
from messages.codes import Infno
from messages.dead_letters import DeadLetterEntry, describe_dead_letter, header_values
from messages.platform import WORLD_HEADER
from messages.signing import Signer
from messages.visitlog import Visit, make_msgid
from settlement.reference import Hospital
from simulators import hospital_metrics as metrics
from simulators.bad_messages import BadMessage
from simulators.cluster_watch import ClusterWatch
from simulators.librdkafka import librdkafka_settings
from simulators.rdkafka_requests import RequestsProducer
from simulators.rdkafka_tail import RdkafkaTail
from simulators.visit_run import HospitalRunResult, LateAnswer, OnProgress, Sink, VisitRun
from streams.config import FETCH_WAIT_MS, LINGER_MS
from streams.offset_gaps import GapCounts, GapGuard
from streams.partition_ends import true_ends
from streams.security import SECRET_ENV, configured_secret

log = logging.getLogger("huimin.hospitals")

#: Dead letters are counted, not waited on by a visit: a long fetch wait spares the broker.
DEAD_LETTER_FETCH_WAIT_MS = 200
#: The hospitals' Kafka clients, by what they carry: in the broker's view of its clients, and
#: in the name of the dead-letter consumer's network thread, which kafka-python names after it
#: (benchmarks/cpu_accounts.py; librdkafka names its threads itself).
REQUESTS_CLIENT = "huimin-hospitals-requests"
ANSWERS_CLIENT = "huimin-hospitals-answers"
DEAD_LETTERS_CLIENT = "huimin-hospitals-dead-letters"
#: A flush waits in slices of this long, asking between them whether to stop.
FLUSH_SLICE_S = 0.25


class PlatformSilent(TimeoutError):
    """No platform answered: none is running on the cluster, or it cannot take requests."""


class PlatformOfAnotherWorld(RuntimeError):
    """The platform answering settles by another world than the visits were made in (its
    workers' `--seed`, `--persons` or `--policy`), or its workers disagree among themselves:
    every answer would differ from the oracle's, so nothing is sent."""


class SignaturesRefused(RuntimeError):
    """The platform refuses the hospitals' signatures (E6001/E6002 to their sign-in): its
    workers check them with another secret, so every request would be refused."""


#: What a sign-in refused for its signature is answered with.
SIGNATURE_REFUSALS = frozenset({"E6001", "E6002"})


def signatures_refused(code: str, sent: str = "the hospitals' sign-in",
                       outcome: str = "; no visit was sent") -> str:
    """What to tell a person whose requests (`sent`) the platform refused with `code` for
    their signatures."""
    if code == "E6001":  # the headers never reached it: something between strips them
        return (f"the platform received {sent} without signature headers (E6001): something "
                f"between the sender and the cluster drops Kafka headers{outcome}")
    return (f"the platform refused the signatures of {sent} ({code}): its workers check them "
            f"with another secret. Give the sender the workers' secret ({SECRET_ENV}; unset, "
            f"both use the development secret){outcome}")


def other_world(ours: str, theirs: set[str]) -> str:
    """What to tell a person whose visits were made for `ours` when workers answered for
    `theirs`: which options differ, and what to do."""
    named = "; ".join(sorted(theirs))
    if len(theirs) > 1:
        return (f"the platform's workers do not settle by one world ({named}): start every "
                "worker with the same --seed, --persons and --policy; no visit was sent")
    return (f"the platform on this cluster settles by another world ({named}) than these "
            f"visits were made in ({ours}): start its workers with the visits' --seed, "
            "--persons and --policy (a visit log's header has them), or generate the visits "
            "with the workers'; no visit was sent")


class Undelivered:
    """Requests the producer gave up on (most never written; some perhaps written, their
    acknowledgement never come: `hospital_metrics.SEND_FAILURE_OF`): each is counted and
    said, so that a request unanswered for that reason is not taken for one the platform
    lost. The first of each kind is logged and the rest summed up when the
    hospitals stop: a closing producer gives up every request it still holds, which would be
    a line each. librdkafka reports on the loop's own thread (simulators/rdkafka_requests.py)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()  # by the producer's error
        #: the requests were given up on purpose (an interrupt): counted, not warned of
        self.given_up = False

    def __call__(self, error: str, text: str = "") -> None:
        """A request given up on with librdkafka's `error` (its name) and `text`."""
        metrics.SEND_FAILURES.labels(metrics.send_failure_kind(error)).inc()
        self.counts[error] += 1
        if self.counts[error] == 1 and not self.given_up:
            log.warning("a request could not be delivered to %s: %s%s", topics.HOSP_REQUESTS,
                        error, f" ({text})" if text else "")

    def say(self) -> None:
        """The requests not delivered since the first of each kind was logged."""
        counts, self.counts = self.counts, Counter()
        if self.given_up:
            if total := sum(counts.values()):
                log.info("%d %s still in the producer given up on being stopped", total,
                         "request" if total == 1 else "requests")
            return
        for kind, n in sorted(counts.items()):
            if n > 1:
                log.warning("%d more %s could not be delivered to %s: %s", n - 1,
                            "request" if n == 2 else "requests", topics.HOSP_REQUESTS, kind)


def response_consumer(bootstrap: str, topic: str = topics.HOSP_RESPONSES, wait_s: float = 30,
                      **extra: Any) -> KafkaConsumer:
    """All partitions of `topic`, manually assigned, from the end: no group to join. A topic
    still missing after `wait_s` means no platform was set up on the cluster."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             **{"fetch_max_wait_ms": FETCH_WAIT_MS, "metrics_enabled": False,
                                **extra})
    deadline = time.monotonic() + wait_s
    while not (parts := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            consumer.close()
            raise PlatformSilent(f"the cluster has no topic {topic}: no huimin platform was "
                                 "set up on it (`huimin topics` makes the topics; then start "
                                 "a `huimin worker`)")
        time.sleep(0.1)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    # the ends now, before anything is sent; Tansu reports them short (streams/partition_ends.py)
    ends = true_ends(consumer, consumer.end_offsets(tps))
    consumer.assign(tps)
    for tp, end in ends.items():
        consumer.seek(tp, end)
    return consumer


def answer_tail(bootstrap: str, **settings: Any) -> RdkafkaTail:
    """`hosp.responses` from its end, read by librdkafka (simulators/rdkafka_tail.py): the
    partitions and their ends found as `response_consumer` finds them."""
    librdkafka_settings(settings)  # a setting it cannot take refused before any waiting
    finder = response_consumer(bootstrap, **settings)
    try:
        positions = {tp: finder.position(tp) for tp in finder.assignment()}
    finally:
        finder.close()
    return RdkafkaTail(bootstrap, positions, settings)


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A dead letter as the hospitals saw it: its bytes, to match a bad request they sent on
    purpose, and its entry (messages/dead_letters.py), to show."""

    key: bytes | None
    value: bytes
    entry: DeadLetterEntry

    @property
    def error_code(self) -> str:
        return self.entry.error_code


#: Seconds the sign-in waits for the other workers once one of another world than the visits'
#: has answered: long enough for every worker's first answers, short of the whole time-out.
WORLDS_GRACE_S = 5.0
#: How long the hospitals wait for a platform already running to answer their sign-in; one
#: started with them is given the time its workers take to build their world besides
#: (`simulators.world.worlds_build_s`).
SIGN_IN_TIMEOUT_S = 120.0


class HospitalFleet:
    """All simulated hospitals behind one producer and one response consumer."""

    def __init__(self, bootstrap: str, answer_timeout_s: float = 30.0,
                 client_config: dict[str, Any] | None = None,
                 signing_secret: bytes | None = None, idempotent: bool = False,
                 linger_ms: int = LINGER_MS, fetch_wait_ms: int = FETCH_WAIT_MS) -> None:
        """`client_config`: a secured cluster's settings in kafka-python's names
        (`ClusterSecurity.kafka_python`: `security_protocol`, `sasl_mechanism`,
        `sasl_plain_username`, `sasl_plain_password`, `ssl_cafile`), which the librdkafka
        clients take under its names (`librdkafka_settings`).
        `signing_secret`: each hospital signs what it sends with its key derived from it
        (messages/signing.py); default HUIMIN_SIGNING_SECRET or the development secret."""
        extra = client_config or {}
        self.signer = Signer(signing_secret or configured_secret()[0])
        self.bootstrap = bootstrap
        self.answer_timeout_s = answer_timeout_s
        self.undelivered = Undelivered()
        self.consumer = answer_tail(bootstrap, **{"fetch_max_wait_ms": fetch_wait_ms,
                                                  "client_id": ANSWERS_CLIENT, **extra})
        opened: list[Any] = [self.consumer]
        try:  # no platform (PlatformSilent), or an interrupt meanwhile: close what is open
            self.dead_letter_consumer = response_consumer(
                bootstrap, topics.DEAD_LETTERS,
                **{"fetch_max_wait_ms": max(fetch_wait_ms, DEAD_LETTER_FETCH_WAIT_MS),
                   "client_id": DEAD_LETTERS_CLIENT, **extra})
            opened.append(self.dead_letter_consumer)
            self.producer = RequestsProducer(bootstrap, {"client_id": REQUESTS_CLIENT, **extra},
                                             self.undelivered, idempotent, linger_ms)
        except BaseException:
            for client in opened:
                client.close()
            raise
        # both tailed topics are written by every worker: see streams/offset_gaps.py
        counted = metrics.READ_GAPS.labels
        self.answer_reader = GapGuard(self.consumer, on_gap=lambda o: counted(o).inc())
        self.dead_letter_reader = GapGuard(self.dead_letter_consumer,
                                           on_gap=lambda o: counted(o).inc())
        #: the sign-ins' msgids: a sign-in redelivered to a worker (a rebalance as the
        #: platform starts) is answered again after `sign_in` has returned, which is no
        #: error if the answer is OK (`HospitalRunResult.sign_ins_answered_again`)
        self.sign_in_msgids: set[str] = set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Give the producer `timeout_s` to send what it holds (0: give it up at once, as an
        interrupt that unwinds the run wants: the requests it still holds are then not
        warned of, as failures, one by one)."""
        self.undelivered.given_up = timeout_s == 0
        if self.producer.close(timeout_s) and not self.undelivered.given_up:
            log.warning("the hospitals' producer closed with requests still undelivered")
        self.consumer.close()
        self.dead_letter_consumer.close()
        self.undelivered.say()

    def _flush(self, timeout_s: float | None = None,
               stop_requested: Callable[[], bool] = lambda: False) -> None:
        """Wait for the requests sent to be on the broker, at most `timeout_s` (an answer's
        time-out unless given) or until `stop_requested`: a cluster gone for good would
        otherwise hold the run here for ever, its answers (and results file) with it.
        Requests still unsent then fail when the producer closes (`Undelivered`)."""
        deadline = time.monotonic() + (self.answer_timeout_s if timeout_s is None
                                       else timeout_s)
        while self.producer.flush(max(0.0, min(FLUSH_SLICE_S, deadline - time.monotonic()))):
            if time.monotonic() >= deadline or stop_requested():
                log.warning("requests were still unsent to %s when the hospitals stopped "
                            "waiting", topics.HOSP_REQUESTS)
                return

    def _send(self, key: str | bytes | None, value: bytes, sender: str = "",
              signing: str = "valid") -> int:
        """Put one request on the wire, signed by `sender` (or, for a bad request, unsigned
        or signed with a key that is not the sender's)."""
        raw_key = key.encode() if isinstance(key, str) else key
        headers = self.signer.headers_as(signing, sender, raw_key, value)
        sent = time.time_ns()
        # one it gives up on (too large, say) is counted; unanswered, it times out
        self.producer.send(topics.HOSP_REQUESTS, key=raw_key, value=value, headers=headers)
        return sent

    def _poll(self, timeout_ms: int, worlds: set[str] | None = None) -> list[dict[str, Any]]:
        """The answers there are, as soon as there is one, waiting `timeout_ms` at most;
        `worlds` collects the world of each that names one (a sign-in's)."""
        self.producer.serve_reports()  # a request given up on is counted as it happens
        out = []
        for rec in self.answer_reader.poll(timeout_ms, max_records=2000):
            try:
                msg = decode(rec.value)
            except MalformedMessage as e:  # the platform's answers always decode: say so
                log.warning("an answer on %s[%d]@%d does not decode (%s); skipped", rec.topic,
                            rec.partition, rec.offset, type(e).__name__)
                continue
            ans = msg.get("ans")
            if not (isinstance(ans, dict) and isinstance(ans.get("inf_refmsgid", ""), str)):
                log.warning("an answer on %s[%d]@%d is not one a platform writes (no answer "
                            "object naming a msgid); skipped", rec.topic, rec.partition,
                            rec.offset)
                continue
            out.append(msg)
            if worlds is not None and rec.headers:
                worlds.update(v.decode("utf-8", "replace") for k, v in rec.headers
                              if k == WORLD_HEADER and v)
        return out

    def _read_gaps(self) -> GapCounts:
        """The jumps closed and holes stepped over in reading answers and dead letters."""
        a, d = self.answer_reader.counts, self.dead_letter_reader.counts
        return GapCounts(a.closed + d.closed, a.holes + d.holes, a.holes_at + d.holes_at)

    def _poll_dead_letters(self) -> list[DeadLetterRecord]:
        out = []
        for rec in self.dead_letter_reader.poll(timeout_ms=0):
            entry = describe_dead_letter(rec.value, header_values(rec.headers),
                                         rec.partition, rec.offset, rec.timestamp)
            out.append(DeadLetterRecord(rec.key, rec.value, entry))
        return out

    def sign_in(self, hospitals: Iterable[Hospital], inf_time: str,
                timeout_s: float = SIGN_IN_TIMEOUT_S, world: str | None = None,
                gone: Callable[[], str | None] = lambda: None) -> float:
        """9001 for every hospital; returns seconds until all were answered (the platform is
        up). Raises PlatformSilent if the platform does not answer (at once if `gone` says
        why it will not: a worker we started has exited), and
        PlatformOfAnotherWorld if an answer names a world other than `world`
        (`simulators.world.world_tag`; a worker of a version before it names none), and
        SignaturesRefused if the platform refuses their signatures."""
        start = time.monotonic()
        worlds: set[str] = set()
        waiting: dict[str, Hospital] = {}
        for h in hospitals:
            msgid = make_msgid(h.fixmedins_code, inf_time, 9_999)
            waiting[msgid] = h
            self.sign_in_msgids.add(msgid)
            self._send(h.fixmedins_code, encode({
                "infno": Infno.SIGN_IN, "msgid": msgid, "mdtrtarea_admvs": h.admdvs,
                "insuplc_admdvs": "", "fixmedins_code": h.fixmedins_code, "inf_time": inf_time,
                "input": {"opter_no": "sim", "mac": "", "ip": ""}}), h.fixmedins_code)
        self._flush()
        foreign_at = None  # when a worker of another world than the visits' first answered
        while waiting:
            now = time.monotonic()
            if now - start > timeout_s or (foreign_at and now - foreign_at > WORLDS_GRACE_S):
                break
            if foreign_at is None and world is not None and worlds - {world}:
                foreign_at = now
            if (reason := gone()) is not None:
                raise PlatformSilent(reason)
            for msg in self._poll(100, worlds):
                ans = msg.get("ans", {})
                if waiting.pop(ans.get("inf_refmsgid", ""), None) is not None and \
                        ans.get("err_code") in SIGNATURE_REFUSALS:
                    raise SignaturesRefused(signatures_refused(ans["err_code"]))
        # judged once every worker has answered for its partitions (or a few seconds after
        # the first foreign answer): told at once, a person was sometimes told the platform
        # has another world where its workers have two
        if world is not None and worlds - {world}:
            raise PlatformOfAnotherWorld(other_world(world, worlds))
        if waiting:
            raise PlatformSilent(
                f"no platform answered the hospitals' sign-in (9001) within "
                f"{timeout_s:.0f} s: is a huimin worker running on this cluster, on topics "
                "made by `huimin topics`? (Its log says why not.)")
        return time.monotonic() - start

    def exchange(self, requests: list[tuple[str, dict[str, Any]]], timeout_s: float = 60.0,
                 signing: str = "valid", sign_as: str | None = None
                 ) -> dict[str, list[dict[str, Any]]]:
        """Send standalone requests (key, request) and collect their answers by msgid.
        `signing` and `sign_as` (another sender's key) make unsigned or forged ones."""
        answers: dict[str, list[dict[str, Any]]] = {r["msgid"]: [] for _, r in requests}
        for key, req in requests:
            self._send(key, encode(req), sign_as or req["fixmedins_code"], signing)
        self._flush()
        deadline = time.monotonic() + timeout_s
        while any(not a for a in answers.values()) and time.monotonic() < deadline:
            for msg in self._poll(100):
                ans = msg.get("ans") or {}
                if ans.get("inf_refmsgid") in answers:
                    answers[ans["inf_refmsgid"]].append(ans)
        return answers

    def run(self, visits: Iterable[Visit], arrivals: Sequence[float],
            bad: list[BadMessage] | None = None,
            on_progress: OnProgress | None = None,
            drain_s: float = 15.0,
            events: list[tuple[float, Callable[[], object]]] | None = None,
            sink: Sink | None = None,
            max_in_flight: int | None = None,
            stop_requested: Callable[[], bool] = lambda: False,
            watch: ClusterWatch | None = None, linger_s: float = 0.0,
            late: LateAnswer | None = None) -> HospitalRunResult:
        """Carry out `visits`, visit k arriving `arrivals[k]` seconds after the start (open
        loop), with the `bad` requests spread among them; `events` are (seconds, action) to
        run on the way (e.g. killing a worker). Return everything that was seen.

        `sink`: hand each visit, with its exchanges, to `sink` once it is over and every
        answer it awaits has come (or the hospital gave up waiting), and forget it; the
        result then holds no sessions or exchanges. A long run's memory no longer grows with
        its visits (`huimin bench`); `visits` can then be a generator, read as they arrive.
        `linger_s`: how long a visit is kept after its last answer before the sink takes it,
        so that an answer given again within it (redelivery after a worker's restart) is
        counted with its request, not as unexpected; a finished visit still owed an answer it
        does not await is given up at the answer time-out, and the run's end waits (up to
        `drain_s` of quiet) for the answers owed to visits given up. `late`: told of each
        answer owed to a visit given up that came after the sink took it.

        `max_in_flight`: a visit that arrives while this many are under way is dropped, not
        started, and counted (`dropped`; `on_progress` tells it apart), as a load generator's
        arrival-rate executor does once its budget is spent: far past a platform's capacity,
        an uncapped open loop only grows a backlog that takes minutes to drain and holds the
        broker's memory, and tells no more than the first seconds of it did.

        `stop_requested`: asked on every pass of the loop (every ≤ 50 ms); once it says so
        the run ends there with what was seen so far (`interrupted`), each request whole.

        `watch`: told of every answer, and asked every TIMEOUT_SCAN_EVERY_S while requests
        are awaited; once it says the cluster is lost, the run ends there as if stopped
        (`interrupted`), saying why (`cluster_lost`)."""
        return VisitRun(self, visits, arrivals, bad or [], on_progress, drain_s, events or [],
                        sink, max_in_flight, stop_requested, watch, linger_s,
                        late).carry_out()
