"""`make test` runs the suite on two pytest-xdist workers, with the end-to-end modules in two
groups (tests/conftest.py). A module left out of both would run beside the busy group: three
brokers at once on two cores, and time-outs where there were none."""

from __future__ import annotations

import re

from tests.conftest import BUSY_E2E_MODULES, REPO, WAITING_E2E_MODULES, xdist_group_of

E2E_MARK = re.compile(r"pytest\.mark\.e2e\b")


def test_every_end_to_end_module_is_in_one_group():
    marked = {p.name for p in (REPO / "tests").glob("test_*.py") if E2E_MARK.search(p.read_text())}
    assert marked == BUSY_E2E_MODULES | WAITING_E2E_MODULES
    assert BUSY_E2E_MODULES.isdisjoint(WAITING_E2E_MODULES)


def test_a_unit_test_module_is_a_group_of_its_own_and_parameters_do_not_change_it():
    assert xdist_group_of("tests/test_money.py::test_x[a::b]") == "test_money.py"
    assert xdist_group_of("tests/test_e2e_run.py::test_y") == "e2e-busy"
    assert xdist_group_of("tests/test_owner_fence.py::test_z[memory]") == "e2e-waiting"
