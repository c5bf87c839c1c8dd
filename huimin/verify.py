"""`huimin verify`: compare a run's or replay's answers with the oracle's, field by field, check
the invariants, and write a verdict a CI can read (JUnit XML, JSON)."""

from __future__ import annotations

import itertools
import os
import re
import stat
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree import ElementTree as ET

import orjson

from huimin.logfiles import LogFormatError, check_world, placed_records, visit_digest
from messages.codes import CANCELLATIONS, SETTLEMENTS, TIMED_OUT, ErrorCode, Infno
from messages.envelope import answerable_msgid, is_inf_time
from messages.identity import PERSONAL_FIELDS, shown_id
from messages.transactions import MAX_FEN
from messages.visitlog import Visit, VisitSession, parse_step
from settlement.invariants import CHECKS, InvariantReport, PersonCheck, check_money
from settlement.ledger import SettlementEvent, events_from_answers
from settlement.reference import ReferenceData

ORACLE_CHECK = "answers equal the oracle"
COMPLETE_CHECK = "every visit has a result"


@dataclass
class Verdict:
    visits: int = 0
    answers_compared: int = 0
    answers_equal: int = 0
    redelivered: int = 0  # identical extra answers: at-least-once delivery, not an error
    settlements_checked: int = 0
    #: with `replayed_only`: visits with no result, and visits still under way (their
    #: answers received are compared, the ones never received are not)
    not_replayed: int = 0
    under_way: int = 0
    #: without `replayed_only`: visits with no result (each a failure of COMPLETE_CHECK)
    no_result: int = 0
    #: requests the platform refused as replays (E6003) where the oracle answered otherwise:
    #: dated over its window before a later request it had for the person (a log replayed
    #: twice on one cluster; redelivery after a fast simulated clock moved on)
    refused_as_replays: int = 0
    #: visits the hospital gave up waiting on: a request unanswered in time, their later
    #: requests never sent; TIMEOUT their outcome, unless they had settled before (a 7001
    #: after the settlement, say): those are counted here too
    timed_out: int = 0
    timed_out_after_settling: int = 0
    #: the results carry each visit's digest, as only the oracle's expected answers do: a
    #: copy of those, judged against themselves (said, not refused: a test may make its
    #: results from them)
    results_are_expected_answers: bool = False
    failures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def ok(self) -> bool:
        return not any(self.failures.values())

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "visits": self.visits, "answers_compared": self.answers_compared,
                "answers_equal": self.answers_equal, "redelivered": self.redelivered,
                "settlements_checked": self.settlements_checked,
                "not_replayed": self.not_replayed, "under_way": self.under_way,
                "no_result": self.no_result, "refused_as_replays": self.refused_as_replays,
                "timed_out": self.timed_out,
                "timed_out_after_settling": self.timed_out_after_settling,
                "results_are_expected_answers": self.results_are_expected_answers,
                "checks": {name: {"passed": not self.failures.get(name),
                                  "failures": self.failures.get(name, [])}
                           for name in (COMPLETE_CHECK, ORACLE_CHECK, *CHECKS)}}


class ResultsMismatch(LogFormatError):
    """Results that cannot be answers to the visit log's requests: another log's."""


