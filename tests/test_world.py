"""simulators.world and simulators.visits: the synthetic country follows DOMAIN.md §1, is
deterministic, and its visit log drives well-formed requests (DOMAIN.md §2)."""

from __future__ import annotations

import re
from datetime import date

import pytest

from messages.codes import ErrorCode
from messages.envelope import Request
from messages.identity import is_valid_certno
from messages.visitlog import VisitSession
from settlement.oracle import Oracle
from settlement.policy import EMPLOYEE, RESIDENT
from settlement.reference import SUSPENDED
from simulators.hospital import other_world
from simulators.regions import PROVINCES, city_codes
from simulators.visits import VisitSpec, generate_visits
from simulators.world import World, WorldSpec, build_world, world_tag

SPEC = WorldSpec(persons=500, seed=3)

#: DOMAIN.md §1, copied from the text.
DOMAIN_PROVINCES = {
    "110000": "北京", "120000": "天津", "130000": "河北", "140000": "山西", "150000": "内蒙古",
    "210000": "辽宁", "220000": "吉林", "230000": "黑龙江", "310000": "上海", "320000": "江苏",
    "330000": "浙江", "340000": "安徽", "350000": "福建", "360000": "江西", "370000": "山东",
    "410000": "河南", "420000": "湖北", "430000": "湖南", "440000": "广东", "450000": "广西",
    "460000": "海南", "500000": "重庆", "510000": "四川", "520000": "贵州", "530000": "云南",
    "540000": "西藏", "610000": "陕西", "620000": "甘肃", "630000": "青海", "640000": "宁夏",
    "650000": "新疆",
}


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(SPEC)


def all_cities(world: World) -> set[str]:
    return {c for cs in world.cities.values() for c in cs}


def test_there_are_the_31_provinces_with_their_real_codes(world: World) -> None:
    assert len(DOMAIN_PROVINCES) == 31
    assert PROVINCES == DOMAIN_PROVINCES
    assert dict(world.ref.provinces) == DOMAIN_PROVINCES
    assert set(world.ref.catalogues) == set(DOMAIN_PROVINCES)
    assert set(world.ref.policies) == set(DOMAIN_PROVINCES)
    assert set(world.hospitals_by_province) == set(DOMAIN_PROVINCES)


def test_city_codes_are_prefecture_codes_of_their_province() -> None:
    assert city_codes("440000", 3) == ["440100", "440200", "440300"]


def test_every_generated_certno_passes_the_gb11643_check(world: World) -> None:
    assert len(world.ref.enrollments) == SPEC.persons
    for certno in world.ref.enrollments:
        assert is_valid_certno(certno), certno


def test_every_generated_certno_with_a_corrupted_check_character_fails(world: World) -> None:
    chars = "0123456789X"
    for certno in world.ref.enrollments:
        wrong = chars[(chars.index(certno[17]) + 1) % len(chars)]
        assert not is_valid_certno(certno[:17] + wrong), certno


def test_certno_holds_birth_city_birth_date_and_sex(world: World) -> None:
    cities = all_cities(world)
    for certno, e in world.ref.enrollments.items():
        assert certno[:6] in cities
        birthday = date(int(certno[6:10]), int(certno[10:12]), int(certno[12:14]))
        assert e.brdy == birthday.isoformat()
        assert e.gend == ("1" if int(certno[14:17]) % 2 else "2")  # odd sequence = male


def test_psn_no_is_the_insured_city_and_a_20_digit_serial(world: World) -> None:
    psn_nos = []
    for e in world.ref.enrollments.values():
        assert re.fullmatch(r"\d{26}", e.psn_no)
        assert e.psn_no[:6] == e.insuplc_admdvs
        assert e.insuplc_admdvs in world.cities[e.province]
        psn_nos.append(e.psn_no)
    assert len(set(psn_nos)) == len(psn_nos)


def test_enrollments_are_employees_or_residents_and_only_employees_have_accounts(
        world: World) -> None:
    for e in world.ref.enrollments.values():
        assert e.insutype in (EMPLOYEE, RESIDENT)
        assert e.balance >= 0
        if e.insutype == RESIDENT:
            assert e.balance == 0
            assert not e.retired
    insutypes = {e.insutype for e in world.ref.enrollments.values()}
    assert insutypes == {EMPLOYEE, RESIDENT}


def test_persons_living_away_live_in_another_province(world: World) -> None:
    assert world.away_province
    for certno, province in world.away_province.items():
        assert province != world.ref.enrollments[certno].province
        assert province in DOMAIN_PROVINCES
    for certno, e in world.ref.enrollments.items():
        for f in e.filings:
            assert f.province != e.province  # a filing is for treatment in another province
            if f.fil_type == "long-term":  # 异地长期居住: filed where the person lives
                assert world.away_province.get(certno) == f.province


