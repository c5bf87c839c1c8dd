"""The simulated days the visits span (`--start`, `--days`): an analyst who wants a run
within one year (the default's 60 days from 2026-12-01 cross a new year, restarting the
annual deductibles and caps) starts it elsewhere, and is told when the days leave the
world's dated filings."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from huimin import cli
from huimin.logfiles import read_visit_log
from simulators.visits import VisitSpec
from simulators.world import LONG_TERM_FILING, REFERRAL_FILING, filings_left_out

#: A small log: what the checks need of it is its dates.
GENERATE = ["generate", "--persons", "400", "--visits", "300", "--seed", "5"]


def generate(tmp_path: Path, *extra: str) -> tuple[Path, str]:
    log = tmp_path / "v.jsonl"
    result = CliRunner().invoke(cli.app, [*GENERATE, *extra, "-o", str(log)])
    assert result.exit_code == 0, result.output
    return log, result.output


def settlement_times(expected: Path) -> list[str]:
    """The settlement time of every settlement the oracle answered in the log."""
    times = []
    for line in expected.read_bytes().splitlines():
        for answers in orjson.loads(line)["answers"].values():
            for answer in answers:
                if setlinfo := (answer.get("output") or {}).get("setlinfo"):
                    times.append(setlinfo["setl_time"])
    return times


def test_the_default_visits_cross_a_new_year_so_the_accumulators_restart(tmp_path: Path):
    log, _ = generate(tmp_path)
    header, _ = read_visit_log(log)
    assert header.visits.start == "2026-12-01 08:00:00"
    assert {t[:4] for t in settlement_times(tmp_path / "v.expected.jsonl")} == {"2026", "2027"}


def test_a_run_started_on_new_years_day_settles_within_one_year(tmp_path: Path):
    log, output = generate(tmp_path, "--start", "2027-01-01")
    header, visits = read_visit_log(log)
    assert header.visits.start == "2027-01-01 08:00:00"
    assert min(v.begntime for v in visits) >= "2027-01-01 08:00:00"
    times = settlement_times(tmp_path / "v.expected.jsonl")
    assert len(times) > 200 and {t[:7] for t in times} <= {"2027-01", "2027-02", "2027-03"}
    assert "Note:" not in output  # within every filing: nothing to say


def test_a_start_written_without_leading_zeros_is_the_same_day(tmp_path: Path):
    log, _ = generate(tmp_path, "--start", "2027-1-1")
    assert read_visit_log(log)[0].visits.start == "2027-01-01 08:00:00"


@pytest.mark.parametrize(("start", "said"), [
    ("2027-13-01", "2027-13-01 is not a day as yyyy-MM-dd"),
    ("01/01/2027", "01/01/2027 is not a day as yyyy-MM-dd"),
    ("1989-12-31", "the visits' days from 1989-12-31 to 1990-03-15 (a stay begun on the "
                   "last of the 60 days settled 14 days later) are not all in the years "
                   "1990–2099"),
    ("2099-12-31", "from 2099-12-31 to 2100-01-15"),  # with --days 1, below
])
def test_days_beyond_what_a_visit_log_holds_are_refused_in_words(tmp_path: Path,
                                                                start: str, said: str):
    days = ["--days", "1"] if start.startswith("2099") else []
    result = CliRunner().invoke(cli.app, [*GENERATE, "--start", start, *days,
                                          "-o", str(tmp_path / "v.jsonl")])
    assert result.exit_code == 2
    assert said in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "v.jsonl").exists()


def test_days_beyond_the_worlds_filings_are_said_before_the_log_is_written(tmp_path: Path):
    _, output = generate(tmp_path, "--start", "2027-03-01")
    said = " ".join(output.split())
    assert ("the visits' days 2027-03-01 to 2027-05-14 are not all within the world's "
            f"referral filings ({REFERRAL_FILING[0]} – {REFERRAL_FILING[1]})") in said
    assert "settled as un-filed" in said


def test_the_settled_days_reach_an_inpatient_stay_begun_on_the_last_day():
    assert VisitSpec(days=60).settled_days() == ("2026-12-01", "2027-02-13")
    assert VisitSpec(days=1, start="2028-02-28 08:00:00").settled_days() == (
        "2028-02-28", "2028-03-14")  # a leap year's 29 February counted


def test_which_filings_a_period_leaves():
    assert filings_left_out(*VisitSpec().settled_days()) == []
    assert filings_left_out("2027-03-01", "2027-04-01") == [
        f"referral filings ({REFERRAL_FILING[0]} – {REFERRAL_FILING[1]})"]
    assert len(filings_left_out("2029-01-01", "2029-02-01")) == 2
    assert len(filings_left_out("2025-12-01", "2026-01-15")) == 2  # begun before either
    assert filings_left_out(LONG_TERM_FILING[0], LONG_TERM_FILING[1])[0].startswith("referral")


def test_a_hand_edited_header_with_days_past_2099_is_refused():
    with pytest.raises(ValueError, match="not all in the years 1990–2099"):
        VisitSpec(start="2099-06-01 08:00:00", days=3_650)
    assert VisitSpec(start="2099-12-01 08:00:00", days=16).settled_days()[1] == "2099-12-31"
