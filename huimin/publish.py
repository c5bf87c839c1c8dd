"""`huimin publish`: FHIR files published (7001) to a running platform as one of its
hospitals would publish them, each answer told. An EHR tester's own documents and Consents
go through the platform's ingress, repository and index as the simulated hospitals' do;
finding and reading them is then the FHIR views' (README, Health records)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from messages.codes import Infno
from messages.visitlog import TIME_FORMAT, make_msgid
from records.consent import BEIJING
from settlement.reference import Hospital
from simulators.hospital import HospitalFleet
from simulators.world import WorldSpec, build_world

#: The files one run publishes at most: each needs a sequence number of its own
MOST_FILES = 9_999


def platform_hospitals() -> Mapping[str, Hospital]:
    """The hospitals every platform knows: their codes and places do not depend on the
    world's seed or size (only their levels do, which a publish does not use)."""
    return build_world(WorldSpec(persons=1)).ref.hospitals


def hospital_for(certno: str, code: str | None, hospitals: Mapping[str, Hospital]) -> Hospital:
    """The hospital named, or the first of the province the certno's address code names
    (a person is most often treated at home). ValueError says what to give instead."""
    if code is not None:
        if code not in hospitals:
            raise ValueError(f"{code} is not one of the platform's hospitals "
                             f"({_some(hospitals)})")
        return hospitals[code]
    home = [h for c, h in sorted(hospitals.items()) if h.admdvs[:2] == certno[:2]]
    if not home:
        raise ValueError(f"no hospital of the province the certno names ({certno[:2]}0000): "
                         f"give --hospital ({_some(hospitals)})")
    return home[0]


def _some(hospitals: Mapping[str, Hospital]) -> str:
    codes = sorted(hospitals)
    return f"{codes[0]} … {codes[-1]}, {len(codes)} in all"


@dataclass(frozen=True, slots=True)
class Publish:
    """One file's 7001, as sent (the request holds the file's resource)."""

    path: Path
    request: dict[str, Any]

    @property
    def msgid(self) -> str:
        return str(self.request["msgid"])


def publish_requests(files: list[tuple[int, Path, Any]], hospital: Hospital, at: str | None
                     ) -> list[Publish]:
    """A 7001 for each (place, file, resource), dated `at` (Beijing time) or now; `place` is
    the file's among all those given, from 0, so that one not sent keeps the files after it
    to their numbers. With `at` the n-th file gets sequence number n: the same `at` and
    files give the same msgids, so publishing them again is a duplicate, answered as the
    first (another file under a msgid used is refused, E1005), and a file corrected after it
    was not sent goes under its own. Without `at` the sequence numbers come from the
    clock's milliseconds, so that runs of the same second share msgids only if they start
    fewer milliseconds apart than they have files."""
    if any(place >= MOST_FILES for place, _, _ in files):
        raise ValueError(f"at most {MOST_FILES:,} files a run: a msgid's sequence number has "
                         "four digits")
    inf_time = at or datetime.now(BEIJING).strftime(TIME_FORMAT)
    first = 1 if at else time.time_ns() // 1_000_000
    return [Publish(path, {"infno": str(Infno.EHR_PUBLISH),
                           "msgid": make_msgid(hospital.fixmedins_code, inf_time, first + place),
                           "mdtrtarea_admvs": hospital.admdvs, "insuplc_admdvs": "",
                           "fixmedins_code": hospital.fixmedins_code, "inf_time": inf_time,
                           "input": {"resource": resource}})
            for place, path, resource in files]


@dataclass(frozen=True, slots=True)
class Published:
    """What the platform answered a file's publish (None: no answer in time)."""

    publish: Publish
    answer: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.answer is not None and self.answer.get("infcode") == 0

    @property
    def code(self) -> str:
        if self.answer is None:
            return "no answer"
        return "201" if self.ok else str(self.answer.get("err_code", ""))

    @property
    def what(self) -> str:
        a = self.answer
        if a is None:
            return f"none came in time: `huimin trail {self.publish.msgid}` says where it went"
        if self.ok:
            return str(a["output"]["entry"][0]["response"]["location"])
        issue = ((a.get("output") or {}).get("issue") or [{}])[0]
        where, said = ", ".join(issue.get("expression") or []), str(a.get("err_msg", ""))
        return said + (f" (at {where})" if where and where not in said else "")

    def as_dict(self) -> dict[str, Any]:
        return {"file": str(self.publish.path), "msgid": self.publish.msgid, "ok": self.ok,
                "code": self.code, "what": self.what}


def send_publishes(bootstrap: str, certno: str, publishes: list[Publish], timeout_s: float,
                   client_config: dict[str, Any]) -> list[Published]:
    """Each publish sent, signed by its hospital, and its first answer (None if none came
    within `timeout_s`)."""
    fleet = HospitalFleet(bootstrap, client_config=client_config)
    try:
        answers = fleet.exchange([(certno, p.request) for p in publishes], timeout_s=timeout_s)
    finally:
        fleet.close()
    return [Published(p, got[0] if (got := answers.get(p.msgid)) else None) for p in publishes]


class Unsendable(ValueError):
    """No request could carry the file: nested past what orjson writes, two levels down in
    the request (`input.resource`)."""


def sendable(path: Path) -> Any:
    """A file's JSON (`check_fhir_file` has read it; a UTF-8 byte-order mark passed over),
    whatever it is (`null` too: the platform answers E1002); `Unsendable` if no request
    could carry it."""
    resource = orjson.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf"))
    try:
        orjson.dumps({"input": {"resource": resource}})
    except orjson.JSONEncodeError:
        raise Unsendable(path) from None
    return resource