class ResultsFile:
    """A results file's records, each read when its visit is judged: first one reading
    that notes where each visit's record is (and refuses a file that cannot be judged);
    then each record read from its place, in the log's order (as a run and a replay write
    them: a second pass through the file, on the same handle). It holds a place a visit, not
    the answers (read whole, a replay's results took ~46 KiB a visit: 449 MiB for 10,000).
    A pipe, which cannot be read twice, is held whole, as before."""

    def __init__(self, results: Path, world: str | None = None) -> None:
        """Refused (LogFormatError) if it has no results, if a visit has two (which to
        judge? a wrong one must not hide behind a right one), or if one was settled in
        another world than `world` (the visit log's `world_tag`)."""
        self.path = results
        self.places: dict[Any, int | dict[str, Any]] = {}  # visit_no -> offset, or record
        #: the oracle's answers (`huimin generate`'s or `run`'s expected file), not results:
        #: each carries its visit's digest (logfiles.expected_record)
        self.expected_answers = False
        self._file: BinaryIO | None = open(results, "rb")  # noqa: SIM115 (closed by close)
        try:
            hold = not stat.S_ISREG(os.fstat(self._file.fileno()).st_mode)
            lines: dict[Any, int] = {}
            for n, (at, record) in enumerate(placed_records(self._file, results), start=1):
                if world is not None:
                    check_world(record, n, results, world)
                visit_no = record["visit_no"]
                if visit_no in lines:
                    raise LogFormatError(f"{results}: line {n} is a second record of visit "
                                         f"{visit_no} (the first is line {lines[visit_no]}):"
                                         " one record a visit")
                lines[visit_no] = n
                self.places[visit_no] = record if hold else at
                self.expected_answers = self.expected_answers or "visit_digest" in record
            if not self.places:
                raise LogFormatError(f"no results in {results}")
            self._read_as = None if hold else self._stamp()
        except BaseException:
            self.close()
            raise
        if hold:
            self.close()

    def _stamp(self) -> tuple[int, int]:
        assert self._file is not None
        seen = os.fstat(self._file.fileno())
        return seen.st_size, seen.st_mtime_ns

    def take(self, visit_no: Any) -> dict[str, Any] | None:
        """The record of `visit_no` (None if none), read from its place; not held after.
        Refused (LogFormatError) if the file changed since it was first read."""
        place = self.places.pop(visit_no, None)
        if place is None or isinstance(place, dict):
            return place
        assert self._file is not None
        self._file.seek(place)
        try:
            record = orjson.loads(self._file.readline())
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or record.get("visit_no") != visit_no \
                or self._stamp() != self._read_as:
            raise LogFormatError(f"{self.path} changed while it was read (written to, cut "
                                 "short or replaced): judge it once it is complete")
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def events_of_visit(visit: Visit, infnos: Mapping[str, str],
                    answers: Mapping[str, list[dict[str, Any]]]) -> list[SettlementEvent]:
    """The money events of a visit's answers (`infnos`: `infnos_of(visit)`), in the order
    its requests were sent."""
    return events_from_answers(visit.fixmedins_code, [
        (msgid, infno, answers.get(msgid, [])) for msgid, infno in infnos.items()])


#: What the checks and the ledger read of an OK answer, by the infno of its request.
_SETTLEMENT_KEYS = frozenset({
    "setl_id", "setl_time", "mdtrt_id", "clr_type", "insuplc_admdvs", "mdtrtarea_admvs",
    "medfee_sumamt", "fund_pay_sumamt", "hifp_pay", "acct_pay", "psn_cash_pay", "psn_part_amt",
    "act_pay_dedc", "balc", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
    "inscp_scp_amt"})
#: Of those, the amounts: integers of fen, or the money checks cannot read them.
_AMOUNTS = frozenset({
    "medfee_sumamt", "fund_pay_sumamt", "hifp_pay", "acct_pay", "psn_cash_pay", "psn_part_amt",
    "act_pay_dedc", "balc", "fulamt_ownpay_amt", "overlmt_selfpay", "preselfpay_amt",
    "inscp_scp_amt"})
#: a settlement's amounts its money event carries, each 0 to MAX_FEN (settlement/ledger.py)
_EVENT_AMOUNTS = ("hifp_pay", "medfee_sumamt", "fund_pay_sumamt", "acct_pay")
_NEEDS: dict[str, tuple[str | None, frozenset[str]]] = {
    **{i: ("setlinfo", _SETTLEMENT_KEYS) for i in SETTLEMENTS},
    **{i: ("setlinfo", frozenset({"init_setl_id", "setl_time"})) for i in CANCELLATIONS},
    Infno.ACCUMULATORS: (None, frozenset({"cuminfo", "year"})),
}


def infnos_of(visit: Visit) -> dict[str, str]:
    """The infno of each request the visit's steps send, by msgid."""
    session = VisitSession(visit)
    return {session.msgid_at(i): parse_step(step)[0] for i, step in enumerate(visit.steps)}


def misfit(visit: Visit, answers: dict[str, Any]) -> str | None:
    """Why `answers` (msgid -> answers, a result record's) cannot be the answers to `visit`'s
    requests, or None if they can: a msgid that is not one of the visit's."""
    infnos = infnos_of(visit)
    for msgid, got in answers.items():
        if msgid not in infnos:  # echoed only if a msgid: an edited file's key may hold an ID
            said = msgid if answerable_msgid(msgid) else "a key that is not a msgid"
            return f"an answer to {said}, which is not one of its requests"
        if not isinstance(got, list) or not all(isinstance(a, dict) for a in got):
            return f"no list of answers to {msgid}"
    return None


