"""The checks that decide `huimin run`'s exit status must catch any difference."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest

from huimin.logfiles import read_records, write_records
from huimin.run_checks import (
    account,
    check_bad_requests,
    compare,
    distinct_dead_letters,
    replay_failures,
)
from huimin.verify import ORACLE_CHECK, timed_out_line, verify
from messages.codes import TIMED_OUT, Infno
from messages.dead_letters import CODE_HEADER, REASON_HEADER, SOURCE_HEADER, describe_dead_letter
from settlement.oracle import Oracle
from simulators.bad_messages import generate_bad_messages
from simulators.hospital import DeadLetterRecord
from simulators.visit_run import Exchange, HospitalRunResult
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world, world_tag

WORLD = build_world(WorldSpec(seed=3, persons=200))


def _sessions(visits: int = 40):
    log = list(generate_visits(WORLD, VisitSpec(visits=visits)))
    return list(Oracle(WORLD.ref).settle_log(log))


def _settle_msgid(session) -> str:
    return next(m for m, infno in session.sent if infno == Infno.OUTPATIENT_SETTLE
                and session.answers[m][0]["infcode"] == 0)


def test_identical_sessions_compare_equal():
    expected = _sessions()
    cmp = compare(_sessions(), expected)
    assert cmp.ok
    assert cmp.settlements_equal == cmp.settlements_expected > 30
    assert cmp.answers_equal == cmp.answers_compared >= 4 * 40


def test_one_fen_of_difference_in_a_settlement_fails_and_names_the_field():
    expected = _sessions()
    streamed = _sessions()
    victim = next(s for s in streamed if s.settlement is not None
                  and s.visit.kind == "outpatient")
    msgid = _settle_msgid(victim)
    answer = copy.deepcopy(victim.answers[msgid][0])
    answer["output"]["setlinfo"]["psn_cash_pay"] += 1
    victim.answers[msgid] = [answer]
    cmp = compare(streamed, expected)
    assert not cmp.ok
    assert len(cmp.mismatches) == 1
    assert f"visit {victim.visit.visit_no} 2207" in cmp.mismatches[0]
    assert "setlinfo.psn_cash_pay" in cmp.mismatches[0]


def test_a_missing_or_extra_answer_fails():
    expected = _sessions()
    streamed = _sessions()
    msgid, infno = streamed[3].sent[1]
    streamed[3].answers[msgid] = []
    cmp = compare(streamed, expected)
    assert not cmp.ok
    assert f"visit 3 {infno} {msgid}: 0 answers, expected 1" in cmp.mismatches
    streamed = _sessions()
    msgid, _ = streamed[5].sent[0]
    streamed[5].answers[msgid] = streamed[5].answers[msgid] * 2
    assert not compare(streamed, expected).ok


def test_a_timed_out_visit_is_one_line_and_counted_as_verify_counts_it(tmp_path: Path):
    """A visit the hospital gave up on at its second request: the answer that came too late
    and the requests never sent are not equal, said in one line naming the request waited
    on; and `huimin verify` on the run's files counts and says the same (they disagreed
    before 12-06: the run listed each unsent request and counted the late answer equal)."""
    expected = _sessions()
    streamed = _sessions()
    victim = streamed[4]
    (first, _), (waited, infno) = victim.sent[:2]
    victim.sent = victim.sent[:2]  # the later requests were never sent
    victim.answers = {m: a for m, a in victim.answers.items() if m in (first, waited)}
    victim.failed = {"err_code": TIMED_OUT, "inf_refmsgid": waited}
    cmp = compare(streamed, expected)
    unsent = len(expected[4].sent) - 2
    assert cmp.mismatches == [timed_out_line(4, infno, waited, unsent)]
    assert cmp.timed_out == 1
    assert cmp.answers_compared - cmp.answers_equal == 1 + unsent

    results, answers = tmp_path / "r.jsonl", tmp_path / "e.jsonl"
    write_records(results, streamed, world_tag(WORLD.spec))
    write_records(answers, expected, world_tag(WORLD.spec), expected=True)
    verdict = verify(iter([s.visit for s in expected]), read_records(answers), results, WORLD.ref)
    assert (verdict.answers_compared, verdict.answers_equal, verdict.timed_out) == (
        cmp.answers_compared, cmp.answers_equal, cmp.timed_out)
    assert verdict.failures[ORACLE_CHECK] == cmp.mismatches


def test_after_a_restart_an_identical_answer_again_is_counted_and_a_different_one_fails():
    """With `redelivery` (a worker was killed), an answer given again identically is
    at-least-once delivery, counted apart; one that differs still fails; without it, even an
    identical extra answer fails (a request answered twice)."""
    expected = _sessions()
    streamed = _sessions()
    msgid, infno = streamed[5].sent[0]
    streamed[5].answers[msgid] = streamed[5].answers[msgid] * 3
    again = compare(streamed, expected, redelivery=True)
    assert again.ok and again.redelivered == 2
    assert not compare(streamed, expected).ok
    other = copy.deepcopy(expected[5].answers[msgid][0])
    other["err_msg"] = "another answer"
    streamed[5].answers[msgid] = [*expected[5].answers[msgid], other]
    differs = compare(streamed, expected, redelivery=True)
    assert not differs.ok and differs.redelivered == 0
    assert differs.mismatches[0].startswith(f"visit 5 {infno} {msgid}: ")


def _letter(key: bytes | None, value: bytes, code: str) -> DeadLetterRecord:
    """A dead letter as the hospitals read it off `dead.letters`."""
    headers = {CODE_HEADER: code, REASON_HEADER: "r", SOURCE_HEADER: "hosp.requests"}
    return DeadLetterRecord(key, value, describe_dead_letter(value, headers))


def _result(bad_answers, dead_letters, exchanges=None) -> HospitalRunResult:
    return HospitalRunResult([], exchanges or {}, bad_answers, dead_letters, [], 0, 1.0)


def test_bad_requests_pass_only_with_their_declared_code_and_letters_are_accounted():
    bad = generate_bad_messages(WORLD, per_kind=1)
    good_answers = {b.msgid: [{"infcode": -1, "err_code": b.code.value}]
                    for b in bad if b.expect == "answer"}
    letters = [_letter(b.key, b.value, b.code.value)
               for b in bad if b.expect == "dead-letter"]
    assert check_bad_requests(_result(good_answers, letters), bad).ok

    wrong = dict(good_answers)
    first = next(iter(wrong))
    wrong[first] = [{"infcode": -1, "err_code": "E9999"}]
    check = check_bad_requests(_result(wrong, letters), bad)
    assert not check.ok and "expected answer" in check.problems[0]

    again = next(b for b in bad if b.expect == "dead-letter")
    extra = [*letters, _letter(again.key, again.value, "E9001")]  # one of ours, twice
    twice = check_bad_requests(_result(good_answers, extra), bad)
    assert twice.unexpected_dead_letters == 1 and twice.bad_as_expected and not twice.ok
    # named with its code and reason, for a replay to say (it blamed the bad requests)
    assert twice.unexpected == [f"{again.infno or 'a message'} {again.msgid}: E9001 r"
                                .replace("  ", " ")]
    stray = [*letters, _letter(None, b"stray", "E1001")]  # another producer's
    assert check_bad_requests(_result(good_answers, stray), bad).ok
    assert not check_bad_requests(_result(good_answers, letters[1:]), bad).ok


def test_accounting_counts_every_send_once():
    ex = Exchange("2207", "m1", sends=2, answers=[{"infcode": 0}, {"infcode": 0}])
    bad = generate_bad_messages(WORLD, per_kind=1)
    acc = account(_result({}, [], {"m1": ex}), bad)
    assert acc.sent == 2 + len(bad)
    assert acc.answered_ok == 2
    assert acc.unaccounted == len(bad)


def test_a_bad_requests_redelivered_dead_letter_is_counted_once_and_a_stray_one_apart():
    """A stray dead letter (garbage another producer wrote to a topic of a shared cluster)
    is no request of these hospitals': counted apart, not in the sum (it read "unanswered
    -5" and failed the replay)."""
    bad = generate_bad_messages(WORLD, per_kind=1)
    dead = [b for b in bad if b.expect == "dead-letter"]
    letters = [_letter(b.key, b.value, b.code.value) for b in dead]
    repeat = _letter(dead[0].key, dead[0].value, dead[0].code.value)  # after a crash
    stray = _letter(None, b"stray", "E1001")
    result = _result({}, [*letters, repeat, stray, stray])
    assert distinct_dead_letters(result, bad) == [*letters, stray, stray]
    acc = account(result, bad)
    assert (acc.dead_lettered, acc.redelivered, acc.foreign_dead_letters) == (len(dead), 1, 2)
    assert acc.unaccounted == len(bad) - len(dead)  # the bad requests to be answered


