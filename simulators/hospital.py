"""Hospitals that talk to the platform only over Kafka (kafka-python), as HIS clients do.

Visits arrive open-loop at a fixed rate (independent of answers, so a slow platform shows up
as latency, not as a politely reduced load). Within a visit each step waits for the answer to
the previous one. A person is in one place at a time: a visit whose patient is still busy
waits for the earlier visit to finish, which keeps each person's order equal to the log's.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from bisect import bisect_left
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from messages import topics
from messages.codec import MalformedMessage, decode, encode
from messages.codes import REPEATED_MSGID, TIMED_OUT, Infno
from messages.dead_letters import DeadLetterEntry, describe_dead_letter, header_values
from messages.platform import WORLD_HEADER, route_label
from messages.signing import Signer
from messages.trace import HOSP_RECV, HOSP_SEND
from messages.visitlog import Visit, VisitSession, make_msgid
from settlement.reference import Hospital
from simulators import hospital_metrics as metrics
from simulators.bad_messages import BadMessage
from simulators.reconciliation import DailyReconciler, DayReconciliation, HospitalBooks
from streams.config import FETCH_WAIT_MS, LINGER_MS
from streams.offset_gaps import GapCounts, GapGuard
from streams.partition_ends import true_ends
from streams.partitioner import KeyPartitioner
from streams.security import SECRET_ENV, configured_secret

log = logging.getLogger("huimin.hospitals")

#: Dead letters are counted, not waited on by a visit: a long fetch wait spares the broker.
DEAD_LETTER_FETCH_WAIT_MS = 200
#: How often a run looks at the dead-letter topic. Each look is a pass of kafka-python's network
#: loop (~5 % of the hospitals' CPU when done on every pass of the run's own loop); a dead letter
#: is not timed, so seeing it up to this much later costs nothing.
DEAD_LETTER_POLL_EVERY_S = 0.1
#: The hospitals' Kafka clients, by what they carry: in the broker's view of its clients, and
#: in the names of the network threads kafka-python gives each (benchmarks/cpu_accounts.py).
REQUESTS_CLIENT = "huimin-hospitals-requests"
ANSWERS_CLIENT = "huimin-hospitals-answers"
DEAD_LETTERS_CLIENT = "huimin-hospitals-dead-letters"
#: How often a run looks for awaited answers that are over time. A look walks every awaited
#: request, and there are thousands when the platform falls behind: on every pass of the loop
#: it cost the hospitals most when the machine could least spare it. A time-out is declared up
#: to this much late.
TIMEOUT_SCAN_EVERY_S = 0.1
#: a time-out after this long without one is logged as it happens (the first of a run, or of
#: a cluster's second outage); the rest are counted in `huimin_hospital_timeouts_total`
TIMEOUTS_SAID_AFTER_QUIET_S = 60.0
#: How long a run stopped by `stop_requested` waits for its last requests to reach the broker.
INTERRUPTED_FLUSH_S = 2.0
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


def signatures_refused(code: str) -> str:
    """What to tell a person whose hospitals' signatures the platform refused with `code`."""
    if code == "E6001":  # the headers never reached it: something between strips them
        return ("the platform received the hospitals' sign-in without its signature headers "
                "(E6001): something between them and the cluster drops Kafka headers; no "
                "visit was sent")
    return (f"the platform refused the hospitals' signatures ({code} to their sign-in): its "
            f"workers check them with another secret. Give these hospitals the workers' secret "
            f"({SECRET_ENV}; unset, both use the development secret); no visit was sent")


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


def producer_for(bootstrap: str, idempotent: bool = False, linger_ms: int = LINGER_MS,
                 **extra: Any) -> KafkaProducer:
    """`idempotent` where the broker offers it (Apache Kafka; not Tansu): a retried send is
    never written twice. kafka-python's own client metrics are off here and in the consumers:
    nothing reads them, and recording them was ~10 % of the answer consumer's network
    thread's busy time (py-spy, 100 visits/s)."""
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all" if idempotent else 1,
                         linger_ms=linger_ms, enable_idempotence=idempotent,
                         **{"metrics_enabled": False, "partitioner": KeyPartitioner(), **extra})


