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


def test_a_group_the_cluster_would_not_tell_of_marks_no_record_and_says_so(monkeypatch):
    """Its offsets unknown, every hop read NOT COMMITTED, and no line said why (a review)."""
    import streams.trail as trail

    class Topics:  # one record of the msgid on hosp.requests, read to its end
        def __init__(self, **_: object) -> None:
            self.read = False

        def topics(self) -> set[str]:
            return {"hosp.requests"}

        def partitions_for_topic(self, _: str) -> set[int]:
            return {0}

        def beginning_offsets(self, tps: list) -> dict:
            return {tp: 0 for tp in tps}

        def end_offsets(self, tps: list) -> dict:
            return {tp: 1 for tp in tps}

        def assign(self, _: list) -> None: ...

        def seek(self, *_: object) -> None: ...

        def assignment(self) -> set:
            return set()

        def pause(self, *_: object) -> None: ...

        def poll(self, timeout_ms: int = 0) -> dict:
            self.read = True
            record = type("R", (), {"value": b'{"msgid": "H1"}', "offset": 0, "timestamp": 1})
            return {trail.TopicPartition("hosp.requests", 0): [record]}

        def position(self, _: object) -> int:
            return 1 if self.read else 0

        def close(self) -> None: ...

    monkeypatch.setattr(trail, "KafkaConsumer", Topics)
    monkeypatch.setattr(trail, "true_ends", lambda consumer, ends: ends)
    monkeypatch.setattr(trail, "_committed", lambda *_: None)
    found = trail.follow_trail("127.0.0.1:1", ["H1"])
    assert [s.committed for s in found.sightings["H1"]] == [None]
    assert found.lines() == [
        "H1: hosp.requests[0]@0 (not of a msgid's shape: every record that contains it)",
        "(the cluster would not say what the consumer group 'huimin' has committed: no "
        "record is marked committed or not)"]


def test_a_rows_later_writes_are_said_once_a_changelog_partition_after_the_hops():
    """The person's row names the msgid in every write while it keeps the answer: ~30
    changelog records after a busy person's settlement buried the hops (a user's walk).
    Each changelog partition is said once, at its first write, with its last and how many."""
    seen = [Sighting("hosp.requests", 4, 34, 1, True),
            Sighting("ins.requests", 4, 4, 2, True),
            Sighting("huimin-trt_persons-changelog", 4, 10, 3, None),
            Sighting("trt.answers", 4, 4, 4, True),
            Sighting("huimin-ins_persons-changelog", 4, 4, 5, None),
            Sighting("hosp.responses", 2, 29, 6, None),
            *(Sighting("huimin-trt_persons-changelog", 4, o, 7 + o, None) for o in (11, 20, 41))]
    assert Trail({"H43030000001202612081304000004": seen}, complete=True).lines() == [
        "H43030000001202612081304000004: hosp.requests[4]@34 committed, ins.requests[4]@4 "
        "committed, huimin-trt_persons-changelog[4]@10…@41 (4 writes of the row), "
        "trt.answers[4]@4 committed, huimin-ins_persons-changelog[4]@4, hosp.responses[2]@29"]
    assert len(Trail({"H1": seen}, complete=True).to_dict()["sightings"]["H1"]) == 9
