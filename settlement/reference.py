"""Master data every platform holds: hospitals, catalogues, policies and the insured persons
(参保登记) with their filings. Built by the simulator's world, loaded by every worker."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from messages.envelope import province_of
from settlement.catalogue import Catalogue
from settlement.policy import InsurancePolicy


@dataclass(frozen=True, slots=True)
class Hospital:
    """A designated institution (定点医疗机构): `H` + city admdvs + 5 digits, level 1–3."""

    fixmedins_code: str
    name: str
    admdvs: str  # city
    level: int

    @property
    def province(self) -> str:
        return province_of(self.admdvs)


@dataclass(frozen=True, slots=True)
class Enrollment:
    """An insured person as their insured-place platform registered them."""

    certno: str
    psn_no: str
    insutype: str  # 310 employees, 390 residents
    insuplc_admdvs: str  # insured city
    retired: bool
    balance: int  # personal account at the start of the simulation, fen (0 for residents)
    filed: bool = False  # 异地就医备案 on file with the insured province
    gend: str = "1"
    brdy: str = ""

    @property
    def province(self) -> str:
        return province_of(self.insuplc_admdvs)


@dataclass(frozen=True, slots=True)
class ReferenceData:
    hospitals: Mapping[str, Hospital]
    catalogues: Mapping[str, Catalogue]  # by province admdvs
    policies: Mapping[str, InsurancePolicy]  # by province admdvs
    enrollments: Mapping[str, Enrollment]  # by certno
    provinces: Mapping[str, str] = field(default_factory=dict)  # admdvs -> name
