"""Shared inputs for the micro-benchmarks, built once per session from a small seeded world.

One oracle run over `VISITS` visits records every request it answers together with the
encoded treatment-side and insured-side rows as they were just before it, and every input the
policy engine was given (by wrapping `compute_benefit` where the insured side calls it). The
benchmarks then replay real inputs, never hand-made ones.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import settlement.insured
from messages.codes import FEE_UPLOADS, Infno
from messages.visitlog import Visit, VisitSession
from settlement.catalogue import Catalogue, FeeTotals
from settlement.oracle import Oracle
from settlement.policy import Benefit, BenefitContext, InsurancePolicy
from simulators.visits import VisitSpec, generate_visits
from simulators.world import World, WorldSpec, build_world

WORLD_SPEC = WorldSpec(seed=7, persons=400)
VISITS = 200


@dataclass(frozen=True, slots=True)
class Submission:
    """One request as the oracle was given it, with both rows (encoded) as they stood."""

    certno: str
    request: dict[str, Any]
    treatment_row: bytes | None
    person_row: bytes | None
    answer: dict[str, Any] | None
    first: bool  # the first time this msgid was sent (not the copy of a duplicate)


class RecordingOracle(Oracle):
    """The oracle, keeping a `Submission` for each request it answers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.submissions: list[Submission] = []
        self._msgids: set[str] = set()

    def submit(self, certno: str, request: dict[str, Any]) -> dict[str, Any] | None:
        trow, prow = self._treatment_rows.get(certno), self._person_rows.get(certno)
        answer = super().submit(certno, request)
        first = request["msgid"] not in self._msgids
        self._msgids.add(request["msgid"])
        self.submissions.append(Submission(certno, request, trow, prow, answer, first))
        return answer


@dataclass(slots=True)
class Recorded:
    world: World
    visits: list[Visit]
    sessions: list[VisitSession]
    submissions: list[Submission]
    #: (policy, fees, context) -> benefit, for every settlement and pre-settlement computed
    benefits: list[tuple[InsurancePolicy, FeeTotals, BenefitContext, Benefit]] = field(
        default_factory=list)

    def visit_of(self, msgid: str) -> Visit:
        for s in self.sessions:
            if any(m == msgid for m, _ in s.sent):
                return s.visit
        raise KeyError(msgid)

    def typical(self, infno: str, size: Callable[[Submission], Any],
                ok: bool = True) -> Submission:
        """The median (by `size`) first-time submission of `infno`, answered OK if `ok`."""
        subs = [s for s in self.submissions if s.first and s.request["infno"] == infno
                and (not ok or (s.answer is not None and s.answer["infcode"] == 0))]
        assert subs, f"the recorded run has no {infno}"
        return sorted(subs, key=size)[len(subs) // 2]

    def fee_items(self) -> list[tuple[Catalogue, str, int, int]]:
        """Every uploaded fee item with the catalogue of its hospital's province."""
        ref = self.world.ref
        out: list[tuple[Catalogue, str, int, int]] = []
        for s in self.submissions:
            req = s.request
            if s.first and req["infno"] in FEE_UPLOADS:
                catalogue = ref.catalogues[ref.hospitals[req["fixmedins_code"]].province]
                out.extend((catalogue, it["med_list_codg"], it["cnt"], it["pric"])
                           for it in req["input"]["feedetail"])
        return out


@pytest.fixture(scope="session")
def recorded() -> Recorded:
    world = build_world(WORLD_SPEC)
    visits = list(generate_visits(world, VisitSpec(visits=VISITS, days=20)))
    benefits: list[tuple[InsurancePolicy, FeeTotals, BenefitContext, Benefit]] = []
    real = settlement.insured.compute_benefit

    def capturing(policy: InsurancePolicy, fees: FeeTotals, ctx: BenefitContext) -> Benefit:
        benefit = real(policy, fees, ctx)
        benefits.append((policy, fees, ctx, benefit))
        return benefit

    oracle = RecordingOracle(world.ref)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(settlement.insured, "compute_benefit", capturing)
        sessions = list(oracle.settle_log(visits))
    run = Recorded(world, visits, sessions, oracle.submissions, benefits)
    assert any(s.request["infno"] == Infno.OUTPATIENT_SETTLE for s in run.submissions)
    # As a worker does once its world is built (streams/worker.py): the recorded run lives
    # for the whole session, and a full collection walking it would be timed as the rules'.
    gc.freeze()
    return run


def what_it_measures(docstring: str, most: int = 100) -> str:
    """A micro-benchmark's docstring, to its first clause, in at most `most` characters."""
    text = " ".join(docstring.split())
    for stop in (". ", ": ", " ("):
        text = text.split(stop)[0]
    return text if len(text) <= most else text[:most].rsplit(" ", 1)[0] + " …"


def pytest_terminal_summary(terminalreporter: Any, config: Any) -> None:
    """Each micro-benchmark's throughput beside its target, from the mean time per call, as
    `extra_info["per_second"]` is (test_micro.py's `record`): sustained throughput, items ÷ the
    total time, garbage-collector pauses and slow rounds included, the conservative figure
    (the median leaves them out). pytest-benchmark's own table gives time per call only."""
    session = getattr(config, "_benchmarksession", None)
    rows = [b for b in (session.benchmarks if session else [])
            if b.extra_info.get("per_call") and b.stats is not None]
    if not rows:
        return
    from benchmarks import test_micro

    terminalreporter.section("throughput (per call ÷ mean time: sustained, pauses included)")
    for b in rows:
        info = b.extra_info
        per_second = info["per_call"] / b.stats.mean
        target = info.get("target_per_second")
        met = f"  target {target:,.0f}/s: {per_second / target:.1f}×" if target else ""
        terminalreporter.write_line(f"{b.name:<45} {per_second:>12,.0f} {info['unit']}/s{met}")
        test = getattr(test_micro, b.name.split("[")[0], None)
        if test is not None and test.__doc__:
            terminalreporter.write_line(f"    {what_it_measures(test.__doc__)}")
