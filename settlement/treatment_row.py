"""What the treatment side keeps of a person (`TreatmentRow`: visits, answers, clocks) and
the order it lets the person's requests through in: a request that follows an answer not
yet read is held, and put back on `hosp.requests` once that answer is read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from messages.codes import ErrorCode
from messages.envelope import error_answer, inf_time_stamp
from settlement.retention import (
    HORIZON_DAYS,
    WINDOW_DAYS,
    cutoff,
    forget_answers,
    horizon,
    msgid_stamp,
    past_horizon,
)

OUTPATIENT, INPATIENT = "outpatient", "inpatient"
OPEN, DISCHARGED, CANCELLED, REVERSED = "open", "discharged", "cancelled", "reversed"


#: The key of `TreatmentRow.clocks` that a row of before 12-05 keeps its person's clock under
#: (no fixmedins_code is empty): the clock of every hospital that has none of its own.
PERSON_CLOCK = ""


@dataclass(slots=True)
class TreatmentRow:
    """A person's visits registered on the treatment side, and the answers given there."""

    visits: dict[str, dict[str, Any]] = field(default_factory=dict)  # mdtrt_id -> visit
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # msgid -> answer
    #: omsgid -> [msgid, oinfno] of a 2601 that came before it (settlement/reversals.py)
    reversed: dict[str, Any] = field(default_factory=dict)
    #: fixmedins_code -> the day of the newest inf_time accepted from that hospital for the
    #: person ("yyyy-MM-dd 00:00:00"): its requests from before that day's operating window
    #: are replays the platform can no longer recognise, and are refused. Per hospital, so
    #: that one whose clock is ahead makes no other's requests stale (settlement/retention.py)
    clocks: dict[str, str] = field(default_factory=dict)
    #: msgid -> [mdtrt_id, setl_id, changes] of a settlement whose answer came back before
    #: this row caught up with the visit it settled (TreatmentPlatform.handle_answer)
    settling: dict[str, Any] = field(default_factory=dict)
    #: msgid -> [mdtrt_id ("" for every visit of the person), wall-clock ms when forwarded]
    #: of a forwarded request whose answer will change a visit (a settlement, a
    #: cancellation, a 2601 the insured side reverses), until that answer is read (`queue_request`)
    pending: dict[str, list[Any]] = field(default_factory=dict)
    #: the requests held back until the answers they follow are read, in the order they
    #: came: {"msgid", "mdtrt_ids", "value", "headers", "released"} (see `queue_request`, `due`)
    held: list[dict[str, Any]] = field(default_factory=list)

    def forget_before(self, before: str, sender: str = "") -> None:
        """Drop the answers, reversals and visits of hospital `sender` ("": of every one)
        nothing has happened to since before `before` (yyyyMMddHHmmss), except a stay whose
        patient is still in hospital (open inpatient) and a visit an answer on its way will
        change (its settlement's, say, sent on the last day before a new one moved the
        hospital's clock): a settled visit is forgotten a window after it was settled (or
        last cancelled), not after it began, and an abandoned registration does not stay for
        ever (see settlement/retention.py)."""
        forget_answers(self.answers, before, sender)
        forget_answers(self.reversed, before, sender)
        forget_answers(self.settling, before, sender)
        forget_answers(self.pending, before, sender)
        self.held = [h for h in self.held if msgid_stamp(h["msgid"]) >= before
                     or not h["msgid"].startswith(sender)]
        awaited = {v for v, _ in self.pending.values()} | {
            s[0] for s in self.settling.values()}  # an answer on its way will change them
        for mdtrt_id in [k for k, v in self.visits.items()
                         if last_touched(v) < before and k not in awaited
                         and v["fixmedins_code"].startswith(sender)
                         and not (v["kind"] == INPATIENT and v["status"] == OPEN)]:
            del self.visits[mdtrt_id]

    def forget_stale(self, sender: str) -> None:
        """Forget what hospital `sender` did past the window of its clock, and what every
        hospital did past the person's horizon (settlement/retention.py): exactly what an
        older request would no longer be recognised by, so such a request is refused
        (E6003)."""
        if clock := self.clocks.get(sender):
            self.forget_before(cutoff(clock), sender)
        if before := horizon(self.clocks):
            self.forget_before(before)
            past_horizon(self.clocks, before)

    def clock(self, sender: str) -> str:
        """Hospital `sender`'s clock for the person; in a row of before 12-05, never earlier
        than the person's clock of then (PERSON_CLOCK), which forgot every hospital's part by
        it: a hospital whose own clock is behind it must not reach back past what is gone (a
        2601 of a forgotten settlement taken as a reversal in advance, say)."""
        return max(self.clocks.get(sender, ""), self.clocks.get(PERSON_CLOCK, ""))

    def stale(self, sender: str, inf_time: str) -> str:
        """Why a request of `sender`'s dated `inf_time` is a replay the platform can no longer
        recognise (E6003), or "" if it is not. Judged by the sender's own clock, it names
        that day: the platform takes each hospital's `inf_time` as its clock, so one request
        dated ahead by mistake (a HIS's clock, a test's date) moves it, and the HIS needs to
        see that. Another hospital's day is not told (when the person was there is theirs)."""
        stamp = inf_time_stamp(inf_time)
        if (clock := self.clock(sender)) and stamp < cutoff(clock):
            day = f" (of {clock[:10]})" if clock == self.clocks.get(sender) else ""
            return f"more than {WINDOW_DAYS} days before this hospital's latest request for " \
                   f"this person{day}"
        if (before := horizon(self.clocks)) and stamp < before:
            return f"more than {HORIZON_DAYS} days before the person's latest requests at two " \
                   "hospitals"
        return ""

    def copy(self) -> TreatmentRow:
        """A copy whose forgetting leaves this row as it was (the visits themselves are
        shared: a refused request changes none)."""
        return TreatmentRow(dict(self.visits), dict(self.answers), dict(self.reversed),
                            dict(self.clocks), dict(self.settling), dict(self.pending),
                            [dict(h) for h in self.held])

    def due(self, now_ms: int = 0) -> list[dict[str, Any]]:
        """The held requests to put on `hosp.requests` again now, in order, marked released:
        those before the first still held back by a pending answer. Each is taken when it
        comes back (`queue_request`). One lost on the way in a crash is put back again when a copy
        behind it comes first, or when the answer that released it comes again (`on_the_way`:
        the crash kept its offset from being committed).

        Two limits, so that nothing is held for ever (`now_ms`: the wall clock; 0 checks
        neither): a pending answer that holds back the first held request (or that the first
        is a copy of) is given up once both have waited HOLD_LIMIT_MS (its role failed on
        it, say), and that request is decided anew when it comes back; and a request put back
        MAX_PUT_BACKS times without being taken (its copy's role failed each time) leaves
        the queue, returned with `"given_up": True` and its error `"answer"`, kept in the row
        for a duplicate."""
        if now_ms and self.held:
            head = self.held[0]
            for msgid, (visit, since) in list(self.pending.items()):
                holds_head = msgid == head["msgid"] or (
                    _holds(visit, head["mdtrt_ids"]) and _sent_before(msgid, head["msgid"]))
                if holds_head and now_ms - max(since, head["since_ms"]) > HOLD_LIMIT_MS:
                    del self.pending[msgid]
        out = []
        for held in list(self.held):
            if held["released"]:
                continue  # on its way
            if held["msgid"] in self.pending or _blocked(self, held["msgid"],
                                                         held["mdtrt_ids"]):
                break  # (a copy of a forwarded request waits for that request's answer)
            if now_ms and held["puts"] >= MAX_PUT_BACKS:
                self.held.remove(held)
                answer = error_answer(held["msgid"], ErrorCode.INTERNAL_ERROR, (
                    f"held for an answer it follows, then put back {held['puts']} times "
                    "without being taken: given up"))
                self.answers[held["msgid"]] = answer  # a copy sent again is told the same,
                out.append({**held, "given_up": True, "answer": answer})  # not decided anew
                continue
            held["released"] = True
            held["puts"] += 1
            out.append(held)
        return out

    def on_the_way(self) -> list[dict[str, Any]]:
        """The held requests put back and not yet taken: put back again when an answer
        comes a second time, in case a crash lost them with that answer's first reading (a
        copy that comes twice is taken once; the second is a duplicate)."""
        return [held for held in self.held if held["released"]]

    def to_dict(self) -> dict[str, Any]:
        d = {"visits": self.visits, "answers": self.answers, "reversed": self.reversed,
             "clocks": self.clocks}
        for name in ("settling", "pending", "held"):  # often empty: not written at all then
            if value := getattr(self, name):
                d[name] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TreatmentRow:
        clocks = d.get("clocks")
        if clocks is None:  # a row of before 12-05: the person's clock, kept as the clock of
            latest = d.get("latest", "")  # every hospital without one (`clock`)
            clocks = {PERSON_CLOCK: latest} if latest else {}
        return cls(d["visits"], d["answers"], d.get("reversed", {}), clocks,
                   d.get("settling", {}), d.get("pending", {}), d.get("held", []))


