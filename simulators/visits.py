"""The visit generator: a deterministic stream of outpatient visits and inpatient stays over
simulated time, each with the plan of transactions its hospital will send.

Visits concentrate on a minority of persons (2 % of them, chronic patients, make 30 % of the
visits), so deductibles and caps are actually reached. Cross-province visits come from persons
living in another province (most of them filed), from persons with a referral filing, and from
travellers
(never filed). The plans mix in what hospitals really do: pre-settlement before settlement,
fee corrections, cancelled registrations, cancelled and re-done settlements, lost answers
followed by a 2601 reversal, a reversal that arrives before its original, duplicates,
requests out of sequence, and 5206 queries. Each visit also looks up and publishes health
records (7001–7004, DOMAIN.md §6). A person drawn before their last visit has ended is passed
over for the next one free, so that a person's visits seldom overlap in simulated time: they
still may when the whole pool drawn from is busy, or when a fault plan adds more than
FAULT_ROOM_STEPS steps to the earlier visit.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from messages.codes import EHR
from messages.visitlog import (
    EHR_STEP_SECONDS,
    FIRST_YEAR,
    LAST_YEAR,
    STEP_SECONDS,
    TIME_FORMAT,
    Visit,
    VisitItem,
)
from settlement.policy import EMPLOYEE
from simulators.world import World, refuse_wrong_types, rng

#: When the visits begin unless told: December 2026, so that the default 60 days cross a new
#: year and the annual deductibles and caps restart mid-run (docs/design.md, Time).
DEFAULT_START = "2026-12-01 08:00:00"
_LEVEL_PRICE_FACTOR = {1: 0.9, 2: 1.0, 3: 1.15}
#: Steps of room after a person's visit before their next may begin, for those a fault plan
#: adds (a reversal and a resend, a 5206 at the end): most faulty plans fit in it.
FAULT_ROOM_STEPS = 4
#: How many days an inpatient stay lasts (its items are on some of them): 3 to 14.
STAY_DAYS = (3, 14)
#: The generator's version, raised whenever the same seed and options come to give other
#: visits; a visit log's header and a summary's `scenario` carry it, so `huimin compare`
#: does not take runs of two generators for runs of the same visits. 2 (2026-12-07): a
#: person drawn while still in a visit is passed over; the logs and summaries before it say
#: none.
GENERATOR_VERSION = 2


@dataclass(frozen=True, slots=True)
class VisitSpec:
    visits: int = 2_000
    cross_share: float = 0.2
    start: str = DEFAULT_START  # simulated; the default run crosses a new year
    days: int = 60
    traveller_share: float = 0.3  # of cross-province visits, by persons who do not live there
    inpatient_share: float = 0.15
    emergency_share: float = 0.05
    cancel_share: float = 0.08  # settlements cancelled (2208/2305) afterwards
    anomaly_share: float = 0.15  # visits with a protocol anomaly (see `_outpatient_plan`)
    ehr: bool = True  # health-record steps: lab lookup, publish, and find/retrieve
    ehr_find_share: float = 0.2  # of local visits, those that look up the person's records

    def __post_init__(self) -> None:
        """What a hand-edited log header may get wrong, refused with what and why."""
        refuse_wrong_types(self)
        if not 1 <= self.visits <= MAX_VISITS or not 1 <= self.days <= MAX_DAYS:
            raise ValueError(f"visits must be 1–{MAX_VISITS:,} and days 1–{MAX_DAYS:,}")
        for name, value in asdict(self).items():
            if name.endswith("_share") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} {value} is not a share from 0 to 1")
        first, last = self.settled_days()
        if not f"{FIRST_YEAR}" <= first[:4] <= last[:4] <= f"{LAST_YEAR}":
            raise ValueError(f"the visits' days from {first} to {last} (a stay begun on the "
                             f"last of the {self.days:,} days settled {STAY_DAYS[1]} days "
                             f"later) are not all in the years {FIRST_YEAR}–{LAST_YEAR}")

    def settled_days(self) -> tuple[str, str]:
        """The first and last day (yyyy-MM-dd) a visit of this spec may be settled on: the
        span of days, and an inpatient stay begun on its last day (STAY_DAYS)."""
        first = datetime.strptime(self.start, TIME_FORMAT)
        last = first + timedelta(days=self.days + STAY_DAYS[1])
        return first.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d")


#: Bounds of a visit log: ten years of simulated days, a hundred million visits.
MAX_DAYS = 3_650
MAX_VISITS = 100_000_000


CHRONIC_SHARE = 0.02  # of persons: chronic patients …
CHRONIC_VISITS = 0.3  # … who make this share of the visits (weekly-ish, not daily)


def _skewed_index(r: random.Random, n: int) -> int:
    """A person's index: the first 2 % of the list (chronic patients) get 30 % of the draws,
    uniformly among them, so no single person dominates however large the log."""
    if r.random() < CHRONIC_VISITS:
        return r.randrange(max(1, int(n * CHRONIC_SHARE)))
    return r.randrange(n)


def _outpatient_plan(r: random.Random, spec: VisitSpec) -> list[str]:
    plan = ["1101", "2201", "2204"]
    if r.random() < 0.3:
        plan.append("2206")  # pre-settlement first, as many HIS do
    if r.random() < spec.anomaly_share:
        anomaly = r.choice(("fee-correction", "cancel-registration", "fees-after-settlement",
                            "duplicate-sn", "lost-answer", "reversal-first", "duplicate",
                            "second-cancel", "cancel-unknown", "query"))
        if anomaly == "cancel-registration":
            return ["1101", "2201", "2202"]
        if anomaly == "fee-correction":
            return [*plan, "2205", "2204", "2207"]
        if anomaly == "duplicate-sn":
            return [*plan, "2204d!", "2207"]
        if anomaly == "fees-after-settlement":
            return [*plan, "2207", "2204!"]
        if anomaly == "lost-answer":
            return [*plan, "2207~", "2601", "2207"]
        if anomaly == "reversal-first":
            return [*plan, "2601^", "2207!", "2207"]
        if anomaly == "duplicate":
            return [*plan, "2207="]
        if anomaly == "second-cancel":
            return [*plan, "2207", "2208", "2208!"]
        if anomaly == "cancel-unknown":
            return [*plan, "2207", "2208x!"]
        return [*plan, "2207", "5206"]
    plan.append("2207")
    if r.random() < spec.cancel_share:
        plan.append("2208")
        if r.random() < 0.5:
            plan.append("2207")  # settled again after the correction
    return plan


def _with_ehr_steps(r: random.Random, spec: VisitSpec, plan: list[str],
                    cross: bool) -> list[str]:
    """Once the patient is identified the hospital looks up their records from every province
    (7002, then 7003 of the newest found: always for a cross-province patient) and reusable
    lab results (7004); when the visit ends it publishes its document (7001)."""
    early = ["7002", "7003"] if cross or r.random() < spec.ehr_find_share else []
    return [plan[0], *early, "7004", *plan[1:], "7001"]


def _inpatient_plan(r: random.Random, spec: VisitSpec, batches: int) -> list[str]:
    plan = ["1101", "2401", *["2301"] * batches]
    roll = r.random()
    if roll < spec.anomaly_share / 3:
        plan.append("2304!")  # settlement before discharge: refused
    elif roll < spec.anomaly_share * 2 / 3:
        plan += ["2302", "2301"]  # fee correction: every item cancelled, then uploaded again
    plan += ["2402", "2303", "2304"]
    if r.random() < spec.cancel_share:
        plan.append("2305")
    return plan


def generate_visits(world: World, spec: VisitSpec) -> Iterator[Visit]:
    r = rng(world.spec.seed, f"visits:{spec.visits}:{spec.cross_share}")
    persons = sorted(world.ref.enrollments)
    r.shuffle(persons)
    away = [c for c in persons if c in world.away_province]
    referred = [c for c in persons if any(f.fil_type == "referral"
                                          for f in world.ref.enrollments[c].filings)]
    provinces = sorted(world.hospitals_by_province)
    start = datetime.strptime(spec.start, TIME_FORMAT)
    spacing = spec.days * 86_400 / max(1, spec.visits)
    seq: dict[str, int] = {}
    ehr_r = rng(world.spec.seed, "ehr-steps")  # a stream of its own
    stay_r = rng(world.spec.seed, "stay-days")  # so too: outpatient visits as they were
    #: when each person's last visit ends (its last step's time): a person is at one
    #: hospital at a time, in simulated time too
    ends: dict[str, datetime] = {}

    def free(pool: list[str], i: int) -> str:
        """pool[i], or else the first after it whose last visit has ended by `begin` (one
        drawn inside their own stay elsewhere settled out of date order, after the stay: a
        money-flow review). pool[i] if none has."""
        for j in range(len(pool)):
            if ends.get(c := pool[(i + j) % len(pool)], begin) <= begin:
                return c
        return pool[i]

    for k in range(spec.visits):
        begin = start + timedelta(seconds=int(k * spacing))
        cross = r.random() < spec.cross_share
        if cross and away and r.random() >= spec.traveller_share:
            certno = free(away, _skewed_index(r, len(away)))
            province = world.away_province[certno]
        elif cross and referred and r.random() < 0.5:
            certno = free(referred, r.randrange(len(referred)))
            province = next(f.province for f in world.ref.enrollments[certno].filings
                            if f.fil_type == "referral")
        elif cross:
            certno = free(persons, _skewed_index(r, len(persons)))
            home = world.ref.enrollments[certno].province
            province = r.choice([p for p in provinces if p != home])
        else:
            certno = free(persons, _skewed_index(r, len(persons)))
            province = world.ref.enrollments[certno].province
        enrollment = world.ref.enrollments[certno]
        hospitals = world.hospitals_by_province[province]
        if not cross and r.random() < 0.7:
            hospitals = [h for h in hospitals if h.admdvs == enrollment.insuplc_admdvs] or hospitals
        hospital = r.choice(hospitals)
        inpatient = r.random() < spec.inpatient_share
        emergency = r.random() < spec.emergency_share
        factor = _LEVEL_PRICE_FACTOR[hospital.level]
        n_items = (4 + int(40 * r.random() ** 2)) if inpatient else 1 + int(14 * r.random() ** 2)
        # a stay's beds, care and drugs run over its days: each item on some of them (priced
        # as an outpatient's, a stay's median was ~¥1,000, under most deductibles)
        days = stay_r.randint(STAY_DAYS[0], STAY_DAYS[1]) if inpatient else 1
        items = []
        for _ in range(n_items):
            it = r.choice(world.items)
            cnt = r.randint(1, 6) if it.kind == "drug" else 1
            if inpatient:
                cnt *= stay_r.randint(1, days)
            items.append(VisitItem(code=it.code, cnt=cnt,
                                   pric=max(1, round(it.base_price * factor))))
        if inpatient:
            batches = r.randint(1, 4)
            steps = _inpatient_plan(r, spec, batches)
            med_type = "24" if emergency else "21"
        else:
            batches = 1
            steps = _outpatient_plan(r, spec)
            med_type = "13" if emergency else "11"
        if spec.ehr:
            steps = _with_ehr_steps(ehr_r, spec, steps, cross)
        step_s = STEP_SECONDS["inpatient" if inpatient else "outpatient"]
        ends[certno] = begin + timedelta(seconds=sum(  # and room for the steps a fault plan
            EHR_STEP_SECONDS if step[:4] in EHR else step_s  # may add (simulators/faults.py:
            for step in steps[:-1]) + FAULT_ROOM_STEPS * step_s)  # a resend, a 5206)
        code = hospital.fixmedins_code
        hospital_seq = seq.get(code, 0)
        seq[code] = (hospital_seq + len(steps)) % 10_000
        uses_account = enrollment.insutype == EMPLOYEE and r.random() < 0.9
        yield Visit(visit_no=k, certno=certno, fixmedins_code=code,
                    mdtrtarea_admvs=hospital.admdvs, begntime=begin.strftime(TIME_FORMAT),
                    seq=hospital_seq, kind="inpatient" if inpatient else "outpatient",
                    med_type=med_type, acct_used_flag="1" if uses_account else "0",
                    items=items, batches=batches, steps=steps)
