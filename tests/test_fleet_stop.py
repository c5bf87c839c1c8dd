"""The hospitals' loop stopped by `stop_requested` (a replay's Ctrl-C), in process: the
platform is the oracle, answering each request as it is sent. What was seen is handed back
whole: the visits arrived, the bad requests sent, and every request sent accounted for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from huimin.run import account, arrivals_at_rate, visit_period
from messages.codec import MalformedMessage, decode
from settlement.oracle import Oracle
from simulators.bad_messages import generate_bad_messages
from simulators.hospital import HospitalFleet, Undelivered
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from streams.offset_gaps import GapCounts

WORLD = build_world(WorldSpec(seed=5, persons=300))
VISITS = list(generate_visits(WORLD, VisitSpec(visits=60, days=3, ehr=False)))


class OracleFleet(HospitalFleet):
    """A fleet whose broker is the oracle: each visit request is answered on the next poll;
    anything else (bad requests, daily reconciliations) is taken and left unanswered."""

    def __init__(self) -> None:  # no broker, no Kafka clients
        self.answer_timeout_s = 30.0
        self.undelivered = Undelivered()
        self.sign_in_msgids: set[str] = set()
        self.oracle = Oracle(WORLD.ref)
        self.answers: list[dict[str, Any]] = []
        self.sent = 0  # requests of visits

    def _send(self, key: str | bytes | None, value: bytes, sender: str = "",
              signing: str = "valid") -> int:
        try:
            req = decode(value)
        except MalformedMessage:
            return 0
        if isinstance(key, str) and req.get("infno") not in ("3201", "3202"):
            self.sent += 1
            answer = self.oracle.submit(key, req)
            if answer is not None:
                self.answers.append({"ans": answer, "ctx": {"route": "local"}})
        return 1

    def _poll(self, timeout_ms: int, worlds: set[str] | None = None) -> list[dict[str, Any]]:
        time.sleep(0.001)
        out, self.answers = self.answers, []
        return out

    def _poll_dead_letters(self) -> list[Any]:
        return []

    def _read_gaps(self) -> GapCounts:
        return GapCounts()

    def _flush(self, timeout_s: float | None = None,
               stop_requested: Callable[[], bool] = lambda: False) -> None:
        pass


def test_a_stopped_run_hands_back_what_it_saw_with_every_request_accounted_for() -> None:
    fleet = OracleFleet()
    bad = generate_bad_messages(WORLD, 1, visit_period(VISITS))
    result = fleet.run(VISITS, arrivals_at_rate(len(VISITS), 50.0), bad, drain_s=0.5,
                       stop_requested=lambda: fleet.sent >= 60)  # some 10 visits in
    assert result.interrupted
    assert 0 < len(result.sessions) < len(VISITS)  # stopped before every visit arrived
    assert [s.visit.visit_no for s in result.sessions] == \
        [v.visit_no for v in VISITS[:len(result.sessions)]]
    assert 0 < result.bad_sent < len(bad)
    assert set(result.bad_answers) <= {b.msgid for b in bad[:result.bad_sent]}
    acc = account(result, bad[:result.bad_sent])
    assert acc.sent == acc.answered_ok + acc.answered_error + acc.dead_lettered + \
        acc.unaccounted
    assert acc.answered_ok > 0 and acc.unaccounted >= result.bad_sent  # bad ones unanswered


def test_a_run_never_asked_to_stop_is_not_interrupted() -> None:
    fleet = OracleFleet()
    result = fleet.run(VISITS[:10], arrivals_at_rate(10, 1000.0), [], drain_s=0.2)
    assert not result.interrupted and len(result.sessions) == 10
    assert all(s.done for s in result.sessions)