def touch(visit: dict[str, Any], stamp: str) -> None:
    """Note that a request of time `stamp` (yyyyMMddHHmmss) changed the visit."""
    if stamp > visit.get("touched", ""):
        visit["touched"] = stamp


def touch_all(visits: Iterable[dict[str, Any]], stamp: str) -> None:
    """Note that a hospital request of time `stamp` changed these visits: each counts the
    requests that changed it, in the order its person's requests come, which a redelivery
    after a restart repeats (TreatmentPlatform.handle_answer)."""
    for visit in {id(v): v for v in visits}.values():
        touch(visit, stamp)
        visit["changes"] = visit.get("changes", 0) + 1


def last_touched(visit: dict[str, Any]) -> str:
    return visit.get("touched") or inf_time_stamp(visit["begntime"])


#: What `queue_request` decided: hold the request back, take a copy put back (`due`), go on, or
#: refuse it for the moment (the held requests would be over HELD_BYTES).
HELD, TAKEN, GO, FULL = "held", "taken", "go", "full"


#: How long a pending answer holds back the first held request at most, counted from the
#: later of the forward and the hold (wall clock): not read by then, it is taken for lost
#: (its role failed on it, say), and what waits behind it goes ahead. Long enough for a
#: restarted worker to recover its tables and read its answers again; the hospital has given
#: up waiting long before (30 s by default), but a person's requests are not held for ever
#: behind one failure.
HOLD_LIMIT_MS = 300_000
#: How many times a held request is put back at most (`due`): one whose copy is never taken
#: (its role failed on it each time) is then answered with an error, and leaves the queue.
MAX_PUT_BACKS = 5
#: The bytes of held requests a person's row keeps at most: a request beyond them is refused
#: for the moment (E9002, not kept), rather than make the row too large to write or let it
#: overtake those held before it.
HELD_BYTES = 384 * 1024


