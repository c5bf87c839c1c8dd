"""A 2601 that arrives before what it reverses (DOMAIN.md §4: "if it has not arrived yet,
remember the reversal so that the late original is refused. Either order ends in the same
state").

A 2601 names its original's kind (`oinfno`). When the original comes first, a 2601 that
misnames it is refused (E4012) and the original stands. So when the 2601 comes first, the
late original is refused (E4011) only if the 2601 named its kind as the platform tells kinds
apart; otherwise it goes ahead, as it would have stood. A cancellation (2208/2305) is never
reversed, in either order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from messages.codes import FEE_UPLOADS, PRESETTLEMENTS, REGISTRATIONS, SETTLEMENTS, Infno
from settlement.retention import cutoff, msgid_stamp

#: The kinds of original a 2601 tells apart; named as one, an original of another is not
#: the one it reverses. Queries and pre-settlements are one kind: nothing to undo.
KINDS: tuple[frozenset[str], ...] = (
    SETTLEMENTS, REGISTRATIONS, FEE_UPLOADS,
    PRESETTLEMENTS | {Infno.PERSON_INFO, Infno.ACCUMULATORS},
    frozenset({Infno.OUTPATIENT_REGISTER_CANCEL}), frozenset({Infno.INPATIENT_DISCHARGE}),
)

#: How far ahead of a 2601 the request it reverses may be dated: a 2601 may come before
#: its original (a HIS that gave up on a request reverses it; the simulated hospitals send
#: such a 2601 a step ahead, 6 hours at most), but one naming a request dated days later
#: names none a HIS is about to send, and would be remembered as long as that date.
AHEAD_DAYS = 1
TOO_FAR_AHEAD = (f"omsgid is dated more than {AHEAD_DAYS} day after this 2601: it names "
                 "no request sent or about to be")


def ahead_of(omsgid: str, inf_time: str) -> bool:
    """Whether `omsgid` is dated past what a 2601 sent at `inf_time` may name."""
    return msgid_stamp(omsgid) > cutoff(inf_time, -AHEAD_DAYS)


def names(oinfno: str, infno: str) -> bool:
    """Whether a 2601 naming `oinfno` reverses an original of `infno`."""
    return any(oinfno in kind and infno in kind for kind in KINDS)


def in_advance(oinfno: str, reversal_msgid: str) -> list[str]:
    """What a row keeps of a 2601 that came before its original (by the original's msgid)."""
    return [reversal_msgid, oinfno]


def reversed_by(kept: Mapping[str, Any], msgid: str, infno: str) -> str | None:
    """The msgid of the 2601 that reversed request `msgid` (of `infno`) before it came, if
    that 2601 named its kind: the late original is then refused. (A row written before the
    kind was kept holds only the 2601's msgid, which names any kind.)"""
    record = kept.get(msgid)
    if record is None or isinstance(record, str):
        return record
    by, oinfno = record
    return by if names(oinfno, infno) else None
