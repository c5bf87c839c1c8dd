"""A deterministic synthetic country: the same `WorldSpec` always builds the same world.

Each part draws from its own random stream (seeded by the spec's seed and the part's name), so
changing, say, the number of hospitals does not reshuffle the persons.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass, field, fields
from datetime import date, timedelta
from typing import Any

import orjson

from messages.identity import certno_check_char
from settlement.catalogue import Catalogue, CatalogueEntry, ItemClass
from settlement.clearing import ClearingPolicy
from settlement.parameters import (
    clearing_policy_for,
    lab_validity_days_for,
    parse_parameters,
    policy_changes_for,
    policy_for,
    selfpay_bp_for,
)
from settlement.policy import EMPLOYEE, RESIDENT
from settlement.reference import (
    ACTIVE,
    DENY_CROSS_REGION,
    PERMIT,
    SUSPENDED,
    Enrollment,
    Filing,
    Hospital,
    ReferenceData,
)
from simulators.regions import PROVINCES, city_codes

#: The largest world: ten million insured persons (a million take ~440 MiB in each process
#: that builds the world: docs/performance.md, Memory).
MAX_PERSONS = 10_000_000
#: What a million persons of the world take in each process that builds it: resident memory
#: (MiB) and seconds to build, on the 2-core machine of docs/performance.md (409–440 MiB,
#: 13.5–14.4 s). For telling a user what a large world will cost before it is built.
WORLD_MIB_PER_MILLION = 440
WORLD_BUILD_S_PER_MILLION = 14


def worlds_build_s(persons: int, processes: int, cores: int) -> float:
    """How long to allow `processes` starting at once on `cores` to build a world of
    `persons` each: twice the estimate, for this machine's slow hours. A platform's workers
    answer nothing until theirs is built (10 million persons: ~2.5 min each)."""
    rounds = math.ceil(processes / max(1, cores))
    return 2.0 * persons * WORLD_BUILD_S_PER_MILLION / 1_000_000 * rounds
#: Seeds are stored in JSON as 64-bit integers.
SEED_BOUND = 2**63

#: The days the world's filings are in force (inclusive, yyyy-MM-dd): long-term residence
#: elsewhere (异地长期居住), and a referral (转诊). Fixed, like the persons' ages (of 2026):
#: visits of another period are the same persons', and outside these days their
#: cross-province visits are un-filed (`filings_left_out`).
LONG_TERM_FILING = ("2026-01-01", "2028-12-31")
REFERRAL_FILING = ("2026-11-01", "2027-03-31")


def filings_left_out(first_day: str, last_day: str) -> list[str]:
    """The world's filings not in force on every day from `first_day` to `last_day`
    (yyyy-MM-dd), each said with its days: for telling whoever chose the period that those
    persons' visits outside them are settled as un-filed (DOMAIN.md's cut), as they are."""
    return [f"{kind} filings ({begin} – {end})"
            for kind, (begin, end) in (("long-term", LONG_TERM_FILING),
                                       ("referral", REFERRAL_FILING))
            if not begin <= first_day <= last_day <= end]


#: The Python types a spec's field of each annotated type takes (a bool is not a number).
_FIELD_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
_TYPE_NAMES = {"int": "a whole number", "float": "a number", "str": "text",
               "bool": "true or false"}


def refuse_wrong_types(spec: Any) -> None:
    """A hand-edited log header's field of the wrong type (`"persons": "50"`), named, rather
    than failing later on a comparison."""
    for f in fields(spec):
        allowed = _FIELD_TYPES.get(str(f.type))
        value = getattr(spec, f.name)
        if allowed and (not isinstance(value, allowed) or
                        (bool not in allowed and isinstance(value, bool))):
            raise ValueError(f"{f.name} must be {_TYPE_NAMES[str(f.type)]}")


@dataclass(frozen=True, slots=True)
class WorldSpec:
    """Everything that shapes the world. Serialisable, so workers can rebuild the same world."""

    seed: int = 42
    persons: int = 5_000
    cities_per_province: int = 3
    hospitals_per_city: int = 2
    catalogue_items: int = 300
    employee_share: float = 0.6
    away_share: float = 0.15  # persons living in another province (异地长期居住)
    filed_share: float = 0.7  # of those living away, the share with a filing (备案)
    referral_share: float = 0.05  # persons with a temporary referral filing (转诊备案)
    suspended_share: float = 0.01  # persons whose insurance is suspended (暂停参保)
    deny_sharing_share: float = 0.05  # persons whose Consent denies cross-region sharing
    #: the provinces' policy parameters, as settlement/parameters.py checked them (None:
    #: DOMAIN.md's defaults everywhere); the same in the oracle and in every worker
    parameters: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        """What a hand-edited log header may get wrong, refused with what and why."""
        if type(self.seed) is not int or not -SEED_BOUND <= self.seed < SEED_BOUND:
            raise ValueError("seed must be a whole number of at most 64 bits")
        refuse_wrong_types(self)
        if not 1 <= self.persons <= MAX_PERSONS:
            raise ValueError(f"persons must be 1–{MAX_PERSONS:,}")
        for name, most in (("cities_per_province", 99), ("hospitals_per_city", 99_999),
                           ("catalogue_items", 100_000)):  # 2 and 5 digits of a code
            if not 1 <= getattr(self, name) <= most:
                raise ValueError(f"{name} must be 1–{most:,}")
        for name, value in asdict(self).items():
            if name.endswith("_share") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value} is not a share from 0 to 1")

    def to_dict(self) -> dict[str, Any]:
        """Without `parameters` when there are none: a log without them stays readable by
        the versions before them."""
        d = asdict(self)
        if d["parameters"] is None:
            del d["parameters"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorldSpec:
        return cls(**d)


def rng(seed: int, part: str) -> random.Random:
    return random.Random(f"huimin:{seed}:{part}")


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    code: str
    name: str
    kind: str
    base_price: int  # fen


@dataclass(frozen=True, slots=True)
class World:
    spec: WorldSpec
    ref: ReferenceData
    items: tuple[CatalogueItem, ...]
    cities: dict[str, list[str]]  # province -> city codes
    hospitals_by_province: dict[str, list[Hospital]]
    away_province: dict[str, str]  # certno -> province the person lives in, if not at home


_KINDS = (("drug", "X", 0.5, 1_500), ("service", "00", 0.33, 6_000), ("consumable", "C", 0.17,
                                                                        4_000))


def build_items(spec: WorldSpec) -> tuple[CatalogueItem, ...]:
    """A national item list (医保目录编码): drugs, services and consumables, lognormal prices."""
    r = rng(spec.seed, "items")
    items = []
    for kind, prefix, share, median in _KINDS:
        for i in range(max(1, round(spec.catalogue_items * share))):
            price = max(10, round(median * math.exp(r.gauss(0, 0.9))))
            items.append(CatalogueItem(f"{prefix}{kind[0].upper()}{i + 1:06d}",
                                       f"{kind}-{i + 1}", kind, price))
    return tuple(items)


def build_catalogue(spec: WorldSpec, province: str, items: tuple[CatalogueItem, ...],
                    selfpay_bp: int = 1000) -> Catalogue:
    """Each province classifies the national items its own way (就医地目录); `selfpay_bp` is
    its class-B self-pay share, the same for every B entry (DOMAIN.md §3: a parameter per
    province; until 12-05 two in five B entries had a share of their own, which a policy
    file could not change)."""
    r = rng(spec.seed, f"catalogue:{province}")
    entries = {}
    for it in items:
        roll = r.random()
        if roll < 0.05:
            continue  # not in this province's catalogue: self-paid
        cls = ItemClass.A if roll < 0.5 else ItemClass.B if roll < 0.85 else ItemClass.C
        ceiling = None
        if it.kind != "drug" and r.random() < 0.25:
            ceiling = round(it.base_price * r.uniform(0.8, 1.05))
        if cls is ItemClass.B:  # the item's own share, drawn until 12-05 and no longer used:
            r.choice((None, None, 500, 1500, 2000))  # drawn still, so the rest stays as it was
        entries[it.code] = CatalogueEntry(it.code, it.name, it.kind, cls, ceiling)
    return Catalogue(province, entries, selfpay_bp=selfpay_bp)


def build_hospitals(spec: WorldSpec, cities: dict[str, list[str]]) -> dict[str, list[Hospital]]:
    r = rng(spec.seed, "hospitals")
    out: dict[str, list[Hospital]] = {}
    for province, city_list in cities.items():
        hs = []
        for city in city_list:
            for n in range(1, spec.hospitals_per_city + 1):
                level = 3 if n == 1 else r.choice((1, 2, 2, 3))
                code = f"H{city}{n:05d}"
                hs.append(Hospital(code, f"{PROVINCES[province]}{city[2:4]}市第{n}医院", city,
                                   level))
        out[province] = hs
    return out


def make_certno(birth_city: str, birthday: date, seq: int) -> str:
    first17 = f"{birth_city}{birthday:%Y%m%d}{seq:03d}"
    return first17 + certno_check_char(first17)


def build_persons(spec: WorldSpec, cities: dict[str, list[str]]
                  ) -> tuple[dict[str, Enrollment], dict[str, str]]:
    r = rng(spec.seed, "persons")
    provinces = list(cities)
    all_cities = [c for cs in cities.values() for c in cs]
    enrollments: dict[str, Enrollment] = {}
    away: dict[str, str] = {}
    privacy = rng(spec.seed, "ehr-consent")  # a stream of its own: the rest stays as it was
    serial = 0
    while len(enrollments) < spec.persons:
        province = r.choice(provinces)
        city = r.choice(cities[province])
        birth_city = city if r.random() < 0.8 else r.choice(all_cities)
        birthday = date(1940, 1, 1) + timedelta(days=r.randrange(0, 70 * 365))
        certno = make_certno(birth_city, birthday, r.randrange(1, 1000))
        if certno in enrollments:
            continue
        serial += 1
        employee = r.random() < spec.employee_share
        age = 2026 - birthday.year
        retired = employee and age >= 60
        lives_away = r.random() < spec.away_share
        filings: list[Filing] = []
        if lives_away:
            away[certno] = r.choice([p for p in provinces if p != province])
            if r.random() < spec.filed_share:
                filings.append(Filing("long-term", away[certno], *LONG_TERM_FILING))
        if r.random() < spec.referral_share:
            target = r.choice([p for p in provinces if p != province])
            filings.append(Filing("referral", target, *REFERRAL_FILING))
        suspended = r.random() < spec.suspended_share
        balance = r.randrange(0, 500_000) if employee else 0
        enrollments[certno] = Enrollment(
            certno=certno,
            psn_no=f"{city}{serial:020d}",
            insutype=EMPLOYEE if employee else RESIDENT,
            insuplc_admdvs=city,
            retired=retired,
            balance=balance,
            filings=tuple(filings),
            insu_stas=SUSPENDED if suspended else ACTIVE,
            gend="1" if int(certno[16]) % 2 else "2",
            brdy=f"{birthday:%Y-%m-%d}",
            ehr_sharing=DENY_CROSS_REGION if privacy.random() < spec.deny_sharing_share
            else PERMIT,
        )
    return enrollments, away


def build_world(spec: WorldSpec) -> World:
    cities = {p: city_codes(p, spec.cities_per_province) for p in PROVINCES}
    items = build_items(spec)
    hospitals_by_province = build_hospitals(spec, cities)
    enrollments, away = build_persons(spec, cities)
    parameters = parse_parameters(spec.parameters, PROVINCES)
    ref = ReferenceData(
        hospitals={h.fixmedins_code: h for hs in hospitals_by_province.values() for h in hs},
        catalogues={p: build_catalogue(spec, p, items, selfpay_bp_for(parameters, p))
                    for p in PROVINCES},
        policies={p: policy_for(parameters, p) for p in PROVINCES},
        enrollments=enrollments,
        provinces=dict(PROVINCES),
        lab_validity_days={p: lab_validity_days_for(parameters, p) for p in PROVINCES},
        policy_changes={p: changes for p in PROVINCES
                        if (changes := policy_changes_for(parameters, p))},
    )
    return World(spec, ref, items, cities, hospitals_by_province, away)


def clearing_policy(spec: WorldSpec) -> ClearingPolicy:
    """The national clearing's prepayment parameters of the world's provinces."""
    return clearing_policy_for(parse_parameters(spec.parameters, PROVINCES), PROVINCES)


def world_tag(spec: WorldSpec) -> str:
    """What decides a platform's answers besides the requests, in one line: the seed, the
    persons and a digest of the rest (the world's shape and each province's policy as it takes
    effect, so a file spelling out the defaults tags as no file does). Workers name it in
    their answers to a hospital's sign-in, so a replay against a platform started with other
    options stops at once and says so, instead of failing thousands of visits."""
    parameters = parse_parameters(spec.parameters, PROVINCES)
    shape = {k: v for k, v in asdict(spec).items() if k != "parameters"}
    clearing = clearing_policy(spec)
    policies = {p: [repr(policy_for(parameters, p)), selfpay_bp_for(parameters, p),
                    clearing.months_for(p), clearing.expected_monthly_payable.get(p),
                    lab_validity_days_for(parameters, p)]
                + [[since, repr(policy)] for since, policy in policy_changes_for(parameters, p)]
                for p in sorted(PROVINCES)}  # a world of no changes tags as before them
    digest = hashlib.sha256(orjson.dumps([shape, policies], option=orjson.OPT_SORT_KEYS))
    default = parse_parameters(None, PROVINCES)
    policy = ("DOMAIN.md's policy" if all(
        policy_for(parameters, p) == policy_for(default, p)
        and selfpay_bp_for(parameters, p) == selfpay_bp_for(default, p)
        and lab_validity_days_for(parameters, p) == lab_validity_days_for(default, p)
        and clearing.months_for(p) == ClearingPolicy().prepayment_months
        and p not in clearing.expected_monthly_payable
        and not policy_changes_for(parameters, p) for p in PROVINCES)
        else "a policy file's")
    return (f"seed {spec.seed}, {spec.persons:,} persons, {policy} "
            f"(world {digest.hexdigest()[:12]})")