def queue_request(row: TreatmentRow, msgid: str, mdtrt_ids: set[str], raw: bytes,
                  headers: Mapping[str, bytes], now_ms: int = 0) -> str:
    """Whether a request goes ahead now. A worker restarted after a crash that lost this
    row's last writes reads hospital requests and insured answers again, each from its own
    topic at its own pace, and may read a request before an answer it followed the first
    time: decided then, it would be answered otherwise than it was (a fee upload sent after
    the settlement's answer accepted, a new settlement after a cancellation's answer
    refused). So a request that follows a pending answer for a visit it names (`_blocked`),
    or comes while others are held, is held back; `due` puts it back on `hosp.requests` once
    what held it is read, and that copy goes ahead if it heads the queue and nothing holds it
    back, else waits to be put back again. The hospital waits for a settlement's answer
    before the visit's next request, so nothing is held in a run without a crash, unless a
    hospital does not wait."""
    for i, held in enumerate(row.held):
        if held["msgid"] == msgid and held["released"]:
            if i == 0 and not _blocked(row, msgid, held["mdtrt_ids"]):
                del row.held[0]
                return TAKEN
            # held back again, or come before those ahead of it, whose copies a crash lost
            # on the way (they were put back in order): all of them are put back again
            for ahead in row.held[:i + 1]:
                ahead["released"] = False
            return HELD
    if not holds_back(row, msgid, mdtrt_ids):
        return GO
    if not fits(row, raw):
        return FULL
    row.held.append(held_entry(msgid, mdtrt_ids, raw, headers, now_ms))
    return HELD


def holds_back(row: TreatmentRow, msgid: str, mdtrt_ids: Iterable[str]) -> bool:
    """Whether a request new to the queue waits: behind those held, or for a pending
    answer it follows."""
    return bool(row.held) or _blocked(row, msgid, mdtrt_ids)


def fits(row: TreatmentRow, raw: bytes) -> bool:
    return sum(len(h["value"]) for h in row.held) + len(raw) <= HELD_BYTES