class Undelivered:
    """Requests the producer gave up on never reached the platform: each is counted and said,
    so that a request unanswered for that reason is not taken for one the platform lost. The
    first of each kind is logged and the rest summed up when the hospitals stop: a closing
    producer fails every batch it still holds, which was a line each."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()  # by the producer's error
        self._lock = threading.Lock()  # the producer's thread counts, the loop sums up
        #: the requests were given up on purpose (an interrupt): counted, not warned of
        self.given_up = False

    def __call__(self, exc: BaseException) -> None:
        kind = type(exc).__name__
        metrics.SEND_FAILURES.labels(metrics.send_failure_kind(exc)).inc()
        with self._lock:
            self.counts[kind] += 1
            first = self.counts[kind] == 1
        if first and not self.given_up:
            log.warning("a request could not be delivered to %s: %s", topics.HOSP_REQUESTS,
                        kind)

    def say(self) -> None:
        """The requests not delivered since the first of each kind was logged."""
        with self._lock:
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


#: How many unexpected answers' msgids a run keeps (HospitalRunResult.unexpected_msgids).
UNEXPECTED_KEPT = 20


@dataclass
class Exchange:
    """One distinct request (by msgid) and every answer the hospital saw to it."""

    infno: str
    msgid: str
    sends: int = 0
    sent_ns: int = 0
    answers: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: float | None = None  # first send to first answer
    route: str = ""
    trace: list = field(default_factory=list)
    given_up: bool = False  # its visit timed out: no answer to it is awaited any more


def unanswered(ex: Exchange) -> int:
    """Sends of `ex` not answered yet."""
    return max(0, ex.sends - len(ex.answers))


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


class StartLag:
    """How late visits were taken up after their scheduled arrival, as counts in buckets
    (a million visits keep a dozen numbers): its p99 to the bucket, and its maximum."""

    BOUNDS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS_MS) + 1)
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        self.counts[bisect_left(self.BOUNDS_MS, ms)] += 1
        self.max_ms = max(self.max_ms, ms)

    def p99_at_most_ms(self) -> float:
        """The bucket bound at or under which 99 % of the visits started (never more than the
        maximum); 0 with no visit."""
        total, seen = sum(self.counts), 0
        for i, n in enumerate(self.counts):
            seen += n
            if total and seen >= 0.99 * total:
                bound = self.BOUNDS_MS[i] if i < len(self.BOUNDS_MS) else self.max_ms
                return round(min(bound, self.max_ms), 1)
        return 0.0


@dataclass
class HospitalRunResult:
    sessions: list[VisitSession]
    exchanges: dict[str, Exchange]  # msgid -> exchange, for the visits' requests
    bad_answers: dict[str, list[dict[str, Any]]]  # msgid -> answers, for bad requests
    dead_letters: list[DeadLetterRecord]
    timed_out: list[str]  # msgids whose awaited answer never came
    unexpected_answers: int
    wall_s: float
    books: HospitalBooks = field(default_factory=HospitalBooks)  # what each HIS recorded
    daily: DailyReconciler | None = None  # the hospitals' daily 3201/3202
    dropped: int = 0  # visits not started: the run's `max_in_flight` were already under way
    #: how late the hospitals' loop took up each visit after its scheduled arrival: latency is
    #: timed from the actual send, so a loop starved of CPU would hide its delay there
    start_lag: StartLag = field(default_factory=lambda: StartLag())
    #: visits that waited for the same person's visit before them to end (in the start lag)
    waited_for_person: int = 0
    #: the start lag of the visits that did not wait so: how far the loop itself fell behind
    loop_lag: StartLag = field(default_factory=lambda: StartLag())
    #: sign-ins answered again, OK, during the run: redelivered to a worker in a rebalance
    #: (counted, not an error; a repeat with an error counts as unexpected)
    sign_ins_answered_again: int = 0
    #: ended early, by `stop_requested` (a Ctrl-C): visits not yet arrived are not in it,
    #: and requests still awaited were in flight
    interrupted: bool = False
    #: how many of the bad requests were sent: all of them, unless interrupted
    bad_sent: int = 0
    #: the msgids the unexpected answers named (the first UNEXPECTED_KEPT), to set beside
    #: the unanswered requests' trail
    unexpected_msgids: list[str] = field(default_factory=list)
    #: the period's closing reconciliation (3201/3202/3203) was exchanged after the visits
    period_closed: bool = False
    #: jumps in the offsets of the answers and dead letters read, fetched again until closed
    #: (streams/offset_gaps.py), and those never closed: "topic[partition]@offset" of the
    #: first missing offset of each, stepped over (what was there was never read)
    read_jumps: int = 0
    read_holes: list[str] = field(default_factory=list)
    #: answers that came after the hospital had given up their visit (a time-out), up to
    #: as many as each request was sent: counted, not errors of their own (the time-out is)
    late_answers: int = 0

    @property
    def days_reconciled(self) -> list[DayReconciliation]:
        return list(self.daily.days.values()) if self.daily else []

    @property
    def sent(self) -> int:
        return sum(e.sends for e in self.exchanges.values())

    @property
    def answered(self) -> int:
        return sum(len(e.answers) for e in self.exchanges.values())


#: Where a run hands each finished visit and its exchanges when it keeps none of them.
Sink = Callable[[VisitSession, list[Exchange]], None]
#: `(finished, dropped)`: how many more visits finished, and how many were dropped unstarted
#: (`HospitalFleet.run`'s `max_in_flight`), since the last call
OnProgress = Callable[[int, int], None]


def _session_of(visit: Visit | None) -> VisitSession | None:
    return VisitSession(visit) if visit is not None else None


#: Seconds the sign-in waits for the other workers once one of another world than the visits'
#: has answered: long enough for every worker's first answers, short of the whole time-out.
WORLDS_GRACE_S = 5.0


class HospitalFleet:
    """All simulated hospitals behind one producer and one response consumer."""

    def __init__(self, bootstrap: str, answer_timeout_s: float = 30.0,
                 client_config: dict[str, Any] | None = None,
                 signing_secret: bytes | None = None, idempotent: bool = False,
                 linger_ms: int = LINGER_MS, fetch_wait_ms: int = FETCH_WAIT_MS) -> None:
        """`client_config`: extra kafka-python settings, e.g. `security_protocol`,
        `sasl_mechanism`, `sasl_plain_username`, `ssl_cafile`, for a secured cluster.
        `signing_secret`: each hospital signs what it sends with its key derived from it
        (messages/signing.py); default HUIMIN_SIGNING_SECRET or the development secret."""
        extra = client_config or {}
        self.signer = Signer(signing_secret or configured_secret()[0])
        self.bootstrap = bootstrap
        self.answer_timeout_s = answer_timeout_s
        self.consumer = response_consumer(
            bootstrap, **{"fetch_max_wait_ms": fetch_wait_ms, "client_id": ANSWERS_CLIENT,
                          **extra})
        self.dead_letter_consumer = response_consumer(
            bootstrap, topics.DEAD_LETTERS,
            **{"fetch_max_wait_ms": max(fetch_wait_ms, DEAD_LETTER_FETCH_WAIT_MS),
               "client_id": DEAD_LETTERS_CLIENT, **extra})
        # both tailed topics are written by every worker: see streams/offset_gaps.py
        counted = metrics.READ_GAPS.labels
        self.answer_reader = GapGuard(self.consumer, on_gap=lambda o: counted(o).inc())
        self.dead_letter_reader = GapGuard(self.dead_letter_consumer,
                                           on_gap=lambda o: counted(o).inc())
        self.producer = producer_for(bootstrap, idempotent, linger_ms,
                                     **{"client_id": REQUESTS_CLIENT, **extra})
        self.undelivered = Undelivered()
        #: the sign-ins' msgids: a sign-in redelivered to a worker (a rebalance as the
        #: platform starts) is answered again after `sign_in` has returned, which is no
        #: error if the answer is OK (`HospitalRunResult.sign_ins_answered_again`)
        self.sign_in_msgids: set[str] = set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Give the producer `timeout_s` to send what it holds (0: give it up at once, as an
        interrupt that unwinds the run wants: the requests it still holds are then not
        warned of, as failures, one by one)."""
        self.undelivered.given_up = timeout_s == 0
        try:
            self.producer.close(timeout=timeout_s)
        except KafkaTimeoutError:  # a cluster gone: each request unsent fails on its own
            if not self.undelivered.given_up:
                log.warning("the hospitals' producer closed with requests still unsent")
            # kafka-python's close stops at its flush's time-out, its network thread left
            # running and the close tried again at exit: closed here as it would have gone on
            sender = getattr(self.producer, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(1.0)  # it fails the batches it held: counted before the sum
            self.producer._closed = True
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
        while True:
            try:
                self.producer.flush(timeout=max(0.0, min(FLUSH_SLICE_S,
                                                         deadline - time.monotonic())))
                return
            except KafkaTimeoutError:
                if time.monotonic() >= deadline or stop_requested():
                    break
        log.warning("requests were still unsent to %s when the hospitals stopped waiting",
                    topics.HOSP_REQUESTS)

    def _send(self, key: str | bytes | None, value: bytes, sender: str = "",
              signing: str = "valid") -> int:
        """Put one request on the wire, signed by `sender` (or, for a bad request, unsigned
        or signed with a key that is not the sender's)."""
        raw_key = key.encode() if isinstance(key, str) else key
        headers = self.signer.headers_as(signing, sender, raw_key, value)
        sent = time.time_ns()
        try:
            self.producer.send(topics.HOSP_REQUESTS, key=raw_key, value=value, headers=headers
                               ).add_errback(self.undelivered)
        except MessageSizeTooLargeError as exc:  # raised at once, before any delivery
            log.warning("a request of %d bytes is over the %d the hospitals' producer may "
                        "send: not sent (a fee upload of that many items?)", len(value),
                        self.producer.config["max_request_size"])
            self.undelivered(exc)  # unanswered, it times out: counted, not a crash
        return sent

    def _poll(self, timeout_ms: int, worlds: set[str] | None = None) -> list[dict[str, Any]]:
        """The answers that arrive within `timeout_ms`; `worlds` collects the world of each
        that names one (a sign-in's)."""
        out = []
        for rec in self.answer_reader.poll(timeout_ms, max_records=2000):
            try:
                out.append(decode(rec.value))
            except MalformedMessage as e:  # the platform's answers always decode: say so
                log.warning("an answer on %s[%d]@%d does not decode (%s); skipped", rec.topic,
                            rec.partition, rec.offset, type(e).__name__)
                continue
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
                timeout_s: float = 120.0, world: str | None = None) -> float:
        """9001 for every hospital; returns seconds until all were answered (the platform is
        up). Raises PlatformSilent if the platform does not answer, and
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
            events: list[tuple[float, Callable[[], None]]] | None = None,
            sink: Sink | None = None,
            max_in_flight: int | None = None,
            stop_requested: Callable[[], bool] = lambda: False) -> HospitalRunResult:
        """Carry out `visits`, visit k arriving `arrivals[k]` seconds after the start (open
        loop), with the `bad` requests spread among them; `events` are (seconds, action) to
        run on the way (e.g. killing a worker). Return everything that was seen.

        `sink`: hand each visit, with its exchanges, to `sink` once it is over and every
        answer it awaits has come (or the hospital gave up waiting), and forget it; the
        result then holds no sessions or exchanges. A long run's memory no longer grows with
        its visits (`huimin bench`); `visits` can then be a generator, read as they arrive.

        `max_in_flight`: a visit that arrives while this many are under way is dropped, not
        started, and counted (`dropped`; `on_progress` tells it apart), as a load generator's
        arrival-rate executor does once its budget is spent: far past a platform's capacity,
        an uncapped open loop only grows a backlog that takes minutes to drain and holds the
        broker's memory, and tells no more than the first seconds of it did.

        `stop_requested`: asked on every pass of the loop (every ≤ 50 ms); once it says so
        the run ends there with what was seen so far (`interrupted`), each request whole."""
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        pending_events = sorted(events or [], key=lambda e: e[0])
        bad = bad or []
        upcoming = iter(visits)
        next_session: VisitSession | None = _session_of(next(upcoming, None))
        sessions: list[VisitSession] = []  # every visit arrived, unless there is a sink
        arrived = 0  # visits whose arrival time has come, dropped ones included
        dropped = 0
        over: dict[VisitSession, None] = {}  # finished visits a sink waits on for answers
        books = HospitalBooks()
        daily = DailyReconciler(books)
        open_days: dict[str, int] = defaultdict(int)  # begin day -> visits arrived, unfinished
        exchanges: dict[str, Exchange] = {}
        owner: dict[str, VisitSession] = {}
        busy: set[str] = set()
        #: visits of a person with one under way, with their scheduled arrival: a person is
        #: at one hospital at a time, and the platform keeps their row in order
        waiting: dict[str, deque[tuple[VisitSession, float]]] = defaultdict(deque)
        waited = 0  # visits that waited so, their wait in the start lag
        bad_answers: dict[str, list[dict[str, Any]]] = {b.msgid: [] for b in bad if b.msgid}
        dead_letters: list[DeadLetterRecord] = []
        timed_out: list[str] = []
        last_timeout_at = -math.inf  # monotonic
        awaited_since: dict[str, int] = {}  # msgid -> send time, for awaited requests
        unexpected = answered_again = late = 0
        #: msgid -> answers still owed, of requests handed to the sink when their visit was
        #: given up (a time-out): those answers are late; copies beyond them, unexpected
        given_up_on: dict[str, int] = {}
        unexpected_msgids: list[str] = []
        finished = 0
        period = arrivals[-1] if arrivals else 0.0
        bad_times = [(j + 0.5) / len(bad) * period for j in range(len(bad))]
        next_bad = 0
        start_lag, loop_lag = StartLag(), StartLag()
        t0 = time.monotonic()
        last_news = t0
        next_dead_letter_poll = next_timeout_scan = t0

        def pump(session: VisitSession) -> None:
            nonlocal finished
            requests = session.advance()
            for n, req in enumerate(requests):
                ex = exchanges.get(req["msgid"])
                if ex is not None and owner[req["msgid"]] is not session:
                    not_sent(session, requests[n:], owner[req["msgid"]])
                    break
                daily.saw(req)
                if ex is None:
                    ex = exchanges[req["msgid"]] = Exchange(req["infno"], req["msgid"])
                    owner[req["msgid"]] = session
                sent = self._send(session.visit.certno, encode(req), req["fixmedins_code"])
                metrics.SENT.labels(req["infno"]).inc()
                metrics.IN_FLIGHT.inc()
                ex.sends += 1
                ex.sent_ns = ex.sent_ns or sent
            for msgid in session.awaiting:
                awaited_since.setdefault(msgid, exchanges[msgid].sent_ns)
            if session.done:
                finished += 1
                metrics.VISITS.inc()
                open_days[session.visit.begntime[:10]] -= 1
                books.record(session)
                busy.discard(session.visit.certno)
                if sink is not None:
                    over[session] = None
                    release(session)
                if on_progress:
                    on_progress(1, 0)
                queue = waiting.get(session.visit.certno)
                if queue:
                    start_visit(*queue.popleft(), waited=True)

        def not_sent(session: VisitSession, requests: list[dict[str, Any]],
                     other: VisitSession) -> None:
            """A request with another visit's msgid (a hand-made log) is not sent, and its
            visit ends: the answers would go to the other visit, and this one would wait for
            them for ever."""
            log.warning("visit %d's request has visit %d's msgid: not sent, the visit ended",
                        session.visit.visit_no, other.visit.visit_no)
            unsent = {r["msgid"] for r in requests if owner.get(r["msgid"]) is not session}
            session.sent = [(m, i) for m, i in session.sent if m not in unsent]
            for msgid in unsent:
                session.awaiting.pop(msgid, None)
                session.lost.discard(msgid)
            session.failed = {"infcode": -1, "inf_refmsgid": requests[0]["msgid"],
                              "err_code": REPEATED_MSGID, "output": {},
                              "err_msg": "another visit's msgid: not sent"}

        def start_visit(session: VisitSession, scheduled: float, waited: bool = False) -> None:
            """Taken up now: how late after its arrival counts in the start lag, a wait for
            the person's previous visit included (a clock read per visit: a burst after a
            stall shows whole), and in the loop's lag if it did not wait so."""
            lag_ms = (time.monotonic() - t0 - scheduled) * 1000
            start_lag.add(lag_ms)
            if not waited:
                loop_lag.add(lag_ms)
            session.start_lag_ms = 0.0 if waited else lag_ms  # the bench's latency adds it
            busy.add(session.visit.certno)
            pump(session)

        def release(session: VisitSession, gave_up: bool = False) -> None:
            """A finished visit goes to the sink once each of its requests was answered as
            many times as it was sent, or once the hospital `gave_up` waiting (a time-out: the
            answers still owed are then counted as late, any copy beyond them as unexpected),
            or at the end of the run."""
            if sink is None or session not in over:
                return
            mine = [exchanges[m] for m, _ in session.sent]
            if not gave_up and any(len(e.answers) < e.sends for e in mine):
                return
            del over[session]
            for ex in mine:
                del exchanges[ex.msgid]
                del owner[ex.msgid]
                awaited_since.pop(ex.msgid, None)
            sink(session, mine)

        def give_up(mine: Iterable[Exchange]) -> None:
            """Their visit timed out: their sends still unanswered are no longer awaited and
            leave `IN_FLIGHT` (a late answer does not take them off again)."""
            for ex in mine:
                if not ex.given_up:
                    metrics.IN_FLIGHT.dec(unanswered(ex))
                    ex.given_up = True
                    if sink is not None and unanswered(ex):
                        given_up_on[ex.msgid] = unanswered(ex)

        def close_days() -> list[tuple[str, dict[str, Any]]]:
            """Days every visit begun by then has finished, before the clock's day (all of
            them once every visit arrived), in order."""
            clock = next_session.visit.begntime[:10] if next_session is not None else "9999"
            oldest_open = min((d for d, n in open_days.items() if n > 0), default="9999")
            out = []
            for day in daily.open_days:
                if day >= clock or day >= oldest_open:
                    break
                out += daily.close(day)
            return out

        def outstanding() -> bool:
            return daily.busy or any(len(e.answers) < e.sends for e in exchanges.values()) or \
                any(not a for a in bad_answers.values()) or \
                len(dead_letters) < sum(b.expect == "dead-letter" for b in bad)

        while not (interrupted := stop_requested()):
            now = time.monotonic() - t0
            while next_session is not None and arrivals[arrived] <= now:
                scheduled = arrivals[arrived]
                session, arrived = next_session, arrived + 1
                next_session = _session_of(next(upcoming, None))
                if max_in_flight is not None and arrived - 1 - dropped - finished >= \
                        max_in_flight:
                    dropped += 1
                    if on_progress:
                        on_progress(0, 1)
                    continue
                if sink is None:
                    sessions.append(session)
                open_days[session.visit.begntime[:10]] += 1
                if session.visit.certno in busy:
                    waiting[session.visit.certno].append((session, scheduled))
                    waited += 1
                else:
                    start_visit(session, scheduled)
            while pending_events and pending_events[0][0] <= now:
                pending_events.pop(0)[1]()
                last_news = time.monotonic()
            while next_bad < len(bad) and bad_times[next_bad] <= now:
                b = bad[next_bad]
                self._send(b.key, b.value, b.sender, b.signing)
                next_bad += 1
            for key, req in close_days() + daily.due(time.monotonic()):
                self._send(key, encode(req), req["fixmedins_code"])
                last_news = time.monotonic()  # the drain waits for what was just sent
            all_sent = next_session is None and next_bad == len(bad) and not pending_events
            if all_sent and finished + dropped == arrived and not outstanding():
                break
            if all_sent and finished + dropped == arrived and \
                    time.monotonic() - last_news > drain_s:
                break  # what is still missing is reported, not waited for forever
            soonest = min(arrivals[arrived] if next_session is not None else 1e9,
                          bad_times[next_bad] if next_bad < len(bad) else 1e9)
            wait_ms = max(1, min(50, int((soonest - now) * 1000)))
            messages = self._poll(wait_ms)
            letters: list[DeadLetterRecord] = []
            if time.monotonic() >= next_dead_letter_poll:
                letters = self._poll_dead_letters()
                next_dead_letter_poll = time.monotonic() + DEAD_LETTER_POLL_EVERY_S
            if messages or letters:
                last_news = time.monotonic()
            dead_letters.extend(letters)
            for msg in messages:
                ans = msg.get("ans") or {}
                msgid = ans.get("inf_refmsgid", "")
                if msgid in bad_answers:
                    bad_answers[msgid].append(ans)
                    continue
                if daily.owns(msgid):
                    for key, req in daily.on_answer(ans, time.monotonic()):
                        self._send(key, encode(req), req["fixmedins_code"])
                    continue
                ex, session = exchanges.get(msgid), owner.get(msgid)
                if ex is None or session is None:
                    if msgid in self.sign_in_msgids and ans.get("infcode") == 0:
                        answered_again += 1
                    elif msgid in given_up_on:
                        late += 1
                        given_up_on[msgid] -= 1
                        if not given_up_on[msgid]:
                            del given_up_on[msgid]
                    else:
                        unexpected += 1
                        if len(unexpected_msgids) < UNEXPECTED_KEPT:
                            unexpected_msgids.append(str(msgid))
                    continue
                if len(ex.answers) < ex.sends and not ex.given_up:
                    metrics.IN_FLIGHT.dec()
                elif ex.given_up and len(ex.answers) < ex.sends:
                    late += 1
                if not ex.answers:
                    recv = time.time_ns()
                    ex.latency_ms = (recv - ex.sent_ns) / 1e6
                    ex.route = msg.get("ctx", {}).get("route", "")
                    metrics.ROUND_TRIP.labels(route_label(ex.route), ex.infno).observe(
                        ex.latency_ms / 1000)
                    ex.trace = [[HOSP_SEND, ex.sent_ns], *msg.get("trace", []),
                                [HOSP_RECV, recv]]
                ex.answers.append(ans)
                awaited_since.pop(msgid, None)
                was_done = session.done
                session.on_answer(ans)
                if not was_done:
                    pump(session)
                else:
                    release(session)  # a late answer to a duplicate
            if time.monotonic() < next_timeout_scan:
                continue
            next_timeout_scan = time.monotonic() + TIMEOUT_SCAN_EVERY_S
            deadline = time.time_ns() - int(self.answer_timeout_s * 1e9)
            for msgid in [m for m, t in awaited_since.items() if t < deadline]:
                del awaited_since[msgid]
                session = owner[msgid]
                if session.done:
                    continue
                if time.monotonic() - last_timeout_at > TIMEOUTS_SAID_AFTER_QUIET_S:
                    log.warning("no answer to %s within %.0f s: its visit ended unanswered at "
                                "the counter (later time-outs are counted in %s)", msgid,
                                self.answer_timeout_s, "huimin_hospital_timeouts_total")
                last_timeout_at = time.monotonic()
                timed_out.append(msgid)
                metrics.TIMEOUTS.inc()
                session.failed = {"infcode": -1, "inf_refmsgid": msgid, "err_code": TIMED_OUT,
                                  "err_msg": "no answer within the timeout", "output": {}}
                last_news = time.monotonic()  # a visit ended: its day may close now
                pump(session)
                give_up([exchanges[m] for m, _ in session.sent])
                release(session, gave_up=True)
        wall_s = time.monotonic() - t0
        # stopped: what is still unsent is in flight either way, and the answers so far are
        # waiting to be written (a stalled broker would hold them for the whole time-out)
        if interrupted:
            self._flush(INTERRUPTED_FLUSH_S)
        else:
            self._flush(stop_requested=stop_requested)
        interrupted = interrupted or stop_requested()  # asked to stop while flushing
        # the run awaits nothing more: what is still unanswered leaves `IN_FLIGHT`
        metrics.IN_FLIGHT.dec(sum(unanswered(e) for e in exchanges.values() if not e.given_up))
        for b in bad[next_bad:]:  # not sent (interrupted): no answer to await
            bad_answers.pop(b.msgid, None)
        if sink is not None:  # visits unfinished or short of answers: the sink counts them
            for session in dict.fromkeys(owner.values()):
                sink(session, [exchanges[m] for m, _ in session.sent])
            exchanges.clear()
        return HospitalRunResult(sessions, exchanges, bad_answers, dead_letters, timed_out,
                                 unexpected, wall_s, books, daily, dropped,
                                 start_lag, waited, loop_lag, answered_again, interrupted,
                                 next_bad, unexpected_msgids=unexpected_msgids,
                                 read_jumps=(gaps := self._read_gaps()).closed,
                                 read_holes=gaps.holes_at, late_answers=late)
