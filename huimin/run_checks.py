"""Whether a run or a replay went right: its answers against the oracle's, its bad
requests' outcomes, its reconciliation, and every request accounted for."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from huimin.verify import answer_diff, compare_visit, infnos_of
from messages.codes import TIMED_OUT, ErrorCode, Infno
from messages.platform import hospital_context
from messages.topics import HOSP_REQUESTS
from messages.visitlog import VisitSession
from settlement.oracle import Oracle
from simulators.bad_messages import BadMessage
from simulators.hospital import DeadLetterRecord
from simulators.reconciliation import (
    closing_requests,
    settlements_given_up,
    settlements_to_post,
)
from simulators.visit_run import Exchange, HospitalRunResult
from streams.role import REQUESTS_INWARD

if TYPE_CHECKING:
    from huimin.run import Execution


@dataclass
class Comparison:
    """Streamed answers against the oracle's, visit by visit and step by step."""

    visits: int = 0
    settlements_expected: int = 0
    settlements_equal: int = 0
    answers_compared: int = 0
    answers_equal: int = 0
    redelivered: int = 0  # identical extra answers after a rebalance or a restart
    timed_out: int = 0  # visits the hospital gave up waiting on (TIMEOUT)
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.answers_equal == self.answers_compared and not self.mismatches


def compare(streamed: list[VisitSession], expected: list[VisitSession],
            redelivery: bool = False, stopped: bool = False) -> Comparison:
    """Every answer the oracle gives, to every request of every visit, must have come back
    from the platform identical (and as often: a duplicate request gets its answer twice),
    counted and said as `huimin verify` does (`compare_visit`). With `redelivery` (a worker
    was killed: at-least-once delivery replays what it had not committed) an answer may come
    back more often than asked, but always identical. `stopped`: the visits stopped early
    (a cluster lost), so only those that arrived are compared, and of those under way only
    the answers received, as `huimin verify --replayed-only` does."""
    cmp = Comparison(visits=len(expected))
    for got, want in zip(streamed, expected[:len(streamed)] if stopped else expected,
                         strict=True):
        if want.settlement is not None and (got.done or not stopped):  # not under way
            cmp.settlements_expected += 1
            if got.settlement == want.settlement:
                cmp.settlements_equal += 1
        gave_up = got.failed is not None and got.failed.get("err_code") == TIMED_OUT
        seen = compare_visit(
            got.visit.visit_no, infnos_of(got.visit),
            {msgid: got.answers.get(msgid, []) for msgid, _ in got.sent},
            {msgid: want.answers.get(msgid, []) for msgid, _ in want.sent},
            got.failed["inf_refmsgid"] if got.failed is not None and gave_up else None,
            partial=stopped and not got.done, redelivery=redelivery)
        cmp.answers_compared += seen.compared
        cmp.answers_equal += seen.equal
        cmp.redelivered += seen.redelivered
        cmp.timed_out += seen.timed_out
        cmp.mismatches += seen.lines[:max(0, 20 - len(cmp.mismatches))]
    return cmp


def distinct(answers: list[dict]) -> list[dict]:
    out: list[dict] = []
    for a in answers:
        if a not in out:
            out.append(a)
    return out


@dataclass
class BadRequestCheck:
    """Each bad request got exactly its expected outcome; nothing else was dead-lettered."""

    expected: int = 0
    as_expected: int = 0
    unexpected_dead_letters: int = 0
    problems: list[str] = field(default_factory=list)
    #: the first unexpected dead letters, each as `infno msgid: code reason` (a visit's
    #: request the platform refused to read: over 256 KiB in a hand-written log, say)
    unexpected: list[str] = field(default_factory=list)

    @property
    def bad_as_expected(self) -> bool:
        return self.as_expected == self.expected

    @property
    def ok(self) -> bool:
        return self.bad_as_expected and not self.unexpected_dead_letters


class RequestTally:
    """The visits' requests as the accounting needs them: how often each was sent and how its
    answers came back, and which msgids were sent and answered. The msgids are kept by their
    hash: a replay that hands its visits on as they end (huimin/replay_results.py) keeps a
    few integers a request, not its answers."""

    def __init__(self) -> None:
        self.sent = self.ok = self.error = 0
        self.extra = 0  # answers beyond the sends: given again (redelivery)
        self._msgids: set[int] = set()
        self._unanswered: set[int] = set()

    @classmethod
    def of(cls, exchanges: Iterable[Exchange]) -> RequestTally:
        tally = cls()
        for ex in exchanges:
            tally.add(ex)
        return tally

    def add(self, ex: Exchange) -> None:
        kept = ex.answers[:ex.sends]
        n_ok = sum(1 for a in kept if a.get("infcode") == 0)
        self.sent += ex.sends
        self.ok, self.error = self.ok + n_ok, self.error + len(kept) - n_ok
        self.extra += len(ex.answers) - len(kept)
        self._msgids.add(hash(ex.msgid))
        if not ex.answers:
            self._unanswered.add(hash(ex.msgid))

    def was_sent(self, msgid: str) -> bool:
        return hash(msgid) in self._msgids

    def was_answered(self, msgid: str) -> bool:
        return hash(msgid) in self._msgids and hash(msgid) not in self._unanswered