def malformed(visit: Visit, answers: dict[str, Any]) -> str | None:
    """An accepted answer without what an answer to its request's infno has (a settlement's
    setlinfo and its amounts, …), which the money checks could not read; None if none is."""
    infnos = infnos_of(visit)
    for msgid, got in answers.items():
        ok = next((a for a in got if a.get("infcode") == 0), None)
        if ok is None or msgid not in infnos:
            continue
        out = ok.get("output")
        section, keys = _NEEDS.get(infnos[msgid], (None, frozenset()))
        part = out.get(section) if section and isinstance(out, dict) else out
        if not isinstance(part, dict):
            return f"the accepted answer to its {infnos[msgid]} {msgid} has no {section}"
        if not keys <= part.keys():
            return (f"the accepted answer to its {infnos[msgid]} {msgid} lacks "
                    + ", ".join(sorted(keys - part.keys())))
        if not_fen := sorted(k for k in keys & _AMOUNTS if type(part[k]) is not int):
            return (f"the accepted answer to its {infnos[msgid]} {msgid} has amounts that are "
                    f"not whole fen: {', '.join(not_fen)}")
        # what the money flow reads of it (settlement/ledger.py's SettlementEvent)
        if "setl_time" in keys and not is_inf_time(part["setl_time"]):
            return (f"the accepted answer to its {infnos[msgid]} {msgid} has a setl_time that "
                    "is not yyyy-MM-dd HH:mm:ss")
        if infnos[msgid] in SETTLEMENTS and (beyond := sorted(
                k for k in _EVENT_AMOUNTS if not 0 <= part[k] <= MAX_FEN)):
            return (f"the accepted answer to its {infnos[msgid]} {msgid} has amounts outside "
                    f"0 to ¥1 billion: {', '.join(beyond)}")
    return None


def _mismatch(visit: Visit, record: dict[str, Any] | None, what: str,
              whole: bool = False) -> None:
    """A ResultsMismatch if `record` cannot be `visit`'s (`what`: "<file> does", …), or with
    `whole`, if one of its accepted answers cannot be read."""
    if record is None:
        return
    problem = misfit(visit, record["answers"])
    if problem:
        raise ResultsMismatch(f"{what} not belong to this visit log: visit {visit.visit_no} "
                              f"has {problem} (another log's?)")
    problem = malformed(visit, record["answers"]) if whole else None
    if problem:
        raise ResultsMismatch(f"visit {visit.visit_no}: {problem} (another log's, or a "
                              "platform's malformed answer: `huimin verify` names them all)")


def visits_with_results(visits: Iterator[Visit], held: ResultsFile,
                        whole: bool = True) -> Iterator[tuple[Visit, dict[str, Any] | None]]:
    """Each visit with its result record (None: it has none), checked against it: a
    ResultsMismatch, before anything is computed from it, if the results belong to another
    visit log, or (with `whole`) if an accepted answer cannot be read; once the visits end,
    if the results hold visits the log has not."""
    for visit in visits:
        record = held.take(visit.visit_no)
        _mismatch(visit, record, f"{held.path} does", whole)
        yield visit, record
    if unknown := list(held.places):
        raise not_this_logs(held.path, unknown)


def not_this_logs(results: Path, visit_nos: list[Any]) -> ResultsMismatch:
    """The refusal of `results` holding results of visits the log does not have."""
    unknown = sorted(visit_nos, key=lambda n: (not isinstance(n, int),
                                               n if isinstance(n, int) else 0, str(n)))
    return ResultsMismatch(
        f"{results} does not belong to this visit log: it has results for "
        f"{len(unknown)} {'visit' if len(unknown) == 1 else 'visits'} not in the "
        f"log (visit {', '.join(map(str, unknown[:3]))}"
        f"{', …' if unknown[3:] else ''}; another log's?)")


