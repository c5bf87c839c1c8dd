"""A replay's answers written as its visits end, and what its summary needs of them counted on
the way (`ReplayRecorder`, the hospitals' sink): a replay's memory does not grow with its
visits, however long it runs."""

from __future__ import annotations

from array import array
from typing import IO

from huimin.logfiles import record_line
from huimin.report import latency_line, settled_in_ms
from huimin.run_checks import RequestTally
from messages.codes import TIMED_OUT
from messages.visitlog import VisitSession
from simulators.reconciliation import settlements_to_post
from simulators.visit_run import Exchange

#: Seconds a visit is kept after its last answer before it is written: an answer given again
#: within it (a request processed again once a killed worker recovered, ~8–23 s) is counted
#: with its request, and `huimin verify` sees it. ~100 visits/s keep ~30 MB.
LINGER_S = 60.0


class ReplayRecorder:
    """Writes each visit's result to `results` (in the order the visits arrived, as a run
    writes them: two replays of a log give the same file) and its requests' round trips to
    `latencies` (as they end), and counts what the replay's summary says."""

    def __init__(self, results: IO[bytes], latencies: IO[bytes], world: str) -> None:
        self.results, self.latencies, self.world = results, latencies, world
        self.requests = RequestTally()
        self.arrived = self.over = 0  # visits handed on, and of them those that ended
        self.settlements_ms = array("d")  # the round trip of each settlement answered OK
        #: settlements whose answers a HIS lost, to post from 3202: of every visit, and of
        #: the visits that ended (a replay stopped early judges only those)
        self.to_post = self.to_post_of_ended = 0
        self.timed_out: dict[str, str] = {}  # msgid -> infno, of the requests given up on
        self._waiting: dict[int, bytes] = {}  # results of visits after one not yet over
        self._next = 0  # the arrival whose result is written next

    def __call__(self, session: VisitSession, exchanges: list[Exchange]) -> None:
        self.arrived += 1
        self.over += session.done
        posted = settlements_to_post([session])
        self.to_post += posted
        self.to_post_of_ended += posted if session.done else 0
        if session.failed and session.failed.get("err_code") == TIMED_OUT:
            waited = session.failed["inf_refmsgid"]
            self.timed_out.update((ex.msgid, ex.infno) for ex in exchanges if ex.msgid == waited)
        for ex in exchanges:
            self.requests.add(ex)
            self.latencies.write(latency_line(ex))
            if (ms := settled_in_ms(ex)) is not None:
                self.settlements_ms.append(ms)
        self._waiting[session.arrival] = record_line(session, self.world)
        while self._next in self._waiting:
            self.results.write(self._waiting.pop(self._next))
            self._next += 1

    def finish(self) -> None:
        """The results still waiting for a visit before them that never came (one not
        started), in their order."""
        for arrival in sorted(self._waiting):
            self.results.write(self._waiting.pop(arrival))