def sent_by_these_hospitals(result: HospitalRunResult, bad: list[BadMessage],
                            requests: RequestTally) -> Callable[[DeadLetterRecord], bool]:
    """Whether a dead letter is of a message these hospitals sent: a bad request sent on
    purpose (by its bytes), or a message that carries the msgid of a request they sent. Any
    other is another producer's, on a cluster shared with it (garbage written to a topic by
    hand, say): counted apart, neither lost nor unexpected here."""
    values = {b.value for b in bad}
    daily = result.daily.msgids if result.daily is not None else set()

    def test(letter: DeadLetterRecord) -> bool:
        if letter.value in values:
            return True
        ctx = hospital_context(letter.value, letter.entry.source_topic == HOSP_REQUESTS)
        msgid = ctx.get("msgid") if ctx is not None else None
        return msgid is not None and (requests.was_sent(msgid) or msgid in result.bad_answers
                                      or msgid in daily)
    return test


def check_bad_requests(result: HospitalRunResult, bad: list[BadMessage],
                       redelivery: bool = False, requests: RequestTally | None = None
                       ) -> BadRequestCheck:
    """Each bad request answered or dead-lettered as expected. Of a run stopped early (a
    cluster lost), only those sent are checked, and one with nothing back yet was in
    flight: counted as not as expected, not said as a problem of its own. `requests`: the
    visits' requests, if the result does not hold them (a replay's)."""
    bad = bad[:result.bad_sent] if result.interrupted else bad
    check = BadRequestCheck(expected=len(bad))
    mine = sent_by_these_hospitals(result, bad,
                                   requests or RequestTally.of(result.exchanges.values()))
    letters = Counter((d.value, d.error_code) for d in result.dead_letters if mine(d))
    if redelivery:  # a replayed bad request is dead-lettered again, identically
        letters = Counter({k: min(n, sum(b.value == k[0] for b in bad)) for k, n in
                           letters.items()})
    for b in bad:
        if b.expect == "answer":
            answers = result.bad_answers.get(b.msgid, [])
            codes = [a.get("err_code") for a in (distinct(answers) if redelivery else answers)]
            good = codes == [b.code.value] and answers[0]["infcode"] == -1
            seen, back = f"answers {codes}", bool(answers)
        else:
            good = letters[(b.value, b.code.value)] > 0
            if good:
                letters[(b.value, b.code.value)] -= 1
            seen = "no dead letter with that code"
            back = any(n > 0 for (value, _), n in letters.items() if value == b.value)
        if good:
            check.as_expected += 1
        elif result.interrupted and not back:
            continue  # in flight when the visits stopped
        elif len(check.problems) < 20:
            check.problems.append(f"bad request {b.kind}: expected {b.expect} {b.code.value}, "
                                  f"got {seen}")
    check.unexpected_dead_letters = sum(n for n in letters.values() if n > 0)
    for d in result.dead_letters:
        if len(check.unexpected) < 5 and mine(d) and letters[(d.value, d.error_code)] > 0:
            letters[(d.value, d.error_code)] -= 1
            e = d.entry
            check.unexpected.append(f"{e.infno or 'a message'} {e.msgid or ''}: {e.error_code} "
                                    f"{e.reason}".replace("  ", " "))
    return check


@dataclass
class DailyReconciliationCheck:
    """The hospitals' daily 3201/3202 during the run: every hospital-day ends balanced (平),
    and exactly the settlements whose answers a HIS lost were posted from 3202 details."""

    days: int = 0
    balanced_at_once: int = 0
    balanced_after_posting: int = 0  # 不平 until 3202 detailed what its HIS had lost
    balanced_after_waiting: int = 0  # 不平 until the platform's clearing caught up
    unbalanced: list[str] = field(default_factory=list)
    posted: int = 0
    expected_posted: int = 0
    #: cancellations posted from 3202 (answers lost in a hand-written log: `2208~`)
    undoings_posted: int = 0
    #: the posted settlements' money, fen: medfee_sumamt, hifp_pay, acct_pay
    posted_fen: list[int] = field(default_factory=lambda: [0, 0, 0])
    #: and what the posted cancellations gave back
    undone_fen: list[int] = field(default_factory=lambda: [0, 0, 0])

    @property
    def ok(self) -> bool:
        return not self.unbalanced and self.posted == self.expected_posted


