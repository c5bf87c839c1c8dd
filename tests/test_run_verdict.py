"""The oracle comparison that decides `huimin run`'s exit status must catch any difference."""

from __future__ import annotations

import copy

from huimin.run import compare
from messages.codes import Infno
from settlement.oracle import Oracle
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world


def _sessions(seed: int = 3, visits: int = 40):
    world = build_world(WorldSpec(seed=seed, persons=200))
    log = list(generate_visits(world, VisitSpec(visits=visits)))
    return list(Oracle(world.ref).settle_log(log))


def test_identical_sessions_compare_equal():
    expected = _sessions()
    cmp = compare(_sessions(), expected)
    assert cmp.ok
    assert cmp.settlements_equal == cmp.settlements_expected == 40
    assert cmp.answers_equal == cmp.answers_compared == 160


def test_one_fen_of_difference_in_a_settlement_fails_and_names_the_field():
    expected = _sessions()
    streamed = _sessions()
    answer = copy.deepcopy(streamed[7].answers[Infno.OUTPATIENT_SETTLE])
    answer["output"]["setlinfo"]["psn_cash_pay"] += 1
    streamed[7].answers[Infno.OUTPATIENT_SETTLE] = answer
    cmp = compare(streamed, expected)
    assert not cmp.ok
    assert cmp.settlements_equal == 39
    assert len(cmp.mismatches) == 1
    assert "visit 7 2207" in cmp.mismatches[0]
    assert "setlinfo.psn_cash_pay" in cmp.mismatches[0]


def test_a_missing_answer_fails():
    expected = _sessions()
    streamed = _sessions()
    del streamed[3].answers[Infno.FEE_UPLOAD]
    cmp = compare(streamed, expected)
    assert not cmp.ok
    assert any("visit 3 2204: no answer" in m for m in cmp.mismatches)
