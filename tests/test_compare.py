"""`huimin compare`: two runs' money side by side, B less A, in all and by the insured
person's province, saying when the runs settled different visits; a path that is not a
run's is refused in words."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from huimin import cli
from huimin.compare import NotARun, compared, differences_beyond_policy, read_run
from huimin.report import scenario
from simulators.visits import GENERATOR_VERSION, VisitSpec
from simulators.world import WorldSpec

SCENARIO = {"world": {"seed": 42, "persons": 5000}, "visits": {"visits": 2000, "days": 60},
            "bad_per_kind": 2, "faults": "none"}


def summary(fund: dict[str, int], world: str = "seed 42, 5,000 persons, DOMAIN.md's policy "
            "(world 274b4c8904ab)", **extra: Any) -> dict[str, Any]:
    """A run's summary.json with these funds paid for each province's insured (fees twice the
    fund, no account, the rest cash), one settlement each."""
    by_province = {p: {"settlements": 1, "medfee_sumamt": 2 * f, "hifp_pay": f, "acct_pay": 0,
                       "psn_cash_pay": f} for p, f in fund.items()}
    money = {k: sum(v[k] for v in by_province.values())
             for k in ("medfee_sumamt", "hifp_pay", "acct_pay", "psn_cash_pay")}
    return {"world": world, "scenario": copy.deepcopy(SCENARIO), "money_fen": money,
            "visits_settled_by_route": {"local": len(fund) - 1, "cross": 1},
            "money_fen_by_insured_province": by_province, **extra}


def run_dir(tmp_path: Path, name: str, content: dict[str, Any]) -> Path:
    (tmp_path / name).mkdir()
    (tmp_path / name / "summary.json").write_bytes(orjson.dumps(content))
    return tmp_path / name


def test_the_comparison_is_b_less_a_in_all_and_by_province(tmp_path: Path) -> None:
    a = read_run(run_dir(tmp_path, "a", summary({"110000": 1_000, "310000": 500})))
    b = read_run(run_dir(tmp_path, "b", summary(
        {"110000": 1_200, "440000": 50}, world="seed 42, 5,000 persons, a policy file's "
        "(world 5dd0118a09f2)", policy_file="p.yaml")))
    out = compared(a, b)
    assert out["same_visits"] and out["b"]["policy_file"] == "p.yaml"
    assert out["paid_fen"]["hifp_pay"] == {"a": 1_500, "b": 1_250, "b_less_a": -250}
    rows = out["by_insured_province_fen"]
    assert list(rows) == ["110000", "310000", "440000"]  # a province in either run
    assert rows["110000"]["hifp_pay"] == {"a": 1_000, "b": 1_200, "b_less_a": 200}
    assert rows["310000"]["hifp_pay"] == {"a": 500, "b": 0, "b_less_a": -500}
    assert rows["440000"]["settlements"] == {"a": 0, "b": 1, "b_less_a": 1}


def test_the_months_are_set_side_by_side_when_both_summaries_have_them(tmp_path: Path) -> None:
    """A change from 1 January: December paid alike, January not (the analyst's before and
    after, in one pair of runs)."""
    def by_month(january_fund: int) -> dict[str, dict[str, int]]:
        return {"2026-12": {"settlements": 3, "medfee_sumamt": 900, "hifp_pay": 300,
                            "acct_pay": 100, "psn_cash_pay": 500},
                "2027-01": {"settlements": 2, "medfee_sumamt": 600, "hifp_pay": january_fund,
                            "acct_pay": 0, "psn_cash_pay": 600 - january_fund}}
    a = run_dir(tmp_path, "a", summary({"110000": 1}, money_fen_by_month=by_month(100)))
    b = run_dir(tmp_path, "b", summary({"110000": 1}, money_fen_by_month=by_month(250)))
    months = compared(read_run(a), read_run(b))["by_month_fen"]
    assert months["2026-12"]["hifp_pay"] == {"a": 300, "b": 300, "b_less_a": 0}
    assert months["2027-01"]["hifp_pay"] == {"a": 100, "b": 250, "b_less_a": 150}
    assert months["2027-01"]["psn_cash_pay"]["b_less_a"] == -150
    shown = CliRunner().invoke(cli.app, ["compare", str(a), str(b)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.output.splitlines() if "2027-01" in line)
    assert [c.strip() for c in row.split("│")[1:-1]] == [
        "2027-01", "2", "2", "1.00", "2.50", "+1.50", "0.00", "-1.50"]
    old = run_dir(tmp_path, "old", summary({"110000": 1}))  # before summaries had months
    assert compared(read_run(a), read_run(old))["by_month_fen"] == {}
    assert "by the month" not in CliRunner().invoke(cli.app, ["compare", str(a), str(old)]).output


def test_runs_of_other_visits_are_told_apart_from_a_change_of_policy(tmp_path: Path) -> None:
    other = summary({"110000": 1})
    other["scenario"]["world"]["seed"] = 7
    other["scenario"]["visits"]["days"] = 31
    a = read_run(run_dir(tmp_path, "a", summary({"110000": 1})))
    b = read_run(run_dir(tmp_path, "b", other))
    assert differences_beyond_policy(a, b) == ["visits.days: 60 and 31",
                                               "world.seed: 42 and 7"]
    result = CliRunner().invoke(cli.app, ["compare", str(tmp_path / "a"),
                                          str(tmp_path / "b" / "summary.json")])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "These runs settled different visits, so their money differs for more than the " \
        "policy's sake: visits.days: 60 and 31; world.seed: 42 and 7" in out
    assert "110000 北京" in out and "50.0 %" in out  # the fund's share of the fees


@pytest.mark.parametrize(("content", "said"), [
    (None, "no summary.json (give a `huimin run` output folder or its summary.json, or a "
           "replay's <results>.summary.json)"),
    (b"{not json", "is not JSON"),
    (orjson.dumps({"world": "w"}), "has no money by province: a summary of a `huimin run` or "
                                   "`huimin replay` of this version (earlier ones did not say "
                                   "it) is needed"),
    (orjson.dumps({**summary({"110000": 1}), "money_fen": None}),
     "is not a run's summary as huimin writes it"),
    (orjson.dumps({"resourceType": "Patient", "id": "example"}),  # another JSON file
     "is not a summary of a `huimin run` or `huimin replay` (give a run's output folder or "
     "its summary.json, or a replay's <results>.summary.json)"),
    (b"[]", "is not a summary of a `huimin run` or `huimin replay`"),
], ids=["no-summary", "not-json", "before-this-version", "wrong-shape", "other-json",
        "a-list"])
def test_a_path_that_is_not_a_run_is_refused_in_words(
        tmp_path: Path, content: bytes | None, said: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "summary.json").write_bytes(content)
    with pytest.raises(NotARun) as caught:
        read_run(run)
    assert said in str(caught.value)
    result = CliRunner().invoke(cli.app, ["compare", str(run), str(run)])
    assert result.exit_code == 2 and said in " ".join(result.output.split()), result.output


def test_a_worker_killed_or_joining_or_other_bad_requests_are_no_difference_in_the_visits(
        tmp_path: Path) -> None:
    """Two replays of one log, one with `--faults kill-worker=1,join-worker=1`, were said to
    have settled different visits (a review): those faults change no answer. A fault of the
    visit log does."""
    def replay(faults: str) -> Path:
        content = summary({"110000": 1_000})
        content["scenario"] = scenario(WorldSpec(), VisitSpec(), 2, faults, GENERATOR_VERSION)
        return run_dir(tmp_path, f"r{len(list(tmp_path.iterdir()))}", content)

    plain, killed = read_run(replay("")), read_run(replay("kill-worker=1,join-worker=1"))
    assert differences_beyond_policy(plain, killed) == []
    without_bad = summary({"110000": 1_000})
    without_bad["scenario"] = scenario(WorldSpec(), VisitSpec(), 0, "", GENERATOR_VERSION)
    assert differences_beyond_policy(  # bad requests are all refused, at other hospitals
        plain, read_run(run_dir(tmp_path, "no-bad", without_bad))) == []
    duplicated = read_run(replay("duplicate=0.05,kill-worker=1"))
    assert differences_beyond_policy(plain, duplicated) == ["faults: '' and 'duplicate=0.05'"]


def test_runs_of_two_generators_are_said_to_have_settled_different_visits(
        tmp_path: Path) -> None:
    """The same seed and options gave other visits once a person's visits stopped
    overlapping (generator 2): a run of before it, whose summary names no generator, is not
    taken for one of the same visits (a review of the session of 12-07)."""
    def run(generator: int | None) -> Path:
        content = summary({"110000": 1_000})
        content["scenario"] = scenario(WorldSpec(), VisitSpec(), 2, "", generator)
        if generator is None:
            del content["scenario"]["generator"]  # as a summary of before wrote it
        return run_dir(tmp_path, f"g{generator}", content)

    new, old = read_run(run(GENERATOR_VERSION)), read_run(run(None))
    assert differences_beyond_policy(new, read_run(run(GENERATOR_VERSION + 1))) == [
        f"the visits' generator: version {GENERATOR_VERSION} and version "
        f"{GENERATOR_VERSION + 1}"]
    said = differences_beyond_policy(old, new)
    assert said == ["the visits' generator: unsaid (a run or log from before logs and "
                    f"summaries said it) and version {GENERATOR_VERSION}"]
    shown = CliRunner().invoke(cli.app, ["compare", str(tmp_path / "gNone"),
                                         str(tmp_path / f"g{GENERATOR_VERSION}")])
    assert shown.exit_code == 0 and "settled different visits" in shown.output, shown.output