def test_a_dead_letter_of_a_daily_reconciliation_is_the_hospitals_own():
    """A 3201 of the hospitals' daily reconciliation is known by its msgid (answered, or
    still awaited), not taken for another producer's message."""
    result = _result({}, [])
    msgid = "H11010000001202612010900000007"
    result.daily = SimpleNamespace(msgids={msgid}, sent=1, answered=[], answered_again=0)
    value = (b'{"infno": "3201", "msgid": "%s", "fixmedins_code": "H11010000001"}'
             % msgid.encode())
    result.dead_letters = [_letter(b"H11010000001", value, "E9001")]
    acc = account(result, [])
    assert (acc.dead_lettered, acc.foreign_dead_letters, acc.unaccounted) == (1, 0, 0)


@pytest.mark.parametrize(("code", "own", "passed"), [
    ("E1001", False, True),  # another producer's garbage on a cluster shared with it
    ("E1001", True, False),  # on the replay's own platform nobody else writes
    ("E9001", False, False),  # the platform failed on its own message (a money event, say)
    ("E9001", True, False)])
def test_a_replay_fails_on_the_platforms_own_failures_and_on_strays_on_its_own_platform(
        code: str, own: bool, passed: bool):
    stray = _letter(None, b'{"setl_id": "S1", "event": "settle"}', code)
    acc = account(_result({}, [stray]), [])
    assert (acc.foreign_dead_letters, acc.foreign_failures) == (1, int(code == "E9001"))
    assert (not replay_failures(acc, timed_out=False, bad_ok=True, own_platform=own)) is passed


