"""The operating window: how long a platform remembers answers (by msgid), reversals and visits
nothing has happened to since (all but an inpatient stay still open). Within it a duplicate gets
its original answer, a 2601 finds its original and a settled visit can be cancelled at the
hospital's platform; past it they are forgotten, so the bulk of a platform's state is bounded by
the activity of the window, not by its whole history (per hospital; `horizon` bounds how many
hospitals' parts a person's row keeps). The insured side's settlement records
go a window after their last change (made, cancelled, reversed: they can no longer be undone
then); balance and accumulators are never forgotten.

Time is the simulated time of the requests (`inf_time`, and the stamp inside each msgid), so
the oracle and the streamed platform forget exactly the same things. It is kept **per sender**:
what a hospital sent (its msgids, its visits, its settlements) is judged and forgotten by that
hospital's own clock, the newest `inf_time` it sent for the person, never by another's. One
hospital with its clock days or years ahead must not make the platform forget what another
did within its week: that hospital could no longer have its duplicate answered, nor cancel or
reverse a settlement whose answer it lost, and the patient would pay twice.

A hospital's part stays until its own next request for the person, so a person seen by a new
hospital every few days would keep every one's last week, and their rows would outgrow a
record. Hence `horizon`: HORIZON_DAYS before the *second* newest of the person's hospital
clocks, every hospital's part is forgotten and a request from any hospital is a replay. No one
hospital's clock, however far ahead, moves it: that takes two.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from messages.envelope import inf_time_stamp

#: Days a platform remembers (a *parameter*; NHSA reversal and cancellation are same-day or
#: same-period operations, so a week is generous).
WINDOW_DAYS = 7
#: Days before the second newest of a person's hospital clocks past which every hospital's
#: part of their rows is forgotten (`horizon`): a person seen by ~30 hospitals in that time
#: keeps ~30 weeks' parts, well within a record.
HORIZON_DAYS = 90


@lru_cache(maxsize=4096)
def cutoff(inf_time: str, days: int = WINDOW_DAYS) -> str:
    """`yyyyMMddHHmmss` of `days` before the request time `yyyy-MM-dd HH:mm:ss`."""
    t = datetime.fromisoformat(inf_time) - timedelta(days=days)
    return t.strftime("%Y%m%d%H%M%S")


def horizon(clocks: Mapping[str, str]) -> str:
    """`yyyyMMddHHmmss` before which every hospital's part of a person's row is forgotten and
    any request is a replay (E6003): HORIZON_DAYS before the second newest of the person's
    hospital clocks ("yyyy-MM-dd 00:00:00" by fixmedins_code); "" with fewer than two."""
    if len(clocks) < 2:
        return ""
    return cutoff(sorted(clocks.values())[-2], HORIZON_DAYS)


def past_horizon(clocks: MutableMapping[str, str], before: str) -> None:
    """Drop the clocks of hospitals whose newest request is before the horizon `before`: all
    they sent is refused by it anyway (`horizon` keeps the map as bounded as the row)."""
    for sender in [s for s, clock in clocks.items() if inf_time_stamp(clock) < before]:
        del clocks[sender]


def advance(clocks: MutableMapping[str, str], sender: str, inf_time: str) -> str:
    """Move hospital `sender`'s clock to the day of its request dated `inf_time` if that is
    later, and return the person's horizon then ("" if none), the clocks past it dropped:
    how the insured side and the record sources, which a request reaches only once the
    treatment side has moved its own clock for it, keep theirs (never later than that one,
    so by the same horizon they forget no sooner than it stops letting requests through; a
    health-record request that went ahead of requests held in the treatment row moves
    neither: `Forward.aside`)."""
    day = inf_time[:10] + " 00:00:00"
    if day > clocks.get(sender, ""):
        clocks[sender] = day
    if before := horizon(clocks):
        past_horizon(clocks, before)
    return before


def day_cutoff(inf_time: str) -> str:
    """`cutoff` of the start of the request's day. The treatment side keeps each hospital's
    clock for a person by the day and refuses only what is older than this (E6003); the
    insured side forgets that hospital's part by it too, so that nothing the treatment side
    still lets through (a late original a 2601 reversed in advance) finds the insured side
    has forgotten it."""
    return cutoff(inf_time[:10] + " 00:00:00")


def msgid_stamp(msgid: str) -> str:
    """The `yyyyMMddHHmmss` inside a msgid (fixmedins_code 12 + stamp 14 + sequence 4)."""
    return msgid[12:26]


def msgid_time(msgid: str) -> str:
    """The msgid's stamp as `yyyy-MM-dd HH:mm:ss`."""
    t = msgid_stamp(msgid)
    return f"{t[:4]}-{t[4:6]}-{t[6:8]} {t[8:10]}:{t[10:12]}:{t[12:14]}"


def forget_answers(answers: MutableMapping[str, Any], before: str, sender: str) -> None:
    """Forget what hospital `sender` ("": every one) sent before `before` (yyyyMMddHHmmss),
    keyed by msgid."""
    for msgid in [m for m in answers if msgid_stamp(m) < before and m.startswith(sender)]:
        del answers[msgid]
