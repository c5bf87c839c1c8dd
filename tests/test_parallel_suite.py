"""`make test` runs the suite on three pytest-xdist workers, in three lanes (tests/conftest.py):
the busy end-to-end modules, and two lanes of waiting ones, the unit tests after the second's.
A module left out of every lane would run beside the busy one as a unit test: more brokers at
once on two cores, and time-outs where there were none."""

from __future__ import annotations

import re

from tests.conftest import (
    BUSY_E2E_MODULES,
    REPO,
    WAITING_E2E_LANES,
    WAITING_E2E_MODULES,
    xdist_group_of,
)

E2E_MARK = re.compile(r"pytest\.mark\.e2e\b")


def test_every_end_to_end_module_is_in_one_lane():
    marked = {p.name for p in (REPO / "tests").glob("test_*.py") if E2E_MARK.search(p.read_text())}
    assert marked == BUSY_E2E_MODULES | WAITING_E2E_MODULES
    lanes = [BUSY_E2E_MODULES, *WAITING_E2E_LANES]
    assert sum(len(lane) for lane in lanes) == len(marked)  # none in two


def test_make_tests_three_workers_run_three_lanes_the_unit_tests_in_the_second_waiting_one():
    groups = {xdist_group_of(f"tests/{p.name}::t", 3) for p in (REPO / "tests").glob("test_*.py")}
    assert groups == {"e2e-busy", "e2e-waiting-1", "e2e-waiting-2"}
    assert xdist_group_of("tests/test_money.py::test_x[a::b]", 3) == "e2e-waiting-2"
    assert xdist_group_of("tests/test_e2e_trail.py::test_y", 3) == "e2e-waiting-2"
    assert xdist_group_of("tests/test_owner_fence.py::test_z[memory]", 3) == "e2e-waiting-1"


def test_two_workers_keep_one_waiting_group_and_more_than_three_spread_the_unit_tests():
    assert xdist_group_of("tests/test_e2e_run.py::test_y", 2) == "e2e-busy"
    assert xdist_group_of("tests/test_owner_fence.py::test_z[memory]", 2) == "e2e-waiting"
    assert xdist_group_of("tests/test_e2e_trail.py::test_y", 2) == "e2e-waiting"
    assert xdist_group_of("tests/test_money.py::test_x[a::b]", 2) == "test_money.py"
    assert xdist_group_of("tests/test_money.py::test_x[a::b]", 4) == "test_money.py"
    assert xdist_group_of("tests/test_e2e_trail.py::test_y", 4) == "e2e-waiting-2"