def to_post(result: HospitalRunResult, expected: list[VisitSession]) -> int:
    """How many settlements of `expected` the hospitals must post from 3202 details, and of
    the run's those its visits gave up on at their time-out and the platform carried out;
    of a run stopped early (a cluster lost), of the visits that ended."""
    if result.interrupted:
        expected = [want for got, want in zip(result.sessions, expected, strict=False)
                    if got.done]  # the visits that arrived are the first
    return settlements_to_post(expected) + settlements_given_up(result.sessions)


def check_daily_reconciliation(result: HospitalRunResult, expected_posted: int
                               ) -> DailyReconciliationCheck:
    """The hospital-days of `result`, with `expected_posted` settlements to post (`to_post`).
    Of a run stopped early (a cluster lost), a day whose 3201 had no answer yet was in
    flight, not 不平."""
    check = DailyReconciliationCheck(expected_posted=expected_posted)
    for day in result.days_reconciled:
        if result.interrupted and not day.result:
            continue
        check.days += 1
        check.posted += day.posted
        check.undoings_posted += day.undoings_posted
        check.posted_fen = [a + b for a, b in zip(check.posted_fen, day.posted_fen, strict=True)]
        check.undone_fen = [a + b for a, b in zip(check.undone_fen, day.undone_fen, strict=True)]
        if not day.balanced:
            check.unbalanced.append(f"{day.fixmedins_code} {day.day}: {day.result or 'no answer'}"
                                    f" after {day.attempts} 3201")
        elif day.attempts == 1 or day.first == day.result:
            # 平 at its first 3201 (a day with a lost answer then asks 3202 and, when that
            # posts what the HIS lost, 3201 again: still 平 at once, not 不平 until 3202)
            check.balanced_at_once += 1
        elif day.posted or day.undoings_posted:
            check.balanced_after_posting += 1
        else:
            check.balanced_after_waiting += 1
    return check


@dataclass
class ReconciliationCheck:
    """The closing 3201/3202 of every hospital and 3203 of every agency: answered, balanced
    (平) or accepted (受理), and as the oracle answers them."""

    sent: int = 0
    balanced: int = 0
    equal_to_oracle: int = 0
    problems: list[str] = field(default_factory=list)
    #: why none was sent: the cluster could not be reached once the visits had timed out
    not_sent: str = ""

    @property
    def ok(self) -> bool:
        return self.equal_to_oracle == self.sent == self.balanced and not self.problems


def check_reconciliation(ex: Execution, oracle: Oracle) -> ReconciliationCheck:
    if ex.cluster_gone:
        when = "the visits stopped" if ex.result.cluster_lost else "the visits timed out"
        why = f"the cluster could not be reached once {when} ({ex.cluster_gone})"
        return ReconciliationCheck(problems=[f"not sent: {why}"], not_sent=why)
    check = ReconciliationCheck()
    for key, req in closing_requests(ex.result.books):
        check.sent += 1
        got = distinct(ex.reconciliation.get(req["msgid"], []))
        want = oracle.submit(key, req)
        expected = [want] if want is not None else []  # None: the oracle dead-letters it
        if got == expected:
            check.equal_to_oracle += 1
        elif len(check.problems) < 10:
            check.problems.append(f"{req['infno']} of {req['fixmedins_code']}: "
                                  f"{answer_diff(got, expected)}")
        out = want["output"] if want and want["infcode"] == 0 else {}
        if out.get("stmt_rslt") == "0" or out.get("appy_stas") == "1" or (
                req["infno"] == Infno.RECONCILE_DETAILS and out and
                not out["missing_at_hospital"] and not out["missing_on_platform"]):
            check.balanced += 1
        elif len(check.problems) < 10:
            check.problems.append(f"{req['infno']} of {req['fixmedins_code']} does not balance:"
                                  f" {out or want}")
    return check


@dataclass(frozen=True, slots=True)
class Accounting:
    """sent = answered OK + answered with an error + dead-lettered + unaccounted; answers that
    came back more often than their request was sent (redelivery after a rebalance or a crash)
    are counted apart, in `redelivered`."""

    sent: int
    answered_ok: int
    answered_error: int
    dead_lettered: int
    redelivered: int = 0
    #: dead letters of messages these hospitals did not send (`sent_by_these_hospitals`),
    #: outside the sum, and of them the platform's failures (E9001/E9002 on its own
    #: messages: a money event, a document's registration), which fail a run or replay on
    #: any platform
    foreign_dead_letters: int = 0
    foreign_failures: int = 0

    @property
    def unaccounted(self) -> int:
        return self.sent - self.answered_ok - self.answered_error - self.dead_lettered


#: What a role that fails on a message dead-letters it with (and answers, on its way in).
ROLE_FAILURES = frozenset({ErrorCode.INTERNAL_ERROR.value, ErrorCode.TOO_LARGE.value})