def _differences(path: str, got: Any, want: Any) -> list[str]:
    """Where two decoded JSON values differ, each as `path: got != expected want`, the path
    naming every key and list index on the way (`result[3].det_item_fee_sumamt`)."""
    if got == want:
        return []
    if isinstance(got, dict) and isinstance(want, dict):
        return [d for k in sorted(set(got) | set(want))
                for d in _differences(f"{path}.{k}" if path else str(k), got.get(k),
                                      want.get(k))]
    if isinstance(got, list) and isinstance(want, list):
        if len(got) != len(want):
            return [f"{path}: {len(got)} items != expected {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want, strict=True))
                for d in _differences(f"{path}[{i}]", g, w)]
    if PERSONAL_FIELDS.intersection(re.sub(r"\[\d+\]", "", path).split(".")):
        return [f"{path}: differs (personal data, not shown)"]  # reports go to CI logs
    return [f"{path}: {_short(got)} != expected {_short(want)}"]


#: Chinese characters: in a field no name says is personal, still perhaps a person's name.
_CJK = re.compile(r"[\u3400-\u9fff]")
#: A msgid (messages/envelope.py): a sender's code, a time and a sequence, 17 digits in a row
#: and more, yet no one's ID number; masked, two msgids a day apart read the same.
_MSGID = re.compile(r"[HJ][0-9]{29}")


def _short(value: Any, limit: int = 60) -> str:
    """A scalar as it is; an object or a list only by its size (it may hold personal data);
    text with an ID number's shape inside masked as one, text in Chinese only by its length
    (a field of a name no list knows, `baseinfo.extra_cert`, may hold either)."""
    if isinstance(value, dict):
        return f"an object of {len(value)} fields"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, str) and _CJK.search(value):
        return f"text of {len(value)} characters"
    if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) >= 17:
        value = str(value)  # an ID number's digits written as a number
    if isinstance(value, str) and not _MSGID.fullmatch(value):  # a msgid is no one's
        value = shown_id(value)
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _said(answer: dict[str, Any]) -> str:
    """An answer's infcode and error code: `0`, `-1 E4011` (anything else a results file
    holds there shown as `_short` shows a value: it may have been written by hand)."""
    return " ".join(str(v) if re.fullmatch(r"-?\d{1,9}|E\d{4}", str(v)) else _short(v)
                    for v in (answer.get("infcode"), answer.get("err_code"))
                    if v not in (None, ""))


