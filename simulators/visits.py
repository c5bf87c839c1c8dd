"""The visit generator: a deterministic stream of outpatient visits over simulated time.

Visits concentrate on a minority of persons (chronic patients visit often), so deductibles
and caps are actually reached. Cross-province visits come from persons living in another
province (most of them filed) and from travellers (never filed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from messages.visitlog import STEPS, TIME_FORMAT, Visit, VisitItem
from settlement.policy import EMPLOYEE
from simulators.world import World, rng

_LEVEL_PRICE_FACTOR = {1: 0.9, 2: 1.0, 3: 1.15}


@dataclass(frozen=True, slots=True)
class VisitSpec:
    visits: int = 2_000
    cross_share: float = 0.2
    start: str = "2026-12-01 08:00:00"  # simulated; the default run crosses a new year
    days: int = 60
    traveller_share: float = 0.3  # of cross-province visits, by persons who do not live there


def _skewed_index(r, n: int) -> int:
    """Mostly small indexes: the first fifth of a list gets about 60 % of the draws."""
    return min(n - 1, int(n * r.random() ** 3))


def generate_visits(world: World, spec: VisitSpec) -> Iterator[Visit]:
    r = rng(world.spec.seed, f"visits:{spec.visits}:{spec.cross_share}")
    persons = sorted(world.ref.enrollments)
    r.shuffle(persons)
    away = [c for c in persons if c in world.away_province]
    provinces = sorted(world.hospitals_by_province)
    start = datetime.strptime(spec.start, TIME_FORMAT)
    spacing = spec.days * 86_400 / max(1, spec.visits)
    seq: dict[str, int] = {}
    for k in range(spec.visits):
        cross = r.random() < spec.cross_share
        if cross and away and r.random() >= spec.traveller_share:
            certno = away[_skewed_index(r, len(away))]
            province = world.away_province[certno]
        elif cross:
            certno = persons[_skewed_index(r, len(persons))]
            home = world.ref.enrollments[certno].province
            province = r.choice([p for p in provinces if p != home])
        else:
            certno = persons[_skewed_index(r, len(persons))]
            province = world.ref.enrollments[certno].province
        enrollment = world.ref.enrollments[certno]
        hospitals = world.hospitals_by_province[province]
        if not cross and r.random() < 0.7:
            hospitals = [h for h in hospitals if h.admdvs == enrollment.insuplc_admdvs] or hospitals
        hospital = r.choice(hospitals)
        factor = _LEVEL_PRICE_FACTOR[hospital.level]
        items = []
        for _ in range(1 + int(14 * r.random() ** 2)):
            it = r.choice(world.items)
            cnt = r.randint(1, 6) if it.kind == "drug" else 1
            items.append(VisitItem(code=it.code, cnt=cnt,
                                   pric=max(1, round(it.base_price * factor))))
        begin = start + timedelta(seconds=int(k * spacing))
        code = hospital.fixmedins_code
        hospital_seq = seq.get(code, 0)
        seq[code] = (hospital_seq + len(STEPS)) % 10_000
        uses_account = enrollment.insutype == EMPLOYEE and r.random() < 0.9
        yield Visit(visit_no=k, certno=certno, fixmedins_code=code,
                    mdtrtarea_admvs=hospital.admdvs, begntime=begin.strftime(TIME_FORMAT),
                    seq=hospital_seq, acct_used_flag="1" if uses_account else "0", items=items)
