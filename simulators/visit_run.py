"""A run of visits carried out by the hospitals over their fleet's Kafka connection
(`VisitRun`; `HospitalFleet.run` starts one), with the bad requests spread among them, the
daily reconciliations and time-outs, and everything seen kept or handed to a sink.

Visits arrive open-loop at a fixed rate (independent of answers, so a slow platform shows up
as latency, not as a politely reduced load). Within a visit each step waits for the answer to
the previous one. A person is in one place at a time: a visit whose patient is still busy
waits for the earlier visit to finish, which keeps each person's order equal to the log's.
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_left
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from messages.codec import encode
from messages.codes import TIMED_OUT
from messages.platform import route_label
from messages.trace import HOSP_RECV, HOSP_SEND
from messages.visitlog import Visit, VisitSession
from simulators import hospital_metrics as metrics
from simulators.bad_messages import BadMessage
from simulators.cluster_watch import lost_reason
from simulators.reconciliation import DailyReconciler, DayReconciliation, HospitalBooks

if TYPE_CHECKING:
    from simulators.cluster_watch import ClusterWatch
    from simulators.hospital import DeadLetterRecord, HospitalFleet

log = logging.getLogger("huimin.hospitals")

#: How often a run looks at the dead-letter topic. Each look is a pass of kafka-python's network
#: loop (~5 % of the hospitals' CPU when done on every pass of the run's own loop); a dead letter
#: is not timed, so seeing it up to this much later costs nothing.
DEAD_LETTER_POLL_EVERY_S = 0.1
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
    timed_out: bool = False  # the awaited request whose time-out gave its visit up


def unanswered(ex: Exchange) -> int:
    """Sends of `ex` not answered yet."""
    return max(0, ex.sends - len(ex.answers))


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
    #: ended early, by `stop_requested` (a Ctrl-C) or a cluster lost: visits not yet
    #: arrived are not in it, and requests still awaited were in flight
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
    #: why the run ended early on a cluster lost: it refused every connection while the
    #: visits waited in silence (simulators/cluster_watch.py); None otherwise
    cluster_lost: str | None = None

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
#: Told `(msgid, message)` of each answer owed to a visit given up after the sink took it.
LateAnswer = Callable[[str, dict[str, Any]], None]


def note_first_answer(ex: Exchange, msg: dict[str, Any]) -> None:
    """The first answer to `ex` came in `msg`: its round trip, route and hops."""
    recv = time.time_ns()
    ex.latency_ms = (recv - ex.sent_ns) / 1e6
    ex.route = msg.get("ctx", {}).get("route", "")
    metrics.ROUND_TRIP.labels(route_label(ex.route), ex.infno).observe(ex.latency_ms / 1000)
    ex.trace = [[HOSP_SEND, ex.sent_ns], *msg.get("trace", []), [HOSP_RECV, recv]]


#: `(finished, dropped)`: how many more visits finished, and how many were dropped unstarted
#: (`HospitalFleet.run`'s `max_in_flight`), since the last call
OnProgress = Callable[[int, int], None]


def _session_of(visit: Visit | None) -> VisitSession | None:
    return VisitSession(visit) if visit is not None else None


class VisitRun:
    """One run's visits and what came of them (`HospitalFleet.run` says what each setting
    does). Its loop, `carry_out`, takes up the visits due, the events and bad requests due,
    the reconciliations due, then what the broker has for the hospitals, and, every
    TIMEOUT_SCAN_EVERY_S, the answers over time."""

    def __init__(self, fleet: HospitalFleet, visits: Iterable[Visit], arrivals: Sequence[float],
                 bad: list[BadMessage], on_progress: OnProgress | None, drain_s: float,
                 events: list[tuple[float, Callable[[], object]]], sink: Sink | None,
                 max_in_flight: int | None, stop_requested: Callable[[], bool],
                 watch: ClusterWatch | None = None, linger_s: float = 0.0,
                 late: LateAnswer | None = None) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.fleet, self.arrivals, self.bad = fleet, arrivals, bad
        self.on_progress, self.drain_s, self.sink = on_progress, drain_s, sink
        self.max_in_flight, self.stop_requested = max_in_flight, stop_requested
        self.watch = watch
        self.cluster_lost: str | None = None
        self.pending_events = sorted(events, key=lambda e: e[0])
        self.upcoming = iter(visits)
        self.next_session: VisitSession | None = _session_of(next(self.upcoming, None))
        self.sessions: list[VisitSession] = []  # every visit arrived, unless there is a sink
        self.arrived = 0  # visits whose arrival time has come, dropped ones included
        self.dropped = 0
        #: finished visits a sink waits on for answers, with the time they finished
        #: (monotonic), oldest first
        self.over: dict[VisitSession, float] = {}
        #: finished visits with every answer, kept `linger_s` before the sink takes them, with
        #: the time they were complete (monotonic), oldest first
        self.linger_s, self.late_answer = linger_s, late
        self.lingering: dict[VisitSession, float] = {}
        self.books = HospitalBooks()
        self.daily = DailyReconciler(self.books)
        #: begin day -> visits arrived, unfinished
        self.open_days: dict[str, int] = defaultdict(int)
        #: finished visits whose day stays open until the answers their HIS lost (`~`) have
        #: come, or the answer time-out after they finished, with when they finished: the
        #: HIS sees none of them, but what they did is then on its way to the clearing. A
        #: day closed at once after a lost cancellation read 平 against a platform that had
        #: not yet undone the settlement, and was never reconciled again (a review)
        self.lost_owed: dict[VisitSession, float] = {}
        self.exchanges: dict[str, Exchange] = {}
        self.owner: dict[str, VisitSession] = {}
        self.busy: set[str] = set()
        #: visits of a person with one under way, with their scheduled arrival: a person is
        #: at one hospital at a time, and the platform keeps their row in order
        self.waiting: dict[str, deque[tuple[VisitSession, float]]] = defaultdict(deque)
        self.waited = 0  # visits that waited so, their wait in the start lag
        self.bad_answers: dict[str, list[dict[str, Any]]] = {b.msgid: [] for b in bad
                                                              if b.msgid}
        self.dead_letters: list[DeadLetterRecord] = []
        self.timed_out: list[str] = []
        self.last_timeout_at = -math.inf  # monotonic
        self.awaited_since: dict[str, int] = {}  # msgid -> send time, for awaited requests
        self.unexpected = self.answered_again = self.late = 0
        #: msgid -> answers still owed, of requests handed to the sink when their visit was
        #: given up (a time-out): those answers are late; copies beyond them, unexpected
        self.given_up_on: dict[str, int] = {}
        self.unexpected_msgids: list[str] = []
        self.finished = 0
        period = arrivals[-1] if arrivals else 0.0
        self.bad_times = [(j + 0.5) / len(bad) * period for j in range(len(bad))]
        self.next_bad = 0
        self.start_lag, self.loop_lag = StartLag(), StartLag()
        self.t0 = time.monotonic()
        self.last_news = self.t0
        self.next_dead_letter_poll = self.next_timeout_scan = self.t0

    def carry_out(self) -> HospitalRunResult:
        while not (interrupted := self.stop_requested()):
            now = time.monotonic() - self.t0
            self._take_up_arrivals(now)
            while self.pending_events and self.pending_events[0][0] <= now:
                self.pending_events.pop(0)[1]()
                self.last_news = time.monotonic()
            while self.next_bad < len(self.bad) and self.bad_times[self.next_bad] <= now:
                b = self.bad[self.next_bad]
                self.fleet._send(b.key, b.value, b.sender, b.signing)
                self.next_bad += 1
            for key, req in self._close_days() + self.daily.due(time.monotonic()):
                self.fleet._send(key, encode(req), req["fixmedins_code"])
                self.last_news = time.monotonic()  # the drain waits for what was just sent
            all_sent = self.next_session is None and self.next_bad == len(self.bad) \
                and not self.pending_events
            if all_sent and self.finished + self.dropped == self.arrived and (
                    not self._outstanding() or time.monotonic() - self.last_news > self.drain_s):
                break  # what is still missing after the drain is reported, not waited for
            self._read(now)
            self._hand_over_lingered()
            if time.monotonic() >= self.next_timeout_scan:
                self.next_timeout_scan = time.monotonic() + TIMEOUT_SCAN_EVERY_S
                self._time_out()
                if self.watch and (lost := self.watch.lost(bool(self.awaited_since))):
                    log.error("%s: the visits stop here",
                              lost_reason(self.watch.stop_after_s, lost))
                    self.cluster_lost, interrupted = lost, True
                    break
        return self._result(interrupted)

    def _take_up_arrivals(self, now: float) -> None:
        """The visits whose arrival has come: dropped past `max_in_flight`, waiting for the
        person's visit under way, or started."""
        while self.next_session is not None and self.arrivals[self.arrived] <= now:
            scheduled = self.arrivals[self.arrived]
            session, self.arrived = self.next_session, self.arrived + 1
            session.arrival = self.arrived - 1
            self.next_session = _session_of(next(self.upcoming, None))
            if self.max_in_flight is not None and \
                    self.arrived - 1 - self.dropped - self.finished >= self.max_in_flight:
                self.dropped += 1
                if self.on_progress:
                    self.on_progress(0, 1)
                continue
            if self.sink is None:
                self.sessions.append(session)
            self.open_days[session.visit.begntime[:10]] += 1
            if session.visit.certno in self.busy:
                self.waiting[session.visit.certno].append((session, scheduled))
                self.waited += 1
            else:
                self._start_visit(session, scheduled)

    def _read(self, now: float) -> None:
        """What the broker has for the hospitals, waiting for it until the next arrival or
        bad request is due (50 ms at most): answers, and every DEAD_LETTER_POLL_EVERY_S the
        dead letters."""
        soonest = min(self.arrivals[self.arrived] if self.next_session is not None else 1e9,
                      self.bad_times[self.next_bad] if self.next_bad < len(self.bad) else 1e9)
        wait_ms = max(1, min(50, int((soonest - now) * 1000)))
        messages = self.fleet._poll(wait_ms)
        letters: list[DeadLetterRecord] = []
        if time.monotonic() >= self.next_dead_letter_poll:
            letters = self.fleet._poll_dead_letters()
            self.next_dead_letter_poll = time.monotonic() + DEAD_LETTER_POLL_EVERY_S
        if messages or letters:
            self.last_news = time.monotonic()
            if self.watch:
                self.watch.heard()
        self.dead_letters.extend(letters)
        for msg in messages:
            self._on_answer(msg)

    def _on_answer(self, msg: dict[str, Any]) -> None:
        ans = msg.get("ans") or {}
        msgid = ans.get("inf_refmsgid", "")
        if msgid in self.bad_answers:
            self.bad_answers[msgid].append(ans)
            return
        if self.daily.owns(msgid):
            for key, req in self.daily.on_answer(ans, time.monotonic()):
                self.fleet._send(key, encode(req), req["fixmedins_code"])
            return
        if self.daily.answered_before(msgid):
            self.daily.answered_again += 1
            return
        ex, session = self.exchanges.get(msgid), self.owner.get(msgid)
        if ex is None or session is None:
            if msgid in self.fleet.sign_in_msgids and ans.get("infcode") == 0:
                self.answered_again += 1
            elif msgid in self.given_up_on:
                self.late += 1
                self.given_up_on[msgid] -= 1
                if not self.given_up_on[msgid]:
                    del self.given_up_on[msgid]
                if self.late_answer is not None:
                    self.late_answer(msgid, msg)
            else:
                self.unexpected += 1
                if len(self.unexpected_msgids) < UNEXPECTED_KEPT:
                    self.unexpected_msgids.append(str(msgid))
            return
        if len(ex.answers) < ex.sends and not ex.given_up:
            metrics.IN_FLIGHT.dec()
        elif ex.given_up and len(ex.answers) < ex.sends:
            self.late += 1
        if not ex.answers:
            note_first_answer(ex, msg)
        ex.answers.append(ans)
        self.awaited_since.pop(msgid, None)
        was_done = session.done
        session.on_answer(ans)
        if not was_done:
            self._pump(session)
        else:
            self._release(session)  # a late answer to a duplicate

    def _time_out(self) -> None:
        """The awaited answers over the hospitals' time-out: each ends its visit (TIMEOUT)."""
        deadline = time.time_ns() - int(self.fleet.answer_timeout_s * 1e9)
        for msgid in [m for m, t in self.awaited_since.items() if t < deadline]:
            del self.awaited_since[msgid]
            session = self.owner[msgid]
            if session.done:
                continue
            if time.monotonic() - self.last_timeout_at > TIMEOUTS_SAID_AFTER_QUIET_S:
                log.warning("no answer to %s within %g s: its visit ended unanswered at "
                            "the counter (later time-outs are counted in %s)", msgid,
                            self.fleet.answer_timeout_s, "huimin_hospital_timeouts_total")
            self.last_timeout_at = time.monotonic()
            self.timed_out.append(msgid)
            self.exchanges[msgid].timed_out = True
            metrics.TIMEOUTS.inc()
            session.give_up(msgid, {"infcode": -1, "inf_refmsgid": msgid,
                                    "err_code": TIMED_OUT, "output": {},
                                    "err_msg": "no answer within the timeout"})
            self.last_news = time.monotonic()  # a visit ended: its day may close now
            self._pump(session)
            self._give_up([self.exchanges[m] for m, _ in session.sent])
            self._release(session, gave_up=True)

    def _pump(self, session: VisitSession) -> None:
        """Send what the visit may send now; once it is over, book it, and start the
        person's next visit if one waits."""
        requests = session.advance()
        for n, req in enumerate(requests):
            ex = self.exchanges.get(req["msgid"])
            if ex is not None and self.owner[req["msgid"]] is not session:
                self._not_sent(session, requests[n:], self.owner[req["msgid"]])
                break
            self.daily.saw(req, lost=req["msgid"] in session.lost)
            if ex is None:
                ex = self.exchanges[req["msgid"]] = Exchange(req["infno"], req["msgid"])
                self.owner[req["msgid"]] = session
            sent = self.fleet._send(session.visit.certno, encode(req), req["fixmedins_code"])
            metrics.SENT.labels(req["infno"]).inc()
            metrics.IN_FLIGHT.inc()
            ex.sends += 1
            ex.sent_ns = ex.sent_ns or sent
        for msgid in session.awaiting:
            self.awaited_since.setdefault(msgid, self.exchanges[msgid].sent_ns)
        if session.done:
            self.finished += 1
            metrics.VISITS.inc()
            if self._lost_unanswered(session):
                self.lost_owed[session] = time.monotonic()
            else:
                self.open_days[session.visit.begntime[:10]] -= 1
            self.books.record(session)
            self.busy.discard(session.visit.certno)
            if self.sink is not None:
                self.over[session] = time.monotonic()
                self._release(session)
            if self.on_progress:
                self.on_progress(1, 0)
            queue = self.waiting.get(session.visit.certno)
            if queue:
                self._start_visit(*queue.popleft(), waited=True)

    def _not_sent(self, session: VisitSession, requests: list[dict[str, Any]],
                  other: VisitSession) -> None:
        """A request with another visit's msgid (a hand-made log) is not sent, and its visit
        ends: the answers would go to the other visit, and this one would wait for them for
        ever."""
        log.warning("visit %d's request has visit %d's msgid: not sent, the visit ended",
                    session.visit.visit_no, other.visit.visit_no)
        session.end_unsent({r["msgid"] for r in requests
                            if self.owner.get(r["msgid"]) is not session}, requests[0]["msgid"])

    def _start_visit(self, session: VisitSession, scheduled: float,
                     waited: bool = False) -> None:
        """Taken up now: how late after its arrival counts in the start lag, a wait for the
        person's previous visit included (a clock read per visit: a burst after a stall shows
        whole), and in the loop's lag if it did not wait so."""
        lag_ms = (time.monotonic() - self.t0 - scheduled) * 1000
        self.start_lag.add(lag_ms)
        if not waited:
            self.loop_lag.add(lag_ms)
        session.start_lag_ms = 0.0 if waited else lag_ms  # the bench's latency adds it
        self.busy.add(session.visit.certno)
        self._pump(session)

    def _release(self, session: VisitSession, gave_up: bool = False) -> None:
        """A finished visit goes to the sink once each of its requests was answered as many
        times as it was sent, or once the hospital `gave_up` waiting (a time-out: the answers
        still owed are then counted as late, any copy beyond them as unexpected), or at the
        end of the run; `linger_s` after that, so that an answer given again soon (a request
        processed again after a worker's restart) still finds its visit."""
        if self.sink is None or session not in self.over:
            return
        mine = [self.exchanges[m] for m, _ in session.sent]
        if not gave_up and any(len(e.answers) < e.sends for e in mine):
            return
        del self.over[session]
        if self.linger_s > 0:
            self.lingering[session] = time.monotonic()
        else:
            self._hand_over(session)

    def _hand_over_lingered(self) -> None:
        """The lingering visits whose `linger_s` is up go to the sink, and with `linger_s`,
        the finished visits still owed an answer not awaited (one their HIS lost, `~`) the
        answer time-out after they finished: given up, as an awaited one would be, so
        that a result missing one does not hold back those after it."""
        if self.linger_s > 0:
            given_up = time.monotonic() - self.fleet.answer_timeout_s
            while self.over:
                session, since = next(iter(self.over.items()))
                if since > given_up:
                    break
                self._give_up([self.exchanges[m] for m, _ in session.sent])
                self._release(session, gave_up=True)
        deadline = time.monotonic() - self.linger_s
        while self.lingering:
            session, since = next(iter(self.lingering.items()))
            if since > deadline:
                break
            del self.lingering[session]
            self._hand_over(session)

    def _hand_over(self, session: VisitSession) -> None:
        """The sink takes `session` and its exchanges, and the run forgets them: answers to
        them still owed (a visit given up) will be counted late."""
        mine = [self.exchanges.pop(m) for m, _ in session.sent]
        for ex in mine:
            del self.owner[ex.msgid]
            self.awaited_since.pop(ex.msgid, None)
            if ex.given_up and unanswered(ex):
                self.given_up_on[ex.msgid] = unanswered(ex)
        assert self.sink is not None
        self.sink(session, mine)

    def _give_up(self, mine: Iterable[Exchange]) -> None:
        """Their visit timed out: their sends still unanswered are no longer awaited and
        leave `IN_FLIGHT` (a late answer does not take them off again)."""
        for ex in mine:
            if not ex.given_up:
                metrics.IN_FLIGHT.dec(unanswered(ex))
                ex.given_up = True

    def _lost_unanswered(self, session: VisitSession) -> bool:
        """Whether a request of `session` whose answer its HIS loses (`~`) is still owed
        one. (A request given up at the time-out is not waited for again.)"""
        given_up = (session.failed or {}).get("inf_refmsgid")
        return any(m != given_up and (ex := self.exchanges.get(m)) is not None
                   and len(ex.answers) < ex.sends for m in session.lost)

    def _close_days(self) -> list[tuple[str, dict[str, Any]]]:
        """Days every visit begun by then has finished, the answers their HIS lost come
        (`lost_owed`), before the clock's day (all of them once every visit arrived), in
        order."""
        given_up = time.monotonic() - self.fleet.answer_timeout_s
        for session, since in list(self.lost_owed.items()):
            if since <= given_up or not self._lost_unanswered(session):
                del self.lost_owed[session]
                self.open_days[session.visit.begntime[:10]] -= 1
        clock = self.next_session.visit.begntime[:10] if self.next_session is not None \
            else "9999"
        oldest_open = min((d for d, n in self.open_days.items() if n > 0), default="9999")
        out = []
        for day in self.daily.open_days:
            if day >= clock or day >= oldest_open:
                break
            out += self.daily.close(day)
        return out

    def _outstanding(self) -> bool:
        """Whether answers are still awaited: with `linger_s`, those owed to visits given up
        that the sink took too (late, they are still counted)."""
        return self.daily.busy or bool(self.lost_owed) or \
            any(len(e.answers) < e.sends for e in self.exchanges.values()) or \
            (self.linger_s > 0 and bool(self.given_up_on)) or \
            any(not a for a in self.bad_answers.values()) or \
            len(self.dead_letters) < sum(b.expect == "dead-letter" for b in self.bad)

    def _result(self, interrupted: bool) -> HospitalRunResult:
        wall_s = time.monotonic() - self.t0
        # stopped: what is still unsent is in flight either way, and the answers so far are
        # waiting to be written (a stalled broker would hold them for the whole time-out)
        if self.cluster_lost:
            pass  # it takes nothing: what is unsent is given up as the fleet closes
        elif interrupted:
            self.fleet._flush(INTERRUPTED_FLUSH_S)
        else:
            self.fleet._flush(stop_requested=self.stop_requested)
        interrupted = interrupted or self.stop_requested()  # asked to stop while flushing
        # the run awaits nothing more: what is still unanswered leaves `IN_FLIGHT`
        metrics.IN_FLIGHT.dec(sum(unanswered(e) for e in self.exchanges.values()
                                  if not e.given_up))
        for b in self.bad[self.next_bad:]:  # not sent (interrupted): no answer to await
            self.bad_answers.pop(b.msgid, None)
        if self.sink is not None:  # visits unfinished or short of answers: the sink counts them
            # (and those lingering, one that sent nothing among them: its first request had
            # another visit's msgid, and its result was missing: a visit-log author's review)
            for session in dict.fromkeys([*self.owner.values(), *self.over, *self.lingering]):
                self.sink(session, [self.exchanges[m] for m, _ in session.sent])
            self.exchanges.clear()
            for queue in self.waiting.values():  # arrived, waiting for their person's visit
                for session, _ in queue:
                    self.sink(session, [])
        gaps = self.fleet._read_gaps()
        return HospitalRunResult(
            self.sessions, self.exchanges, self.bad_answers, self.dead_letters, self.timed_out,
            self.unexpected, wall_s, self.books, self.daily, self.dropped, self.start_lag,
            self.waited, self.loop_lag, self.answered_again, interrupted, self.next_bad,
            unexpected_msgids=self.unexpected_msgids, read_jumps=gaps.closed,
            read_holes=gaps.holes_at, late_answers=self.late, cluster_lost=self.cluster_lost)
