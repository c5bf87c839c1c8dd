"""records/pix.py: which person an identifier names in the national cross-reference, and the
identifiers the person has elsewhere (the operator's $ihe-pix view over it: tests/
test_e2e_records.py)."""

from __future__ import annotations

import pytest

from messages.identity import CERTNO_SYSTEM
from records.codes import PSN_NO_SYSTEM
from records.exchange import IndexRow
from records.pix import NamesSeveralPersons, identifiers_elsewhere, person_named, province_meant
from tests.handmade import EMP_CERTNO, ENROLLMENTS, RES_CERTNO, reference_data

REF = reference_data()
EMP = ENROLLMENTS[EMP_CERTNO]
MRN = {"system": "urn:oid:1.2.156.112606", "value": "MRN-1"}
ROWS = {EMP_CERTNO: IndexRow(identifiers=[MRN]), RES_CERTNO: IndexRow()}


def named(system: str, value: str, rows: dict[str, IndexRow] = ROWS
          ) -> tuple[str | None, IndexRow | None]:
    return person_named(system, value, REF, lambda: rows.items(), rows.get)


def test_a_citizen_id_names_its_person_and_an_insurance_number_is_read_from_the_register():
    assert named(CERTNO_SYSTEM, EMP_CERTNO) == (EMP_CERTNO, ROWS[EMP_CERTNO])
    assert named(f"{PSN_NO_SYSTEM}:{EMP.province}", EMP.psn_no) == (EMP_CERTNO, ROWS[EMP_CERTNO])
    # an insurance number under another province's system names no one
    assert named(f"{PSN_NO_SYSTEM}:310000", EMP.psn_no) == (None, None)
    # a citizen ID not valid is looked for as any other identifier, and not found
    assert named(CERTNO_SYSTEM, EMP_CERTNO[:-1] + "0") == (None, None)


def test_a_published_identifier_names_the_person_whose_row_holds_it_unless_two_do():
    assert named(MRN["system"], MRN["value"]) == (EMP_CERTNO, ROWS[EMP_CERTNO])
    both = {**ROWS, RES_CERTNO: IndexRow(identifiers=[MRN])}
    with pytest.raises(NamesSeveralPersons):
        named(MRN["system"], MRN["value"], both)


def test_the_identifiers_elsewhere_leave_out_the_one_asked_by_and_keep_those_wanted():
    source = (f"{PSN_NO_SYSTEM}:{EMP.province}", EMP.psn_no)
    every = identifiers_elsewhere(EMP_CERTNO, EMP, ROWS[EMP_CERTNO], source, set())
    assert every == [{"system": CERTNO_SYSTEM, "value": EMP_CERTNO}, MRN]
    assert identifiers_elsewhere(EMP_CERTNO, EMP, ROWS[EMP_CERTNO], source,
                                 {CERTNO_SYSTEM}) == [{"system": CERTNO_SYSTEM,
                                                       "value": EMP_CERTNO}]


def test_an_insurance_number_system_naming_a_city_is_told_its_province():
    assert province_meant(f"{PSN_NO_SYSTEM}:110100", REF.provinces) == "110000"
    assert province_meant(f"{PSN_NO_SYSTEM}:110000", REF.provinces) is None  # the province
    assert province_meant(f"{PSN_NO_SYSTEM}:990100", REF.provinces) is None  # no such one
    assert province_meant(MRN["system"], REF.provinces) is None
