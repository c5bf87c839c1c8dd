"""Where a request went: every record on the platform's topics that names its msgid (the
request itself, what each hop forwarded, the rows that remember it, its answer), with whether
the platform's consumer group has committed past it. For a request left unanswered, the last
hop it reached says where it stopped: never on `hosp.requests` (the broker or the hospital
lost it), there and forwarded nowhere (the worker: not committed, it has not taken it;
committed, it took it and sent nothing on), answered on `hosp.responses` but not received
(the hospitals' reading). A group commits every few seconds, so a record taken moments ago
can still read as not committed. Only where a record is and when: never its key or body,
which may hold personal data."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from messages.envelope import msgid_shaped
from messages.topics import HOSP_REQUESTS, MONEY_EVENTS, PERSON_KEYED, RECON_REQUESTS
from streams.dead_letters import TopicMissing
from streams.partition_ends import true_ends

#: The topics the platform's consumer group reads (commits offsets on).
READ_BY_GROUP = frozenset({*PERSON_KEYED, MONEY_EVENTS, RECON_REQUESTS})

#: How long one poll waits for more while a partition's end has not been reached.
POLL_MS = 500


@dataclass(frozen=True, slots=True)
class Sighting:
    """One record that names the msgid. `committed`: whether the platform's consumer group
    has committed past it (None on a topic the group does not read: the hospitals' answers,
    dead letters, the audit trail, the tables' changelogs)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    committed: bool | None

    def where(self) -> str:
        mark = {True: " committed", False: " NOT COMMITTED", None: ""}[self.committed]
        return f"{self.topic}[{self.partition}]@{self.offset}{mark}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Trail:
    """The sightings of each msgid asked for, oldest first. `complete`: every topic was read
    to its end before the time allowed ran out. `problem`: why the cluster could not be read."""

    sightings: dict[str, list[Sighting]]
    complete: bool
    problem: str = ""
    #: the consumer group read, and whether it had committed anything on the cluster (None:
    #: the cluster would not say, and no sighting is marked either way)
    group: str = "huimin"
    group_committed: bool | None = True

    def lines(self, infnos: Mapping[str, str] | None = None) -> list[str]:
        """One line a msgid (with its infno, where `infnos` has it): where it was seen."""
        if self.problem:
            return [f"not followed: {self.problem}"]
        infnos = infnos or {}
        return [f"{msgid}{f' ({infnos[msgid]})' if msgid in infnos else ''}: "
                + (", ".join(_places(seen)) or "on no topic")
                + ("" if msgid_shaped(msgid) else
                   " (nor of a msgid's shape: H or J and 29 digits)" if not seen else
                   " (not of a msgid's shape: every record that contains it)")
                for msgid, seen in self.sightings.items()] + (
            [] if self.complete else ["(the topics were not all read to their end in time)"]
        ) + ([f"(the consumer group {self.group!r} has committed nothing on this cluster, not "
              "yet or by no such name, so NOT COMMITTED says nothing of the platform's "
              "workers: their group is `huimin` unless they were given another, --group)"]
             if self.group_committed is False and any(
                 s.committed is False for seen in self.sightings.values() for s in seen)
             else [f"(the cluster would not say what the consumer group {self.group!r} has "
                   "committed: no record is marked committed or not)"]
             if self.group_committed is None and any(self.sightings.values()) else [])

    def to_dict(self) -> dict[str, Any]:
        return {"complete": self.complete, "problem": self.problem, "group": self.group,
                "group_committed": self.group_committed,
                "sightings": {m: [s.to_dict() for s in seen]
                              for m, seen in self.sightings.items()}}


#: How a Faust table's changelog topic is named: `<app>-<table>-changelog`.
CHANGELOG_SUFFIX = "-changelog"


def _places(seen: list[Sighting]) -> list[str]:
    """Where each record is, a table changelog's partition said once: the person's row names
    the msgid in every write of it while it keeps the answer (its 7-day window), ~30 of them
    for a busy person's settlement, which buried the hops themselves (`--json` lists each)."""
    rows: dict[tuple[str, int], list[Sighting]] = {}
    order: list[Sighting | tuple[str, int]] = []
    for s in seen:
        if not s.topic.endswith(CHANGELOG_SUFFIX):
            order.append(s)
        elif (key := (s.topic, s.partition)) in rows:
            rows[key].append(s)
        else:
            rows[key] = [s]
            order.append(key)
    out = []
    for place in order:
        if isinstance(place, Sighting):
            out.append(place.where())
            continue
        first, *later = rows[place]
        out.append(first.where() + (f"…@{later[-1].offset} ({len(later) + 1} writes of the row)"
                                    if later else ""))
    return out


def follow_trail(bootstrap: str, msgids: Iterable[str], group: str = "huimin",
                 client_config: dict[str, Any] | None = None,
                 time_allowed_s: float = 60.0) -> Trail:
    """Read every topic on the cluster (internal ones aside) from its start to its end as it
    is now, looking for each msgid's bytes in each record's value. Joins no consumer group
    and commits nothing. A cluster without `hosp.requests` is not the platform's
    (`TopicMissing`): "on no topic" there would read as a request the cluster lost."""
    wanted = {m: m.encode() for m in dict.fromkeys(msgids)}
    found: dict[str, list[Sighting]] = {m: [] for m in wanted}
    known = _committed(bootstrap, group, client_config)
    committed = known or {}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             metrics_enabled=False, client_id="huimin-trail",
                             **(client_config or {}))
    deadline = time.monotonic() + time_allowed_s
    try:
        if HOSP_REQUESTS not in (names := consumer.topics()):
            raise TopicMissing(f"the cluster at {bootstrap} has no topic {HOSP_REQUESTS}, so no "
                               "platform of huimin's ran there (is it the right cluster? the "
                               "platform's topics are made by `huimin topics`)")
        tps = [TopicPartition(t, p) for t in sorted(names) if not t.startswith("__")
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        starts = consumer.beginning_offsets(tps)  # before `true_ends` (streams/dead_letters.py)
        ends = true_ends(consumer, consumer.end_offsets(tps))
        left = {tp for tp in tps if ends[tp] > starts[tp]}
        consumer.assign(sorted(left))
        for tp in left:
            consumer.seek(tp, starts[tp])
        while left and wanted and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=POLL_MS).items():
                for rec in records:
                    for msgid, needle in wanted.items():
                        if rec.value and needle in rec.value:
                            found[msgid].append(Sighting(
                                tp.topic, tp.partition, rec.offset, rec.timestamp,
                                rec.offset < committed.get(tp, 0)
                                if tp.topic in READ_BY_GROUP and known is not None else None))
            left = {tp for tp in left if consumer.position(tp) < ends[tp]}
            consumer.pause(*(set(consumer.assignment()) - left))
    finally:
        consumer.close()
    return Trail({m: sorted(seen, key=lambda s: (s.timestamp_ms, s.topic, s.offset))
                  for m, seen in found.items()}, complete=not left, group=group,
                 group_committed=None if known is None else bool(known))


def _committed(bootstrap: str, group: str,
               client_config: dict[str, Any] | None) -> dict[TopicPartition, int] | None:
    """The group's committed offsets; none where it has not committed (or does not exist);
    None if the cluster would not say."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="huimin-trail",
                             **(client_config or {}))
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    except KafkaError:
        return None
    finally:
        admin.close()
    return {TopicPartition(tp.topic, tp.partition): om.offset for tp, om in offsets.items()
            if om.offset >= 0}