def account(result: HospitalRunResult, bad: list[BadMessage],
            requests: RequestTally | None = None) -> Accounting:
    """Where every request sent went. `requests`: the visits' requests, if the result does not
    hold them (a replay's)."""
    requests = requests or RequestTally.of(result.exchanges.values())
    ok, error, extra = requests.ok, requests.error, requests.extra
    sends = [(1, answers) for answers in result.bad_answers.values()]
    if result.daily is not None:  # each daily 3201/3202 is sent once and answered once
        sends += [(1, [a]) for _, a in result.daily.answered]
        sends += [(1, [])] * (result.daily.sent - len(result.daily.answered))
        extra += result.daily.answered_again
    for n, answers in sends:
        kept = answers[:n]
        extra += len(answers) - len(kept)
        n_ok = sum(1 for a in kept if a.get("infcode") == 0)
        ok, error = ok + n_ok, error + len(kept) - n_ok
    mine = sent_by_these_hospitals(result, bad, requests)
    letters = distinct_dead_letters(result, bad)
    repeats = len(result.dead_letters) - len(letters)
    foreign = [d for d in letters if not mine(d)]
    letters = [d for d in letters if mine(d)]
    # a request a role failed on (E9001/E9002) on its way in is answered with the error and
    # dead-lettered too (streams/role.py, `failed`): counted once, as answered
    answered = {m for m, a in result.bad_answers.items() if a} | \
        ({a.get("inf_refmsgid") for _, a in result.daily.answered} if result.daily else set())
    letters = [d for d in letters if not (
        (d.entry.msgid in answered or requests.was_answered(d.entry.msgid))
        and d.error_code in ROLE_FAILURES and d.entry.source_topic in REQUESTS_INWARD)]
    daily = result.daily.sent if result.daily is not None else 0
    return Accounting(sent=requests.sent + daily + len(bad), answered_ok=ok, answered_error=error,
                      dead_lettered=len(letters), redelivered=extra + repeats,
                      foreign_dead_letters=len(foreign),
                      foreign_failures=sum(d.error_code in ROLE_FAILURES for d in foreign))


def counted(n: int, word: str, words: str | None = None) -> str:
    """`n` and the word for that many: "1 document", "2 documents", "1 query", "3 queries"."""
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def replay_failures(acc: Accounting, *, timed_out: bool, bad_ok: bool, own_platform: bool,
                    closed: bool = True, days_ok: bool = True,
                    unexpected_dead_letters: int = 0) -> list[str]:
    """What fails a replay, in words (none: it passed): a request neither answered nor
    dead-lettered, one timed out, a bad request not as expected, a failure of the
    platform's, the period not closed, a hospital-day not reconciled; another producer's
    dead letters only on the replay's own platform, where there is none."""
    return [text for failed, text in (
        (acc.unaccounted > 0, f"{counted(acc.unaccounted, 'request')} unanswered"),
        (timed_out, "requests given up at the answer timeout"),
        (not bad_ok, "bad requests not answered or dead-lettered as expected"),
        (unexpected_dead_letters > 0, f"{counted(unexpected_dead_letters, 'other request')} "
                                      "of these hospitals dead-lettered"),
        (acc.foreign_failures > 0, f"{counted(acc.foreign_failures, 'failure')} of the "
                                   "platform's (E9001/E9002) on messages no hospital sent"),
        (own_platform and acc.foreign_dead_letters > 0,
         f"{counted(acc.foreign_dead_letters, 'dead letter')} of messages these hospitals "
         "did not send, on the replay's own platform"),
        (not closed, "the period not closed"),
        (not days_ok, "hospital-days not reconciled as expected")) if failed]


def replay_verdict(failures: list[str], *, days_judged: bool = True) -> str:
    """A replay's closing line, after PASS or FAIL: what failed it (`replay_failures`), or
    what passed (the answers are `huimin verify`'s to compare with the oracle's)."""
    if failures:
        return "; ".join(failures) + " (said above)"
    return ("every request answered or dead-lettered, the bad requests "
            + ("and the hospitals' days as expected" if days_judged else
               "as expected (the hospitals' days not judged)")
            + "; the answers themselves: huimin verify")


def distinct_dead_letters(result: HospitalRunResult, bad: list[BadMessage]
                          ) -> list[DeadLetterRecord]:
    """The dead letters less the repeats of a bad request sent on purpose: a redelivery
    (after a worker's crash) dead-letters the same bytes again, which is not another
    message lost. Any other dead letter is kept, repeats included: none should exist."""
    left = Counter(b.value for b in bad if b.expect == "dead-letter")
    kept = []
    for letter in result.dead_letters:
        if letter.value in left:
            if left[letter.value] == 0:
                continue
            left[letter.value] -= 1
        kept.append(letter)
    return kept



