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

    def __post_init__(self) -> None:
        if self.level not in (1, 2, 3):  # the policy's deductibles and ratios are by level
            raise ValueError(f"hospital {self.fixmedins_code}: level {self.level} is not 1, 2 "
                             "or 3")

    @property
    def province(self) -> str:
        return province_of(self.admdvs)


def agency_code(province: str) -> str:
    """The sender code of a province's medical-insurance agency (经办机构) when it applies for
    clearing (3203): `J` + the province admdvs + `00000`, 12 characters like a hospital's."""
    return f"J{province}00000"


def is_agency_code(code: str) -> bool:
    return code.startswith("J")


@dataclass(frozen=True, slots=True)
class Filing:
    """异地就医备案: permission to be treated in `province` between two dates (inclusive).
    `long-term` for persons living there (异地长期居住), `referral` for a transfer (转诊)."""

    fil_type: str
    province: str
    begndate: str  # yyyy-MM-dd
    enddate: str

    def covers(self, province: str, day: str) -> bool:
        return self.province == province and self.begndate <= day <= self.enddate

    def as_dict(self) -> dict[str, str]:
        return {"fil_type": self.fil_type, "mdtrtarea_prov": self.province,
                "begndate": self.begndate, "enddate": self.enddate}


PERMIT, DENY_CROSS_REGION = "permit", "deny-cross-region"  # a person's EHR sharing Consent
ACTIVE = "1"  # psn_insu_stas: 正常参保
SUSPENDED = "2"  # 暂停参保: identified, but not settled


@dataclass(frozen=True, slots=True)
class Enrollment:
    """An insured person as their insured-place platform registered them."""

    certno: str
    psn_no: str
    insutype: str  # 310 employees, 390 residents
    insuplc_admdvs: str  # insured city
    retired: bool
    balance: int  # personal account at the start of the simulation, fen (0 for residents)
    filings: tuple[Filing, ...] = ()  # the insured province's filing registry for this person
    insu_stas: str = ACTIVE
    gend: str = "1"
    brdy: str = ""
    ehr_sharing: str = PERMIT  # the person's Consent to sharing their health records

    @property
    def province(self) -> str:
        return province_of(self.insuplc_admdvs)

    def filed_for(self, province: str, day: str) -> bool:
        return any(f.covers(province, day) for f in self.filings)


@dataclass(frozen=True, slots=True)
class ReferenceData:
    hospitals: Mapping[str, Hospital]
    catalogues: Mapping[str, Catalogue]  # by province admdvs
    policies: Mapping[str, InsurancePolicy]  # by province admdvs, before any change
    enrollments: Mapping[str, Enrollment]  # by certno
    provinces: Mapping[str, str] = field(default_factory=dict)  # admdvs -> name
    #: days a lab result stays valid for reuse, by the reusing hospital's province (a
    #: policy file's `lab_validity_days`); a province left out takes DOMAIN.md's 30
    lab_validity_days: Mapping[str, int] = field(default_factory=dict)
    #: a province's policy changes (a policy file's `changes`): the days, in order, each
    #: with the policy from then on
    policy_changes: Mapping[str, tuple[tuple[str, InsurancePolicy], ...]] = field(
        default_factory=dict)

    def policy_on(self, province: str, day: str) -> InsurancePolicy:
        """The policy `province` settles by on `day` (yyyy-MM-dd: the settlement's)."""
        policy = self.policies[province]
        for since, changed in self.policy_changes.get(province, ()):
            if since > day:
                break
            policy = changed
        return policy