def test_a_request_a_role_failed_on_is_answered_and_dead_lettered_but_counted_once():
    """E9001/E9002 answer the hospital and keep the request in dead.letters: counted as both,
    the run read "unanswered -1"."""
    ex = Exchange("1101", "H11010000001202612010900000001", sends=1,
                  answers=[{"infcode": -1, "err_code": "E9001"}])
    value = (b'{"infno": "1101", "msgid": "H11010000001202612010900000001", '
             b'"fixmedins_code": "H11010000001"}')
    letter = _letter(b"k", value, "E9001")
    assert letter.entry.msgid == ex.msgid
    acc = account(_result({}, [letter], {ex.msgid: ex}), [])
    assert (acc.sent, acc.answered_error, acc.dead_lettered, acc.unaccounted) == (1, 1, 0, 0)
    # any other dead letter of an answered msgid (a copy refused as malformed) still counts
    other = _letter(b"k", value, "E1001")
    assert account(_result({}, [letter, other], {ex.msgid: ex}), []).dead_lettered == 1


def test_a_run_stopped_on_a_cluster_lost_is_judged_on_what_was_sent_and_received():
    """The visits stopped early: those that never arrived and the answers still awaited are
    not differences of their own (the stop is the run's failure), an answer received that
    differs still is, and a bad request with nothing back was in flight, even beside
    another of its kind that was dead-lettered."""
    expected = _sessions()
    streamed = copy.deepcopy(expected[:25])
    under_way = streamed[-1]
    awaited = under_way.sent[-1][0]
    del under_way.answers[awaited]  # still awaited when the visits stopped
    under_way.awaiting[awaited] = 1
    assert not under_way.done
    stopped = compare(streamed, expected, stopped=True)
    assert stopped.ok and stopped.visits == 40
    assert stopped.settlements_expected == sum(w.settlement is not None for w in expected[:24])
    with pytest.raises(ValueError):  # not stopped, every visit must be there
        compare(streamed, expected)
    differs = copy.deepcopy(streamed)
    settled = next(s for s in differs[:24] if s.settlement is not None)
    settled.answers[_settle_msgid(settled)][0]["output"]["setlinfo"]["fund_pay_sumamt"] += 1
    assert not compare(differs, expected, stopped=True).ok

    bad = generate_bad_messages(WORLD, per_kind=2)
    letter_kinds = [b for b in bad if b.expect == "dead-letter"]
    twins = [b for b in letter_kinds if b.value == letter_kinds[0].value]
    assert len(twins) == 2  # the same bytes twice: one dead-lettered, the other in flight
    result = _result({}, [_letter(twins[0].key, twins[0].value, twins[0].code.value)])
    result.interrupted, result.bad_sent = True, len(bad)
    check = check_bad_requests(result, bad)
    assert check.as_expected == 1 and not check.problems and not check.ok
    n, asked = next((i, b) for i, b in enumerate(bad) if b.expect == "answer")
    wrong = _result({asked.msgid: [{"infcode": -1, "err_code": "E9999"}]}, [])
    wrong.interrupted, wrong.bad_sent = True, n + 1  # those after it were never sent
    assert check_bad_requests(wrong, bad).problems == [
        f"bad request {asked.kind}: expected answer {asked.code.value}, got answers "
        "['E9999']"]
