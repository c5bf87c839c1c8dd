"""A replay's answers written as its visits end, and what its summary needs of them counted on
the way (`ReplayRecorder`, the hospitals' sink): a replay's memory does not grow with its
visits, however long it runs."""

from __future__ import annotations

from array import array
from typing import IO, Any

from huimin.logfiles import record_line
from huimin.report import SettledMoney, latency_line, settled_in_ms
from huimin.run_checks import RequestTally
from messages.visitlog import VisitSession
from simulators.reconciliation import settlements_to_post
from simulators.visit_run import Exchange, note_first_answer, unanswered

#: Seconds a visit is kept after its last awaited answer before it is written: an answer given
#: again within it (a request processed again once a killed worker recovered, ~8–23 s) is
#: counted with its request, and `huimin verify` sees it. At 100 visits/s, ~240 MB.
LINGER_S = 60.0


class ReplayRecorder:
    """Writes each visit's result to `results` (in the order the visits arrived, as a run
    writes them: two replays of a log give the same file) and its requests' round trips to
    `latencies`, and counts what the replay's summary says. The requests of a visit given up
    (a time-out) still owed an answer are counted once those answers came (`late_answer`),
    or at the end (`finish`), as a replay that kept every visit counted them."""

    def __init__(self, results: IO[bytes], latencies: IO[bytes], world: str) -> None:
        self.results, self.latencies, self.world = results, latencies, world
        self.requests = RequestTally()
        self.arrived = self.over = 0  # visits handed on, and of them those that ended
        self.settlements_ms = array("d")  # the round trip of each settlement answered OK
        #: settlements whose answers a HIS lost, to post from 3202: of every visit, and of
        #: the visits that ended (a replay stopped early judges only those)
        self.to_post = self.to_post_of_ended = 0
        self.paid = SettledMoney()  # what the visits' settlements paid, as written
        self.timed_out: dict[str, str] = {}  # msgid -> infno, of the requests timed out
        self._owed: dict[str, tuple[Exchange, VisitSession]] = {}  # still owed answers
        self._owed_visits: dict[VisitSession, int] = {}  # -> its requests still owed
        self._waiting: dict[int, bytes] = {}  # results of visits after one not yet over
        self._next = 0  # the arrival whose result is written next

    def __call__(self, session: VisitSession, exchanges: list[Exchange]) -> None:
        self.arrived += 1
        self.over += session.done
        owed = 0
        for ex in exchanges:
            if ex.timed_out:
                self.timed_out[ex.msgid] = ex.infno
            if ex.given_up and unanswered(ex):
                self._owed[ex.msgid] = ex, session
                owed += 1
            else:
                self._count(ex)
        if owed:
            self._owed_visits[session] = owed
        else:
            self._count_to_post(session)
        # the money as the results file has it (what `verify` and `clearing` read): a
        # settlement answered after its visit was written is not in either
        self.paid.add(session.settlement)
        self._waiting[session.arrival] = record_line(session, self.world)
        while self._next in self._waiting:
            self.results.write(self._waiting.pop(self._next))
            self._next += 1

    def late_answer(self, msgid: str, msg: dict[str, Any]) -> None:
        """An answer owed to a visit given up, come after it was written."""
        if (owed := self._owed.get(msgid)) is None:
            return
        ex, session = owed
        if not ex.answers:
            note_first_answer(ex, msg)
        ex.answers.append(msg.get("ans") or {})
        session.on_answer(msg.get("ans") or {})
        if not unanswered(ex):  # all it was owed: counted now, and forgotten
            del self._owed[msgid]
            self._count(ex)
            self._owed_visits[session] -= 1
            if not self._owed_visits[session]:
                del self._owed_visits[session]
                self._count_to_post(session)

    def finish(self) -> None:
        """The results still waiting for a visit before them that never came (one not
        started), in their order; the requests and visits still owed answers, counted."""
        for arrival in sorted(self._waiting):
            self.results.write(self._waiting.pop(arrival))
        for ex, _ in self._owed.values():
            self._count(ex)
        for session in self._owed_visits:
            self._count_to_post(session)
        self._owed.clear()
        self._owed_visits.clear()

    def _count(self, ex: Exchange) -> None:
        self.requests.add(ex)
        self.latencies.write(latency_line(ex))
        if (ms := settled_in_ms(ex)) is not None:
            self.settlements_ms.append(ms)

    def _count_to_post(self, session: VisitSession) -> None:
        posted = settlements_to_post([session])
        self.to_post += posted
        self.to_post_of_ended += posted if session.done else 0