def _answers_beside(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> str:
    """Of more (or fewer) answers than expected, how many are an expected one and what the
    others are, by infcode and error code: a redelivery's answer unlike the first is found
    from this line alone (a CI log is all there is of a failed run)."""
    if not got:
        return ""
    others: dict[str, int] = defaultdict(int)
    for answer in got:
        if answer in want:
            continue
        said = _said(answer)
        if want and said == _said(want[0]):  # the same codes: where its content differs
            first = (_differences("", answer.get("output", {}), want[0].get("output", {}))
                     or ["another field"])[0]
            said = f"{said} ({first})"
        others[f"infcode {said}"] += 1
    equal = len(got) - sum(others.values())
    unlike = "; ".join(f"{n} otherwise, {said}" for said, n in sorted(others.items()))
    return f": {equal} as expected" + (f", {unlike}" if unlike else "")


def answer_diff(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> str:
    """A short, readable difference between two answer lists."""
    if len(got) != len(want):
        return f"{len(got)} answers, expected {len(want)}{_answers_beside(got, want)}"
    for g, w in zip(got, want, strict=True):
        if g == w:
            continue
        if g.get("infcode") != w.get("infcode") or g.get("err_code") != w.get("err_code"):
            return f"infcode {_said(g)} != expected {_said(w)}"
        parts = _differences("", g.get("output", {}), w.get("output", {}))
        if len(parts) > 5:
            parts = [*parts[:5], f"{len(parts) - 5} more"]
        others = [k for k in sorted(set(g) | set(w)) if k != "output" and g.get(k) != w.get(k)]
        return "; ".join(parts + [f"{k} differs" for k in others])
    return "equal"


def gave_up_on(got: dict[str, Any], want: dict[str, Any]) -> str | None:
    """The msgid of the request a visit's hospital gave up waiting for, if it did: the
    result's `timed_out`, or, in results written before it was kept, the first request sent
    and unanswered of a visit whose outcome is TIMEOUT (a settled visit's was not known)."""
    if got.get("timed_out"):
        return str(got["timed_out"])
    if got.get("outcome") != TIMED_OUT:
        return None
    return next((m for m in want["answers"] if m in got["answers"] and not got["answers"][m]),
                None)


def timed_out_line(visit_no: int, infno: str, waited: str, unsent: int) -> str:
    """A visit the hospital gave up on, said as such: compared one by one, each request from
    the one waited on read "0 answers, expected 1", as if the platform had lost them (an
    operator's review of 12-06), where those after it were never sent."""
    later = (f"; its {unsent} later {'request was' if unsent == 1 else 'requests were'} not "
             "sent") if unsent else ""
    return (f"visit {visit_no} {infno} {waited}: timed out, no answer within the "
            f"hospital's --answer-timeout (`huimin trail {waited}` shows where it went){later}")


def _refused_as_replay(answers: list[dict[str, Any]]) -> bool:
    return any(a.get("err_code") == ErrorCode.STALE.value for a in answers)


@dataclass
class VisitAnswers:
    """One visit's answers against the oracle's, as `verify` and `huimin run` both count and
    say them (before 12-06 each had its own: a run listed a timed-out visit's every later
    request as "0 answers, expected 1" and counted the answer that came too late as equal)."""

    compared: int = 0
    equal: int = 0
    redelivered: int = 0
    refused_as_replays: int = 0
    timed_out: bool = False
    lines: list[str] = field(default_factory=list)


def compare_visit(visit_no: int, infnos: Mapping[str, str], got: Mapping[str, list[Any]],
                  want: Mapping[str, list[Any]], waited: str | None, *, partial: bool,
                  redelivery: bool) -> VisitAnswers:
    """`got`: the answers received to each request sent (one never sent has no key); `want`:
    the oracle's to each; `waited`: the request the hospital gave up waiting on, whose answer
    (too late if it came) and later requests (never sent) are counted as not equal and said
    in one line; `partial`: a replay stopped while the visit was under way (a request not
    answered yet is left out); `redelivery`: identical extra answers are at-least-once
    delivery, counted apart, not failed."""
    out = VisitAnswers()
    unsent = 0  # with `waited`: the requests after it, never sent
    for msgid, want_answers in want.items():
        got_answers = got.get(msgid, [])
        if partial and not got_answers:  # not received before the replay stopped
            continue
        out.compared += len(want_answers)
        if waited and (msgid == waited or msgid not in got):  # one line for all, below
            unsent += msgid != waited
            continue
        if redelivery and want_answers and len(got_answers) > len(want_answers) and \
                all(a == want_answers[0] for a in got_answers):
            out.redelivered += len(got_answers) - len(want_answers)
            got_answers = want_answers
        if got_answers == want_answers:
            out.equal += len(want_answers)
            continue
        if _refused_as_replay(got_answers) and not _refused_as_replay(want_answers):
            out.refused_as_replays += 1
        out.lines.append(f"visit {visit_no} {infnos.get(msgid, '?')} {msgid}: "
                         f"{answer_diff(got_answers, want_answers)}")
    for msgid in (m for m, answers in got.items() if answers and m not in want):
        # answered where the oracle sent nothing: it ended the visit before (another visit's
        # msgid in a hand-made log, which the hospitals had forgotten by then)
        out.compared += len(got[msgid])
        out.lines.append(f"visit {visit_no} {infnos.get(msgid, '?')} {msgid}: answered, where "
                         "the oracle sent no such request")
    if waited:
        out.timed_out = True
        out.lines.append(timed_out_line(visit_no, infnos.get(waited, "?"), waited, unsent))
    return out


def verify(visits: Iterator[Visit], expected: Iterator[dict[str, Any]],
           results: Path, ref: ReferenceData, replayed_only: bool = False,
           world: str | None = None) -> Verdict:
    """The verdict on `results`. Raises, before any verdict: a LogFormatError if it has no
    results or they were settled in another world than `world` (the log's), a
    ResultsMismatch if they (or `expected`) are another visit log's.
    `replayed_only`: a replay stopped by Ctrl-C is judged on what it replayed: a visit
    without a result is left out, and of a visit still under way only the answers received
    are compared (each counted in the verdict)."""
    with ResultsFile(results, world) as got_by_visit:
        verdict = _verdict(visits, expected, got_by_visit, ref, replayed_only)
        verdict.results_are_expected_answers = got_by_visit.expected_answers
        return verdict


def _verdict(visits: Iterator[Visit], expected: Iterator[dict[str, Any]],
             got_by_visit: ResultsFile, ref: ReferenceData, replayed_only: bool) -> Verdict:
    """`verify`'s verdict, the results read visit by visit and the persons' invariants
    checked as their answers come (`PersonCheck`), so that what it holds is small."""
    verdict = Verdict()
    report = InvariantReport()
    persons: dict[str, PersonCheck] = {}
    events: list[SettlementEvent] = []
    missing: list[int] = []  # visits with no result since the last with one (replayed_only)
    for pair, want in itertools.zip_longest(
            visits_with_results(visits, got_by_visit, whole=False), expected):
        if pair is None:
            raise ResultsMismatch(f"the expected answers go on past the log's last visit "
                                  f"(visit {want.get('visit_no')}): a line was taken out of "
                                  "the log?")
        visit, got = pair
        if want is None:
            raise ResultsMismatch(f"the expected answers end before the log's visit "
                                  f"{visit.visit_no}: cut short, or another log's")
        if want.get("visit_no") != visit.visit_no:
            raise ResultsMismatch(f"the expected answers do not belong to this visit log: "
                                  f"visit {want.get('visit_no')} where visit {visit.visit_no} "
                                  "is (another log's?)")
        _mismatch(visit, want, "the expected answers do", whole=True)
        if want.get("visit_digest", visit_digest(visit)) != visit_digest(visit):
            raise ResultsMismatch(
                f"the expected answers settle another version of visit {visit.visit_no} (the "
                "log was edited after they were written): generate them again, or remove "
                "them and verify settles the log with the oracle")
        if got is None and replayed_only:
            verdict.not_replayed += 1
            missing.append(visit.visit_no)
            continue
        # a stopped replay leaves out the log's last visits: ones before a result are not
        # left out but missing
        for n in missing:
            verdict.failures[COMPLETE_CHECK].append(
                f"visit {n}: no result, though later visits have one")
        verdict.visits += len(missing)
        verdict.no_result += len(missing)
        verdict.not_replayed -= len(missing)
        missing.clear()
        verdict.visits += 1
        if got is None:
            verdict.no_result += 1
            verdict.failures[COMPLETE_CHECK].append(f"visit {visit.visit_no}: no result")
            continue
        partial = replayed_only and got.get("under_way") is True
        verdict.under_way += int(partial)
        infnos = infnos_of(visit)
        seen = compare_visit(visit.visit_no, infnos, got["answers"], want["answers"],
                             gave_up_on(got, want), partial=partial, redelivery=True)
        verdict.answers_compared += seen.compared
        verdict.answers_equal += seen.equal
        verdict.redelivered += seen.redelivered
        verdict.refused_as_replays += seen.refused_as_replays
        verdict.timed_out += seen.timed_out
        verdict.timed_out_after_settling += seen.timed_out and got.get("outcome") != TIMED_OUT
        if seen.lines:
            shown = verdict.failures[ORACLE_CHECK]
            shown += seen.lines[:max(0, 20 - len(shown))]
        problem = malformed(visit, got["answers"])
        if problem:  # a FAIL; its answers are not read further (the money checks need them whole)
            verdict.failures[ORACLE_CHECK].append(f"visit {visit.visit_no}: {problem}")
            continue
        person = persons.get(visit.certno) or persons.setdefault(
            visit.certno, PersonCheck(ref, visit.certno))
        for msgid, answers in got["answers"].items():
            person.add(infnos.get(msgid, "?"), answers, report)
        events += events_of_visit(visit, infnos, got["answers"])
    for person in persons.values():
        person.finish(report)
    check_money(events, report)
    verdict.settlements_checked = report.checked_settlements
    for name, messages in report.violations.items():
        verdict.failures[name].extend(messages)
    return verdict


def write_junit(verdict: Verdict, path: Path) -> None:
    names = (COMPLETE_CHECK, ORACLE_CHECK, *CHECKS)
    suite = ET.Element("testsuite", name="huimin verify", tests=str(len(names)),
                       failures=str(sum(1 for n in names if verdict.failures.get(n))))
    for name in names:
        case = ET.SubElement(suite, "testcase", classname="huimin.verify", name=name)
        failures = verdict.failures.get(name)
        if failures:
            failure = ET.SubElement(case, "failure", message=failures[0])
            failure.text = "\n".join(failures)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def write_json(verdict: Verdict, path: Path) -> None:
    path.write_bytes(orjson.dumps(verdict.to_dict(), option=orjson.OPT_INDENT_2))
