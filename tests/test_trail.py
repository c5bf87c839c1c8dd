"""How a trail reads (streams/trail.py): one line a msgid, with its infno where known, each
record where it is and whether the platform's consumer group is past it; a trail cut short
or not followed says so, and so does one read against a group that committed nothing."""

from __future__ import annotations

from streams.trail import Sighting, Trail

SEEN = {"H1": [Sighting("hosp.requests", 3, 41, 1, True),
               Sighting("huimin-trt_persons-changelog", 3, 7, 2, None),
               Sighting("nat.requests", 3, 12, 3, False)],
        "H2": [], "H33030000001202612072336000009": []}


def test_each_msgid_is_a_line_of_where_its_records_are_with_its_infno_where_known():
    assert Trail(SEEN, complete=True).lines({"H1": "2207"}) == [
        "H1 (2207): hosp.requests[3]@41 committed, huimin-trt_persons-changelog[3]@7, "
        "nat.requests[3]@12 NOT COMMITTED (not of a msgid's shape: every record that "
        "contains it)",
        "H2: on no topic (nor of a msgid's shape: H or J and 29 digits)",
        "H33030000001202612072336000009: on no topic"]


def test_a_trail_not_read_to_the_end_or_not_followed_says_so():
    assert Trail(SEEN, complete=False).lines()[-1] == (
        "(the topics were not all read to their end in time)")
    unread = Trail({}, complete=False, problem="NoBrokersAvailable: NoBrokersAvailable")
    assert unread.lines() == ["not followed: NoBrokersAvailable: NoBrokersAvailable"]
    assert unread.to_dict() == {"complete": False, "sightings": {},
                                "problem": "NoBrokersAvailable: NoBrokersAvailable",
                                "group": "huimin", "group_committed": True}


def test_not_committed_in_a_group_that_committed_nothing_is_said_to_say_little():
    """`--group` mistyped (or the platform's group before its first commit): every hop read
    NOT COMMITTED, which the README reads as "no worker took it" (a user's review)."""
    note = Trail(SEEN, complete=True, group="hiumin", group_committed=False).lines()[-1]
    assert note.startswith("(the consumer group 'hiumin' has committed nothing on this "
                           "cluster"), note
    assert "their group is `huimin`" in note
    committed = Trail(SEEN, complete=True).lines()
    assert not any("has committed nothing" in line for line in committed)
    nothing_read_by_it = {"H1": [Sighting("hosp.responses", 3, 41, 1, None)]}
    assert len(Trail(nothing_read_by_it, complete=True, group_committed=False).lines()) == 1

