"""The national cross-reference's lookup (IHE PIXm, ITI-83), as the operator's
`/fhir/Patient/$ihe-pix` view asks it: which person an identifier names, and the identifiers
that person has in the other domains. Pure: the view (streams/fhir_views.py) reads the index
rows, checks where the person is served and audits the access."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from messages.identity import CERTNO_SYSTEM, is_valid_certno
from records.codes import PSN_NO_SYSTEM
from records.exchange import IndexRow
from settlement.reference import Enrollment, ReferenceData


class NamesSeveralPersons(Exception):
    """The identifier was published for more than one person: neither is the answer."""


def person_named(system: str, value: str, ref: ReferenceData,
                 index_rows: Callable[[], Iterable[tuple[str, IndexRow]]],
                 row_of: Callable[[str], IndexRow | None]) -> tuple[str | None, IndexRow | None]:
    """The certno `system|value` names, and the person's index row, either None if unknown.
    A citizen ID names itself (one not valid is looked for as any identifier, and not
    found); an insurance number is the register's, read through (an operator's rare lookup);
    any other identifier is looked for in every index row (`index_rows`, read only then)."""
    certno = value if system == CERTNO_SYSTEM and is_valid_certno(value) else None
    if certno is None and system.startswith(f"{PSN_NO_SYSTEM}:"):  # as settlements show it
        certno = next((c for c, e in ref.enrollments.items() if e.psn_no == value
                       and system == f"{PSN_NO_SYSTEM}:{e.province}"), None)
    row = None
    for candidate_certno, candidate in index_rows() if certno is None else ():
        if {"system": system, "value": value} in candidate.identifiers:
            if row is not None:
                raise NamesSeveralPersons(system)
            certno, row = candidate_certno, candidate
    if certno is not None and row is None:
        row = row_of(certno)
    return certno, row


def identifiers_elsewhere(certno: str, enrollment: Enrollment | None, row: IndexRow | None,
                          source: tuple[str, str], wanted: set[str]) -> list[dict[str, Any]]:
    """The person's identifiers other than `source` (system, value): the citizen ID, the
    insurance number, and those published in documents; only of the `wanted` systems if any
    are named (ITI-83's targetSystem)."""
    targets = [{"system": CERTNO_SYSTEM, "value": certno}]
    if enrollment is not None:
        targets.append({"system": f"{PSN_NO_SYSTEM}:{enrollment.province}",
                        "value": enrollment.psn_no})
    targets += row.identifiers if row else []
    return [t for t in targets if (t["system"], t["value"]) != source
            and (not wanted or t["system"] in wanted)]


def province_meant(system: str, provinces: Iterable[str]) -> str | None:
    """The province an insurance number's system names a city of (as settlements show the
    insured place), by its shape alone, or None: whether anyone has that number is not told
    (the 404 is not audited)."""
    place = system.removeprefix(f"{PSN_NO_SYSTEM}:")
    if place == system or not place.isdigit() or len(place) != 6 or place.endswith("0000"):
        return None
    province = f"{place[:2]}0000"
    return province if province in provinces else None