def test_fixmedins_code_is_h_city_and_5_digits(world: World) -> None:
    cities = all_cities(world)
    for code, h in world.ref.hospitals.items():
        assert re.fullmatch(r"H\d{6}\d{5}", code)
        assert code == h.fixmedins_code
        assert code[1:7] == h.admdvs
        assert h.admdvs in cities and h.admdvs.endswith("00") and not h.admdvs.endswith("0000")
        assert h.admdvs in world.cities[h.province]
        assert h.level in (1, 2, 3)
    assert len(world.ref.hospitals) == (31 * SPEC.cities_per_province * SPEC.hospitals_per_city)


def test_the_same_spec_builds_an_identical_world(world: World) -> None:
    again = build_world(WorldSpec.from_dict(SPEC.to_dict()))
    assert again.ref.enrollments == world.ref.enrollments
    assert again.ref.catalogues == world.ref.catalogues
    assert again.ref.hospitals == world.ref.hospitals
    assert again.away_province == world.away_province
    assert again.items == world.items


def test_another_seed_builds_another_world(world: World) -> None:
    other = build_world(WorldSpec(persons=SPEC.persons, seed=SPEC.seed + 1))
    assert set(other.ref.enrollments) != set(world.ref.enrollments)
    assert other.ref.catalogues != world.ref.catalogues


def test_the_same_world_generates_the_same_visits(world: World) -> None:
    spec = VisitSpec(visits=100)
    assert list(generate_visits(world, spec)) == list(generate_visits(world, spec))


@pytest.mark.parametrize(("count", "ehr"), [(2_000, False), (300, True)],
                         ids=["2000-settlement-visits", "300-with-health-records"])
def test_visit_msgids_are_30_characters_and_unique(world: World, count: int, ehr: bool) -> None:
    """Many visits for uniqueness; fewer with health-record steps, whose documents the oracle
    validates (slow) but whose requests carry msgids too."""
    oracle = Oracle(world.ref)
    visits = list(generate_visits(world, VisitSpec(visits=count, ehr=ehr)))
    msgids: list[str] = []
    for visit in visits:
        session = VisitSession(visit)
        while requests := session.advance():
            for req in requests:
                Request.model_validate(req)  # the envelope the platform accepts
                msgid = req["msgid"]
                assert len(msgid) == 30
                assert msgid[:12] == visit.fixmedins_code
                assert msgid[12:26] == re.sub(r"\D", "", req["inf_time"])
                answer = oracle.submit(visit.certno, req)
                assert answer is not None
                session.on_answer(answer)
        msgids.extend(msgid for msgid, _ in session.sent)  # once per distinct request
        if world.ref.enrollments[visit.certno].insu_stas == SUSPENDED:
            # A suspended person is identified but never settled (E2004).
            assert session.failed is None or \
                session.failed["err_code"] == ErrorCode.INSURANCE_SUSPENDED
            continue
        assert session.failed is None, session.failed
        assert session.index == len(visit.steps)
        assert len(session.sent) + len(session.skipped) == len(visit.steps)
    assert len(set(msgids)) == len(msgids)


def test_a_world_tag_changes_with_what_changes_the_answers_and_nothing_else() -> None:
    """Workers name it in their sign-in answers; replay refuses a platform whose differs."""
    spelled_out = {"defaults": {"unfiled_cut_bp": 1000, "selfpay_bp": 1000}}
    assert world_tag(SPEC) == world_tag(WorldSpec(persons=500, seed=3))
    assert world_tag(SPEC) == world_tag(WorldSpec(persons=500, seed=3, parameters=spelled_out))
    assert world_tag(SPEC).startswith("seed 3, 500 persons, DOMAIN.md's policy (world ")
    others = [WorldSpec(persons=501, seed=3), WorldSpec(persons=500, seed=4),
              WorldSpec(persons=500, seed=3, hospitals_per_city=3),
              WorldSpec(persons=500, seed=3, parameters={"defaults": {"unfiled_cut_bp": 0}})]
    tags = {world_tag(spec) for spec in [SPEC, *others]}
    assert len(tags) == 5
    assert "a policy file's" in world_tag(others[-1])


def test_workers_that_disagree_are_told_apart_from_a_platform_of_another_world() -> None:
    ours, theirs = world_tag(SPEC), world_tag(WorldSpec(persons=500, seed=4))
    assert f"another world ({theirs}) than these visits were made in ({ours})" in \
        other_world(ours, {theirs})
    both = other_world(ours, {ours, theirs})
    assert both.startswith("the platform's workers do not settle by one world (")
    assert ours in both and theirs in both and "the same --seed, --persons and --policy" in both