def held_entry(msgid: str, mdtrt_ids: Iterable[str], raw: bytes,
               headers: Mapping[str, bytes], now_ms: int) -> dict[str, Any]:
    return {"msgid": msgid, "mdtrt_ids": sorted(mdtrt_ids), "value": raw.decode(),
            "headers": {k: v.decode("latin-1") for k, v in headers.items()},
            "released": False, "since_ms": now_ms, "puts": 0}


def unhold(row: TreatmentRow, msgid: str) -> bool:
    """Drop the held copies of `msgid` (answered without them): whether there were any."""
    kept = [h for h in row.held if h["msgid"] != msgid]
    dropped = len(kept) < len(row.held)
    row.held = kept
    return dropped


#: In the visits a request is held for: any of the person's. A request to the insured place
#: waits for every earlier pending answer of the person's, whatever visit it changes: one
#: visit's settlement may travel by the national platform and another's straight to the
#: insured place, and the insured place must take them in the order the treatment side did
#: (the deductible, the cap and the account fall on the first). So does a 2601, which names
#: no visit: one of a fee upload or a discharge decided while the visit's settlement is on
#: its way would undo what that settlement counted (the oracle refuses it, E4002).
ANY_VISIT = "*"


def _holds(visit: str, mdtrt_ids: Iterable[str]) -> bool:
    """Whether a pending answer that will change `visit` ("" for any) holds back a request
    for `mdtrt_ids`."""
    return not visit or visit in mdtrt_ids or ANY_VISIT in mdtrt_ids


def _blocked(row: TreatmentRow, msgid: str, mdtrt_ids: Iterable[str]) -> bool:
    """Whether an answer still pending, to a request sent before `msgid`, will change one of
    the visits `mdtrt_ids` (or any, for a 2601's; `_holds`)."""
    return any(_holds(visit, mdtrt_ids) and _sent_before(pending, msgid)
               for pending, (visit, _) in row.pending.items())


def _sent_before(a: str, b: str) -> bool:
    """Whether msgid `a` was sent before `b`: one sender's by the whole msgid (its stamp,
    then its sequence number), two senders' by their stamps."""
    return a < b if a[:12] == b[:12] else msgid_stamp(a) < msgid_stamp(b)


def visits_named(data: Mapping[str, Any]) -> set[str]:
    """The visits a request names: its input's mdtrt_id, or its fee items'."""
    inp = data.get("input")
    if not isinstance(inp, dict):
        return set()
    items = inp.get("feedetail")
    named = [inp.get("mdtrt_id"), *(i.get("mdtrt_id") for i in items if isinstance(i, dict))
             ] if isinstance(items, list) else [inp.get("mdtrt_id")]
    return {m for m in named if isinstance(m, str)}


def catch_up(row: TreatmentRow, sent_after: str = "") -> bool:
    """Mark settled the visits that have caught up with a settlement that waits for them,
    and those of the settlements of its hospital that a request `sent_after` (a msgid) came
    after: the requests the visit waited for were answered otherwise this time (after a
    cancellation's answer read late, say), and it would wait for ever. Whether any was. (By
    the same hospital's msgids only: another's clock says nothing of this one's order.)"""
    due = False
    for msgid in sorted(row.settling, key=msgid_stamp):
        mdtrt_id, setl_id, changes = row.settling[msgid]
        visit = row.visits.get(mdtrt_id)
        caught_up = visit is not None and visit.get("changes", 0) >= changes
        if caught_up or (msgid[:12] == sent_after[:12] and msgid_stamp(msgid) <
                         msgid_stamp(sent_after)):
            del row.settling[msgid]
            due = True
            if visit is not None and not undone_in(row, setl_id):
                visit["setl_id"] = setl_id
                touch(visit, msgid_stamp(msgid))
    return due


def undone_in(row: TreatmentRow, setl_id: str) -> bool:
    """Whether an answer kept in the row cancelled or reversed settlement `setl_id`: its
    settlement answer, come back late, must not mark the visit settled again."""
    for ans in row.answers.values():
        out = ans.get("output") if ans.get("infcode") == 0 else None
        if isinstance(out, dict) and setl_id in (
                out.get("reversed_setl_id"), (out.get("setlinfo") or {}).get("init_setl_id")):
            return True
    return False


