"""The hospitals' loop (`HospitalFleet` and its runs, simulators/visit_run.py) in process,
without Kafka: what stands for the broker is the test's to say. Real end-to-end runs:
tests/test_e2e_*.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from messages.codec import MalformedMessage, decode
from settlement.oracle import Oracle
from simulators.hospital import HospitalFleet, Undelivered
from simulators.world import World
from streams.offset_gaps import GapCounts


class BrokerlessFleet(HospitalFleet):
    """A fleet with no broker and no Kafka clients: nothing is answered (subclasses say
    otherwise), no dead letters, no read gaps, nothing to flush."""

    def __init__(self, answer_timeout_s: float) -> None:
        self.answer_timeout_s = answer_timeout_s
        self.undelivered = Undelivered()
        self.sign_in_msgids: set[str] = set()

    def _send(self, key: str | bytes | None, value: bytes, sender: str = "",
              signing: str = "valid") -> int:
        return time.time_ns()

    def _poll(self, timeout_ms: int, worlds: set[str] | None = None) -> list[dict[str, Any]]:
        time.sleep(timeout_ms / 1000)
        return []

    def _poll_dead_letters(self) -> list[Any]:
        return []

    def _read_gaps(self) -> GapCounts:
        return GapCounts()

    def _flush(self, timeout_s: float | None = None,
               stop_requested: Callable[[], bool] = lambda: False) -> None:
        pass


class OracleFleet(BrokerlessFleet):
    """A fleet whose broker is the oracle: each visit request's answer is given on the next
    poll once `answering` is set (until then held: a worker that stopped answering), with the
    `ctx` `ctx_of` gives the n-th request. Anything else (bad requests, daily
    reconciliations) is taken and left unanswered."""

    def __init__(self, world: World, answer_timeout_s: float = 30.0,
                 ctx_of: Callable[[int], dict[str, Any]] = lambda n: {"route": "local"},
                 answering: bool = True) -> None:
        super().__init__(answer_timeout_s)
        self.oracle = Oracle(world.ref)
        self.ctx_of = ctx_of
        self.answering = answering
        self.held: list[dict[str, Any]] = []
        self.sent = 0  # requests of visits
        self.delivered = 0  # answers handed to the hospitals
        self.persons: set[str] = set()  # whose visit requests were sent

    def _send(self, key: str | bytes | None, value: bytes, sender: str = "",
              signing: str = "valid") -> int:
        try:
            req = decode(value)
        except MalformedMessage:
            return 0
        if isinstance(key, str) and req.get("infno") not in ("3201", "3202"):
            answer = self.oracle.submit(key, req)
            if answer is not None:
                self.held.append({"ans": answer, "ctx": self.ctx_of(self.sent)})
            self.sent += 1
            self.persons.add(key)
        return time.time_ns()

    def _poll(self, timeout_ms: int, worlds: set[str] | None = None) -> list[dict[str, Any]]:
        time.sleep(0.001)
        if not self.answering:
            return []
        out, self.held = self.held, []
        self.delivered += len(out)
        return out
