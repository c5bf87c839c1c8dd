"""Bad input gets a clear error, never a crash: a file that cannot be written, a port out of
range or in use, a cluster that cannot be reached, results of another visit log, no results
at all each end in a one-line message and exit 2 (1 stays a genuine FAIL), not a traceback.
No broker is started: the cluster's answers are replaced where one would be reached."""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kafka.errors
import orjson
import pytest
from typer.testing import CliRunner, Result

import streams.worker
from huimin import cli, cli_cluster, cli_options
from huimin.cli_app import error_message
from huimin.logfiles import LogFormatError, read_visit_log
from simulators.hospital import PlatformSilent
from simulators.visits import GENERATOR_VERSION
from simulators.world import worlds_build_s
from streams.broker import BOOTSTRAP_ENV, free_port
from streams.topics import TopicsRefused
from streams.trail import Trail

GENERATE = ["--persons", "200", "--visits", "30", "--seed", "1"]


def huimin(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.app, list(args), env=env)


def refused(result: Result, *phrases: str) -> str:
    """The output of a command that ended in a clear error: exit 2, no traceback, the phrases
    on one line."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if all(p in line for p in phrases)]
    assert lines, result.output
    return lines[0]


@pytest.fixture(autouse=True)
def _no_cluster_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two visit logs of the same seed: `a.jsonl`, and `r.jsonl` with reordered steps (the
    same msgids for other infnos), each with its oracle's answers; and an empty file."""
    folder = tmp_path_factory.mktemp("logs")
    for name, extra in (("a", []), ("r", ["--faults", "reorder=0.5"])):
        result = huimin("generate", *GENERATE, *extra, "-o", str(folder / f"{name}.jsonl"))
        assert result.exit_code == 0, result.output
    (folder / "empty.jsonl").write_bytes(b"")
    return folder


# -- files and folders that cannot be written ------------------------------------------------

def test_generate_into_a_missing_folder_or_onto_a_folder(tmp_path: Path):
    missing = tmp_path / "no" / "such" / "v.jsonl"
    refused(huimin("generate", *GENERATE, "-o", str(missing)), str(missing), "does not exist")
    refused(huimin("generate", *GENERATE, "-o", str(tmp_path)), str(tmp_path), "is a folder")


def test_generate_logs_its_stages_then_its_summary_where_there_is_no_terminal(tmp_path: Path):
    """No progress bar, and no blank line left behind by one, in a log: timestamped stages
    (a million visits take minutes, which were silent), then what was written."""
    result = huimin("generate", *GENERATE, "-o", str(tmp_path / "v.jsonl"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line[9:] for line in lines[:2]] == ["building the world",
                                                "generating and settling"], lines
    assert all(line[2] == line[5] == ":" for line in lines[:2])  # HH:MM:SS first
    assert lines[2].startswith("Wrote 30 visits") and len(lines) == 3, lines


def test_generate_stopped_by_ctrl_c_says_so_and_leaves_the_files_as_they_were(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    log = tmp_path / "v.jsonl"
    log.write_bytes(b"an earlier log\n")
    written = []

    def pressed_on_the_second(f: object, visit: object) -> None:
        written.append(visit)
        if len(written) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "write_visit", pressed_on_the_second)
    result = huimin("generate", *GENERATE, "-o", str(log))
    assert result.exit_code == 130, result.output
    assert f"Stopped by Ctrl-C before the visit log was complete: nothing was put in place " \
        f"({log} and" in " ".join(result.output.split())
    assert log.read_bytes() == b"an earlier log\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.jsonl"]  # no partial file


def test_verify_reports_into_a_missing_folder(logs: Path, tmp_path: Path):
    for option in ("--junit", "--json"):
        report = tmp_path / "missing" / "report"
        refused(huimin("verify", str(logs / "a.jsonl"), str(logs / "a.expected.jsonl"),
                       option, str(report)), str(report), "does not exist")


def test_bench_refuses_an_output_it_could_not_write_before_it_measures(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """bench.json a folder was found only when the report was written, after the run."""
    import benchmarks.load

    monkeypatch.setattr(benchmarks.load, "run_bench", lambda *a, **k: pytest.fail("it measured"))
    out = tmp_path / "x"
    (out / "bench.json").mkdir(parents=True)
    refused(huimin("bench", "--rates", "20", "--duration", "3", "--warmup", "0", "--no-ceiling",
                   "--out", str(out)), str(out / "bench.json"), "is a folder")
    (out / "bench.json").rmdir()
    (out / "bench.png").mkdir()
    refused(huimin("bench", "--rates", "20", "--duration", "3", "--warmup", "0", "--no-ceiling",
                   "--out", str(out)), str(out / "bench.png"), "is a folder")
    (a_file := tmp_path / "visits.jsonl").write_bytes(b"{}\n")  # a file for the folder
    refused(huimin("bench", "--rates", "20", "--duration", "3", "--warmup", "0", "--no-ceiling",
                   "--out", str(a_file)), f"--out {a_file} is a file")


@pytest.mark.parametrize(("rates", "warmup"), [("1e-300", "0"), ("20,0.4", "0"), ("1", "1.5")])
def test_bench_refuses_a_rate_that_gives_less_than_a_visit_after_the_warmup(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rates: str, warmup: str):
    """1e-300 visits/s made one visit, reported as "offered 0 settl./s, achieved 3.1"."""
    import benchmarks.load

    monkeypatch.setattr(benchmarks.load, "run_bench", lambda *a, **k: pytest.fail("it measured"))
    refused(huimin("bench", "--rates", rates, "--duration", "2", "--warmup", warmup,
                   "--sweep-max", "0", "--out", str(tmp_path / "y")),
            "--rates", "fewer than one visit after the warm-up")
    assert not (tmp_path / "y").exists()  # nothing made either


def test_bench_refuses_a_rate_given_twice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """It measured it twice, and bench-compare paired both rows with one (a review)."""
    import benchmarks.load

    monkeypatch.setattr(benchmarks.load, "run_bench", lambda *a, **k: pytest.fail("it measured"))
    refused(huimin("bench", "--rates", "5,7,5.0", "--duration", "3", "--no-ceiling", "--out",
                   str(tmp_path / "y")), "--rates", "5 given twice: each rate once")


def test_bench_refuses_a_capacity_search_that_could_reach_less_than_a_visit(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """--find-capacity halves a rate not sustained down to FIND_CAPACITY_LEAST visits/s."""
    import benchmarks.load

    monkeypatch.setattr(benchmarks.load, "run_bench", lambda *a, **k: pytest.fail("it measured"))
    refused(huimin("bench", "--rates", "100", "--duration", "1.1", "--warmup", "1",
                   "--find-capacity", "--no-ceiling", "--out", str(tmp_path / "y")),
            "--find-capacity", "fewer than one visit after the warm-up")


@pytest.mark.parametrize(("extra", "said"), [
    ([], "give --find-capacity too"),
    (["--find-capacity"], "20 visits/s, not above the highest")])
def test_bench_refuses_a_find_capacity_max_that_could_not_take_effect(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: list[str], said: str):
    """Ignored without --find-capacity, or under the rates offered, where the report then
    said the search stopped at 20 visits/s just after measuring 30 (a bench review)."""
    import benchmarks.load

    monkeypatch.setattr(benchmarks.load, "run_bench", lambda *a, **k: pytest.fail("it measured"))
    refused(huimin("bench", "--rates", "10,30", "--duration", "3", "--warmup", "1",
                   "--find-capacity-max", "20", "--no-ceiling", *extra,
                   "--out", str(tmp_path / "y")), said)


# -- ports ----------------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["0", "99999", "-1"])
def test_a_metrics_port_out_of_range_is_refused_at_the_option(monkeypatch: pytest.MonkeyPatch,
                                                              port: str):
    monkeypatch.setattr(cli, "run_scenario", lambda *a, **k: pytest.fail("it ran"))
    result = huimin("run", "--metrics-port", port)
    assert result.exit_code == 2 and "--metrics-port" in result.output
    assert isinstance(result.exception, SystemExit)


def test_a_metrics_port_in_use_is_refused(monkeypatch: pytest.MonkeyPatch, logs: Path,
                                          tmp_path: Path):
    monkeypatch.setattr(cli, "execute", lambda *a, **k: pytest.fail("it replayed"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = huimin("replay", str(logs / "a.jsonl"), "--rate", "10", "--metrics-port",
                        str(port), "--results", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert f"127.0.0.1:{port}" in result.output and "in use" in result.output


def test_a_workers_web_port_in_use_is_refused_before_it_starts(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(streams.worker, "run_worker", lambda *a, **k: pytest.fail("it started"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = huimin("worker", "--bootstrap", "127.0.0.1:1", "--web-port", str(port))
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert f"127.0.0.1:{port}" in result.output and "in use" in result.output


# -- a cluster that cannot be reached ---------------------------------------------------------

@pytest.fixture(scope="module")
def mute() -> Iterator[str]:
    """The address of a port that takes TCP connections and never answers a Kafka request
    (a proxy, or a host whose broker hangs): the clients give up there after their 30-s
    bootstrap timeout, so their error is raised here in place of the connection."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        yield f"127.0.0.1:{listening.getsockname()[1]}"


def unreachable(*_: object, **__: object) -> None:
    raise kafka.errors.KafkaTimeoutError("Unable to bootstrap")


def no_topics_yet(*_: object, **__: object) -> list[str]:
    """`topic_problems` of a cluster with none of the platform's topics (`huimin topics`
    asks before it creates them)."""
    return ["missing: hosp.requests"]


@pytest.mark.parametrize("command", [["topics"], ["dead-letters"], ["worker"]])
def test_a_cluster_no_address_of_which_can_be_reached_is_refused_at_once(command: list[str]):
    """Not after the clients' 30 s, and saying which address fails and why."""
    if command == ["worker"]:  # its web port free (6066 may be another worker's here)
        command = ["worker", "--web-port", str(free_port())]
    cluster = "127.0.0.1:1,nosuchhost.invalid:9092"
    said = refused(huimin(*command, "--bootstrap", cluster),
                   f"cannot reach the cluster at {cluster} (is it up?)")
    assert "127.0.0.1:1: connection refused" in said
    assert "nosuchhost.invalid:9092: no such host" in said
    refused(huimin(*command, env={BOOTSTRAP_ENV: "127.0.0.1:1"}),
            "cannot reach the cluster at 127.0.0.1:1 (is it up?): 127.0.0.1:1: connection "
            "refused")


def test_run_and_bench_refuse_an_unreachable_cluster_of_the_environment():
    for command in (["run"], ["bench", "--rates", "5"]):
        refused(huimin(*command, env={BOOTSTRAP_ENV: "127.0.0.1:1"}),
                "cannot reach the cluster at 127.0.0.1:1 (is it up?): 127.0.0.1:1: "
                "connection refused")


def test_topics_on_a_cluster_that_cannot_be_reached(monkeypatch: pytest.MonkeyPatch, mute: str):
    monkeypatch.setattr(cli_cluster, "topic_problems", unreachable)  # asked first
    monkeypatch.setattr(cli_cluster, "create_platform_topics", unreachable)
    refused(huimin("topics", "--bootstrap", mute),
            f"cannot reach the cluster at {mute} (is it up?): KafkaTimeoutError")
    refused(huimin("topics", env={BOOTSTRAP_ENV: mute}), f"cannot reach the cluster at {mute}")


def test_topics_the_cluster_refuses_to_create_are_named_not_traced(
        monkeypatch: pytest.MonkeyPatch, mute: str):
    def refusing(*_: object, **__: object) -> None:
        raise TopicsRefused(f"the cluster at {mute} refused to create topic money.events "
                            "(partitions 1, replication 3): Replication-factor is invalid.")

    monkeypatch.setattr(cli_cluster, "topic_problems", no_topics_yet)
    monkeypatch.setattr(cli_cluster, "create_platform_topics", refusing)
    refused(huimin("topics", "--bootstrap", mute, "--replication", "3"),
            "refused to create topic money.events (partitions 1, replication 3)")


def test_a_replay_on_an_unreachable_cluster_gives_no_advice_before_it_is_refused(
        logs: Path, tmp_path: Path):
    result = huimin("replay", str(logs / "a.jsonl"), "--rate", "1000", "--bootstrap",
                    "127.0.0.1:1", "--results", str(tmp_path / "r.jsonl"))
    refused(result, "cannot reach the cluster at 127.0.0.1:1")
    assert "days per second" not in result.output


def test_replay_on_a_cluster_that_cannot_be_reached(monkeypatch: pytest.MonkeyPatch,
                                                    logs: Path, tmp_path: Path, mute: str):
    monkeypatch.setattr(cli, "execute", unreachable)
    refused(huimin("replay", str(logs / "a.jsonl"), "--rate", "10", "--bootstrap",
                   mute, "--results", str(tmp_path / "r.jsonl")),
            f"cannot reach the cluster at {mute} (is it up?)")
    refused(huimin("replay", str(logs / "a.jsonl"), "--rate", "10", "--bootstrap",
                   "127.0.0.1:1", "--results", str(tmp_path / "r.jsonl")),
            "cannot reach the cluster at 127.0.0.1:1 (is it up?): 127.0.0.1:1: connection "
            "refused")


def test_replay_on_a_cluster_warns_where_a_workers_restart_would_outlive_the_window(
        monkeypatch: pytest.MonkeyPatch, logs: Path, tmp_path: Path):
    """A cluster's workers may restart or rebalance mid-replay: at a simulated clock so fast
    that their recovery spans the 7-day window, the redelivered requests would be refused."""
    monkeypatch.setattr(cli, "execute", unreachable)
    monkeypatch.setattr(cli, "_check_platform_there", lambda *_: 0)
    monkeypatch.setattr(cli, "check_reachable", lambda *_: None)  # (an unreachable one is
    header = orjson.loads((logs / "a.jsonl").read_bytes().splitlines()[0])  # refused first)
    assert header["visits"]["days"] > 7  # generate's default: 60
    for rate, warned in (("1000", True), ("0.05", False), ("1e9", True)):  # all at once too
        result = huimin("replay", str(logs / "a.jsonl"), "--rate", rate, "--bootstrap",
                        "127.0.0.1:1", "--results", str(tmp_path / "r.jsonl"))
        assert ("days per second" in result.output) == warned, result.output


def test_replay_where_no_platform_answers(monkeypatch: pytest.MonkeyPatch, logs: Path,
                                          tmp_path: Path, mute: str):
    def silent(*_: object, **__: object) -> None:
        raise PlatformSilent("no platform answered the hospitals' sign-in (9001) within 120 s")

    monkeypatch.setattr(cli, "execute", silent)
    monkeypatch.setattr(cli, "_check_platform_there", lambda *_: 0)
    refused(huimin("replay", str(logs / "a.jsonl"), "--rate", "10", "--bootstrap",
                   mute, "--results", str(tmp_path / "r.jsonl")),
            "no platform answered the hospitals' sign-in")


def test_an_output_that_is_an_input_or_cannot_be_written_is_refused_before_any_work(
        monkeypatch: pytest.MonkeyPatch, logs: Path, tmp_path: Path):
    monkeypatch.setattr(cli, "execute", lambda *a, **k: pytest.fail("it replayed"))
    log, expected = logs / "a.jsonl", logs / "a.expected.jsonl"
    before = log.read_bytes(), expected.read_bytes()
    for results, phrase in ((log, "is the visit log"), (expected, "is the expected answers"),
                            (tmp_path, "is a folder"),
                            (tmp_path / "no" / "r.jsonl", "does not exist")):
        refused(huimin("replay", str(log), "--rate", "10", "--results", str(results)), phrase)
    for option in ("--junit", "--json"):
        refused(huimin("verify", str(log), str(expected), option, str(expected)),
                f"{option} {expected} is the results file")
    refused(huimin("generate", *GENERATE, "-o", str(tmp_path / "g.jsonl"), "--expected",
                   str(tmp_path / "." / "g.jsonl")), "is the visit log")
    # the replay's summary, named after its results, would overwrite a log named so
    named = tmp_path / "r.summary.json"
    named.write_bytes(log.read_bytes())
    refused(huimin("replay", str(named), "--rate", "10", "--results", str(tmp_path / "r.jsonl")),
            f"its summary.json {named} is the visit log")
    beside = tmp_path / "r.ledger.json"  # as the period's close would
    beside.write_bytes(log.read_bytes())
    refused(huimin("replay", str(beside), "--rate", "10", "--results", str(tmp_path / "r.jsonl")),
            f"its ledger.json {beside} is the visit log")
    assert beside.read_bytes() == log.read_bytes()
    assert named.read_bytes() == log.read_bytes()
    assert (log.read_bytes(), expected.read_bytes()) == before
    monkeypatch.setattr(cli, "run_scenario", lambda *a, **k: pytest.fail("it ran"))
    refused(huimin("run", "--visits", "5", "--out", str(log)),
            f"--out {log} is a file: give a folder")


def test_a_refused_replay_leaves_an_earlier_replays_files_as_they_were(
        logs: Path, tmp_path: Path):
    """Refused, a replay wrote nothing: the earlier replay's answers and summary still belong
    together, and `huimin compare` still reads the summary."""
    header_only = tmp_path / "h.jsonl"
    header_only.write_bytes((logs / "a.jsonl").read_bytes().splitlines(True)[0])
    earlier = {tmp_path / name: f"earlier {name}".encode()
               for name in ("r.jsonl", "r.summary.json", "r.latency.jsonl")}
    for path, content in earlier.items():
        path.write_bytes(content)
    results = str(tmp_path / "r.jsonl")
    refused(huimin("replay", str(header_only), "--rate", "1", "--results", results),
            "no visits: nothing to replay")
    refused(huimin("replay", str(logs / "a.jsonl"), "--rate", "10", "--bootstrap",
                   "127.0.0.1:1", "--results", results), "cannot reach the cluster")
    assert {path: path.read_bytes() for path in earlier} == earlier


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch, mute: str):
    """Only the errors a person can fix are turned into messages."""
    for bug in (KeyError("setlinfo"), ConnectionResetError(104, "reset")):
        def raises(*_: object, exc: Exception = bug, **__: object) -> None:
            raise exc

        monkeypatch.setattr(cli_cluster, "topic_problems", no_topics_yet)
        monkeypatch.setattr(cli_cluster, "create_platform_topics", raises)
        assert huimin("topics", "--bootstrap", mute).exception is bug
    assert error_message(ValueError("x")) is None
    assert error_message(OSError(98, "Address already in use")) is None  # no file


# -- results that are not the visit log's ---------------------------------------------------

def test_results_of_another_visit_log_are_refused(logs: Path):
    a, r = str(logs / "a.jsonl"), str(logs / "r.jsonl")
    a_results, r_results = str(logs / "a.expected.jsonl"), str(logs / "r.expected.jsonl")
    # the same msgids for other steps first: a settlement's answer without its setlinfo
    refused(huimin("clearing", r, a_results), "the accepted answer to its", "malformed")
    for command in ("verify", "clearing"):  # msgids the log does not have
        refused(huimin(command, a, r_results), r_results, "does not belong to this visit log",
                "not one of its requests")
    refused(huimin("verify", a, a_results, "--expected", r_results),
            "the expected answers do not belong to this visit log")


def test_a_results_key_that_is_no_msgid_is_not_echoed(logs: Path, tmp_path: Path):
    """A results file edited to key an answer by a citizen ID: the refusal said the key
    (a privacy audit); it now says only that the key is no msgid. A stray msgid is named."""
    records = [orjson.loads(line) for line in (logs / "a.expected.jsonl").read_bytes().splitlines()]
    certno = "110101199003071233"
    first = next(iter(records[0]["answers"]))
    records[0]["answers"] = {certno: records[0]["answers"][first]}
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    result = huimin("verify", str(logs / "a.jsonl"), str(edited))
    line = refused(result, "a key that is not a msgid, which is not one of its requests")
    assert certno not in result.output and certno[:10] not in line
    stray = first[:-1] + ("0" if first[-1] != "0" else "1")
    records[0]["answers"] = {stray: records[0]["answers"][certno]}
    edited.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    refused(huimin("verify", str(logs / "a.jsonl"), str(edited)),
            f"an answer to {stray}, which is not one of its requests")


def test_expected_answers_of_an_edited_or_shortened_log_are_refused_not_passed(
        logs: Path, tmp_path: Path):
    """A price tripled in the log after its expected answers were written: verify compared
    the results with the stale answers and printed PASS."""
    lines = (logs / "a.jsonl").read_bytes().splitlines(True)
    expected = logs / "a.expected.jsonl"
    visit = orjson.loads(lines[3])
    visit["items"][0]["pric"] *= 3
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(b"".join([*lines[:3], orjson.dumps(visit) + b"\n", *lines[4:]]))
    (tmp_path / "edited.expected.jsonl").write_bytes(expected.read_bytes())
    refused(huimin("verify", str(edited), str(expected)),
            f"settle another version of visit {visit['visit_no']}", "generate them again")
    shortened = tmp_path / "shortened.jsonl"
    shortened.write_bytes(b"".join(lines[:-1]))
    results = tmp_path / "results.jsonl"  # a replay of the shortened log: one visit fewer
    results.write_bytes(b"".join(expected.read_bytes().splitlines(True)[:-1]))
    refused(huimin("verify", str(shortened), str(results), "--expected", str(expected)),
            "the expected answers go on past the log's last visit")


def with_first_settlement(logs: Path, tmp_path: Path, change: Callable[[dict], None]) -> Path:
    """The oracle's results with `change` made to the first accepted settlement's setlinfo,
    as a platform under test might answer it."""
    records = [orjson.loads(line) for line in (logs / "a.expected.jsonl").read_bytes().split(b"\n")
               if line.strip()]
    setlinfos = [setl for record in records for answers in record.get("answers", {}).values()
                 if answers and answers[0].get("infcode") == 0
                 and (setl := (answers[0].get("output") or {}).get("setlinfo"))
                 and setl.get("setl_id") and "clr_type" in setl]
    change(setlinfos[0])
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return broken


def test_a_malformed_accepted_answer_fails_verify_and_stops_clearing(logs: Path,
                                                                    tmp_path: Path):
    """A platform under test whose settlement answer lacks a field: verify names it in a FAIL
    (its other checks still run), clearing, which cannot compute without it, exits 2."""
    broken = with_first_settlement(logs, tmp_path, lambda setl: setl.pop("clr_type"))
    failed = huimin("verify", str(logs / "a.jsonl"), str(broken))
    assert failed.exit_code == 1 and "Traceback" not in failed.output, failed.output
    assert "lacks clr_type" in failed.output and "FAIL" in failed.output
    refused(huimin("clearing", str(logs / "a.jsonl"), str(broken)), "lacks clr_type",
            "malformed")


def test_results_for_visits_not_in_the_log_are_refused(logs: Path, tmp_path: Path):
    extra = tmp_path / "extra.jsonl"
    extra.write_bytes((logs / "a.expected.jsonl").read_bytes()
                      + orjson.dumps({"visit_no": 999, "answers": {}}) + b"\n")
    for command in ("verify", "clearing"):
        refused(huimin(command, str(logs / "a.jsonl"), str(extra)),
                "it has results for 1 visit not in the log (visit 999")


def test_a_visit_with_two_records_is_refused_whichever_comes_first(logs: Path, tmp_path: Path):
    """A wrong record must not hide behind a right one (the last used to win, silently)."""
    lines = (logs / "a.expected.jsonl").read_bytes().splitlines(True)
    wrong = orjson.loads(lines[2])
    first = next(iter(wrong["answers"]))
    wrong["answers"][first] = [{"infcode": -1, "err_code": "E9999", "err_msg": "x",
                                "output": {}}]
    for order in ([orjson.dumps(wrong) + b"\n", lines[2]], [lines[2], lines[2]]):
        doubled = tmp_path / "doubled.jsonl"
        doubled.write_bytes(b"".join(lines[:2] + order + lines[3:]))
        for command in ("verify", "clearing"):
            refused(huimin(command, str(logs / "a.jsonl"), str(doubled)),
                    "line 4 is a second record of visit", "(the first is line 3)")


def test_a_visit_number_that_is_not_a_whole_number_is_refused(logs: Path, tmp_path: Path):
    lines = (logs / "a.expected.jsonl").read_bytes().splitlines(True)
    record = orjson.loads(lines[0])
    record["visit_no"] = str(record["visit_no"])
    odd = tmp_path / "odd.jsonl"
    odd.write_bytes(orjson.dumps(record) + b"\n" + b"".join(lines[1:]))
    refused(huimin("verify", str(logs / "a.jsonl"), str(odd)), "line 1 is not a result record",
            "whole-number visit_no")


def test_missing_results_are_still_a_fail_not_a_mismatch(logs: Path, tmp_path: Path):
    short = tmp_path / "short.jsonl"
    short.write_bytes(b"".join((logs / "a.expected.jsonl").read_bytes().splitlines(True)[:-3]))
    result = huimin("verify", str(logs / "a.jsonl"), str(short))
    assert result.exit_code == 1 and "no result" in result.output
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes((logs / "a.expected.jsonl").read_bytes())
    assert huimin("verify", str(logs / "a.jsonl"), str(whole)).exit_code == 0


def test_the_expected_answers_given_as_the_results_are_refused_not_passed(logs: Path):
    """`verify visits.jsonl visits.expected.jsonl` (a tab completion away from the results)
    compared the oracle's answers with themselves and printed PASS."""
    for extra in ([], ["--expected", str(logs / "." / "a.expected.jsonl")]):
        refused(huimin("verify", str(logs / "a.jsonl"), str(logs / "a.expected.jsonl"), *extra),
                "is the oracle's expected answers", "would always pass")


def test_a_copy_of_the_expected_answers_judged_as_results_is_said_to_be_one(logs: Path,
                                                                            tmp_path: Path):
    """Copied elsewhere, the oracle's answers pass against themselves (tests make results
    from them, so they are not refused): the verdict says what they are, and a file without
    the visits' digests, as a run or a replay writes, is not told so (a review)."""
    copy_ = tmp_path / "results.jsonl"
    copy_.write_bytes((logs / "a.expected.jsonl").read_bytes())
    said = huimin("verify", str(logs / "a.jsonl"), str(copy_), "--json",
                  str(tmp_path / "v.json"))
    assert said.exit_code == 0
    assert "holds the oracle's expected answers" in " ".join(said.output.split())
    assert orjson.loads((tmp_path / "v.json").read_bytes())["results_are_expected_answers"]
    records = [orjson.loads(line) for line in copy_.read_bytes().splitlines()]
    copy_.write_bytes(b"".join(orjson.dumps({k: v for k, v in r.items() if k != "visit_digest"})
                               + b"\n" for r in records))
    said = huimin("verify", str(logs / "a.jsonl"), str(copy_), "--json",
                  str(tmp_path / "v.json"))
    assert said.exit_code == 0 and "expected answers" not in said.output
    assert not orjson.loads((tmp_path / "v.json").read_bytes())["results_are_expected_answers"]


def test_the_results_given_as_the_expected_answers_too_are_named_as_such(logs: Path,
                                                                         tmp_path: Path):
    """`verify v.jsonl r.jsonl --expected r.jsonl` was told that r.jsonl "is the oracle's
    expected answers" and to give the file `replay --results` wrote, which it was."""
    results = tmp_path / "r.jsonl"
    results.write_bytes((logs / "a.expected.jsonl").read_bytes())
    refused(huimin("verify", str(logs / "a.jsonl"), str(results), "--expected", str(results)),
            f"RESULTS and --expected are the same file, {results}", "would always pass",
            "--expected the oracle's answers")


def test_a_results_file_given_first_is_named_as_one(logs: Path):
    """`verify results.jsonl visits.jsonl`, the two swapped: said, not only "not a header"."""
    refused(huimin("verify", str(logs / "a.expected.jsonl"), str(logs / "a.jsonl")),
            "line 1 is not a visit-log header", "is this the results file? The visit log "
            "comes first")


def test_no_results_at_all_are_refused(logs: Path):
    empty = str(logs / "empty.jsonl")
    for command in ("verify", "clearing"):
        refused(huimin(command, str(logs / "a.jsonl"), empty), f"no results in {empty}")


# -- the run's summary accounts for every visit ---------------------------------------------

def summary(visits: int, local: int, cross: int) -> dict:
    return {
        "visits": visits, "visits_settled_by_route": {"local": local, "cross": cross},
        "money_fen": {}, "answers_by_outcome": {}, "settlement_latency_ms": {},
        "hop_latency_ms_p50": {}, "dead_letters_by_code": {}, "faults": "", "ok": False,
        "timed_out": 0, "unanswered_where": [],
        "accounting": dict.fromkeys(("sent", "answered_ok", "answered_error", "dead_lettered",
                                     "unaccounted", "redelivered"), 0),
        "bad_requests": {"sent": 0, "as_expected": 0, "unexpected_dead_letters": 0,
                         "problems": []},
        "clearing": {"months": 0, "equal_to_oracle": True},
        "ehr": {"published": 0, "queries": 0, "retrievals": 0, "refusals": 0,
                "audit_events": 0, "audit_events_expected": 0, "lab_tests_avoided": 0,
                "lab_saving_fen": 0},
        "daily_reconciliation": {"hospital_days": 0, "balanced_at_once": 0,
                                 "balanced_after_posting": 0, "balanced_after_waiting": 0,
                                 "unbalanced": [], "posted": 0, "expected_posted": 0},
        "reconciliation": {"sent": 0, "balanced": 0, "equal_to_oracle": 0, "problems": []},
        "oracle": {"settlements_expected": 0, "settlements_equal": 0, "answers_compared": 0,
                   "answers_equal": 0, "mismatches": []},
        "timing_s": {"setup": 0.0, "platform_ready": 0.0, "visits": 0.0, "total": 0.0},
    }


@pytest.mark.parametrize(("visits", "local", "cross", "line"), [
    (60, 43, 14, "Visits 60   ending settled local 43, cross-province 14, otherwise 3 "
                 "(refused, failed, timed out or cancelled)"),
    (57, 43, 14, "Visits 57   ending settled local 43, cross-province 14"),
])
def test_the_run_summary_counts_the_visits_not_settled(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path, visits: int, local: int,
                                                        cross: int, line: str):
    monkeypatch.setattr(cli, "run_scenario",
                        lambda *a, **k: SimpleNamespace(ok=True, out_dir=tmp_path))
    monkeypatch.setattr(cli, "summarise", lambda _: summary(visits, local, cross))
    monkeypatch.setattr(cli, "write_outputs", lambda *_: None)
    result = huimin("run")
    assert result.exit_code == 0, result.output
    assert line in result.output.splitlines()


def test_a_run_with_unanswered_requests_says_where_each_went_and_what_came_unexpected(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    where = ("H33030000001202612072336000009 (1101): hosp.requests[5]@132 committed, "
             "hosp.responses[3]@247")
    failing = {**summary(1, 0, 0), "timed_out": 1, "unanswered_where": [where],
               "unexpected_answers": 1,
               "unexpected_answer_msgids": ["H33030000001202612072336000009"]}
    monkeypatch.setattr(cli, "run_scenario", lambda *a, **k: SimpleNamespace(
        ok=False, out_dir=tmp_path, result=SimpleNamespace(cluster_lost=None)))
    monkeypatch.setattr(cli, "summarise", lambda _: failing)
    monkeypatch.setattr(cli, "write_outputs", lambda *_: None)
    output = huimin("run").output
    assert "1 requests unanswered within the timeout; where the first went on the cluster " \
           "(topic[partition]@offset" in output
    assert where in output.replace("\n", " ")
    assert "1 answers the hospitals did not expect (to msgids " \
           "H33030000001202612072336000009)" in output.replace("\n", " ")


def test_a_run_stopped_on_a_cluster_lost_says_why_first_and_offers_no_rerun(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A broker killed under the run: what it says is the cluster's loss, and that the
    clearing was not read (not that it differs), with no command to run it again."""
    why = "the cluster could not be reached once the visits stopped (127.0.0.1:9: refused)"
    lost = {**summary(40, 30, 5), "visits_planned": 300,
            "cluster_lost": "the cluster refused every connection for 60 s while no answer "
                            "came (127.0.0.1:9: connection refused)",
            "clearing": {"months": 0, "equal_to_oracle": False},
            "reconciliation": {"sent": 0, "balanced": 0, "equal_to_oracle": 0,
                               "problems": [f"not sent: {why}"], "not_sent": why}}
    monkeypatch.setattr(cli, "run_scenario", lambda *a, **k: SimpleNamespace(
        ok=False, out_dir=tmp_path, result=SimpleNamespace(cluster_lost="refused")))
    monkeypatch.setattr(cli, "summarise", lambda _: lost)
    monkeypatch.setattr(cli, "write_outputs", lambda *_: None)
    result = huimin("run")
    said = " ".join(result.output.split())
    assert result.exit_code == 1
    fails = said.split("FAIL ", 1)[1]
    assert fails.split(" - ")[1].startswith(
        "the visits stopped after 0 s, 40 of 300 arrived (--stop-after-unreachable): the "
        "cluster refused every connection for 60 s while no answer came (127.0.0.1:9: "
        "connection refused)"), said
    assert f"Clearing not read: {why}" in said and "differ" not in said
    assert "Reproduce with" not in said


def test_clearing_of_a_month_that_is_not_one_or_has_no_settlements_is_bad_input(logs: Path):
    a, results = str(logs / "a.jsonl"), str(logs / "a.expected.jsonl")
    wrong = huimin("clearing", a, results, "--month", "banana")
    assert wrong.exit_code == 2 and "yyyy-MM" in wrong.output
    refused(huimin("clearing", a, results, "--month", "1999-01"),
            "No settlements in 1999-01; months with some:")


def test_a_visit_of_a_later_version_than_its_header_is_refused(logs: Path, tmp_path: Path):
    """A version-4 line (a 2302 in it, say) under a version-2 header: the log is of a huimin
    that did not know it."""
    lines = (logs / "a.jsonl").read_bytes().splitlines(True)
    header = orjson.loads(lines[0])
    older = tmp_path / "older.jsonl"
    older.write_bytes(orjson.dumps({**header, "huimin_visitlog": 2}) + b"\n" + b"".join(lines[1:]))
    refused(huimin("verify", str(older), str(logs / "a.expected.jsonl")),
            "line 2 is a visit of version 4, under a header of version 2")
    # a line that does not say its version is of its header's: read as before
    unstated = tmp_path / "unstated.jsonl"
    unstated.write_bytes(orjson.dumps({**header, "huimin_visitlog": 3}) + b"\n" + b"".join(
        orjson.dumps({k: v for k, v in orjson.loads(line).items() if k != "v"}) + b"\n"
        for line in lines[1:] if b'"2302"' not in line))
    _, visits = read_visit_log(unstated)
    assert {v.v for v in visits} == {3}
    # and is checked as such: a 2302 is not of version 3
    with_2302 = next(line for line in lines[1:] if b'"2302"' in line)
    bare = {k: v for k, v in orjson.loads(with_2302).items() if k != "v"}
    unstated.write_bytes(orjson.dumps({**header, "huimin_visitlog": 3}) + b"\n"
                         + orjson.dumps(bare) + b"\n")
    with pytest.raises(LogFormatError, match="a 2302 step is of visit version 4"):
        list(read_visit_log(unstated)[1])


def test_a_visit_log_whose_visits_are_not_read_leaves_no_file_open(logs: Path):
    """`verify` and `clearing` may stop before they read the visits (the results file
    refused, say): the log stayed open until the collector found it."""
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_files()
    header, visits = read_visit_log(logs / "a.jsonl")
    assert open_files() == before and header.visits.visits > 0
    assert next(visits).visit_no >= 0 and open_files() == before + 1  # while they are read
    visits.close()
    assert open_files() == before


def test_a_visit_log_from_a_pipe_gives_all_its_visits(logs: Path):
    """`huimin clearing <(zcat log.gz) …`: a pipe cannot be opened again past its header."""
    data = (logs / "a.jsonl").read_bytes()
    readable, writable = os.pipe()

    def write() -> None:
        with os.fdopen(writable, "wb") as pipe:
            pipe.write(data)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        _, visits = read_visit_log(Path(f"/dev/fd/{readable}"))
        assert len(list(visits)) == len(data.splitlines()) - 1
    finally:
        writer.join()
        os.close(readable)


def test_an_empty_visit_log_is_said_to_be_empty(tmp_path: Path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    for command in (["verify", str(empty), str(empty)], ["replay", str(empty), "--rate", "1"]):
        refused(huimin(*command), "is empty: not a visit log")


def test_an_amount_that_is_not_whole_fen_fails_verify_and_stops_clearing(logs: Path,
                                                                      tmp_path: Path):
    """A platform under test that answers 100.5 for a fund payment: a named FAIL and a clear
    refusal, not a traceback from the money checks."""
    broken = with_first_settlement(logs, tmp_path,
                                   lambda setl: setl.update(hifp_pay=setl["hifp_pay"] + 0.5))
    failed = huimin("verify", str(logs / "a.jsonl"), str(broken))
    assert failed.exit_code == 1 and "Traceback" not in failed.output, failed.output
    assert "not whole fen: hifp_pay" in failed.output
    refused(huimin("clearing", str(logs / "a.jsonl"), str(broken)), "not whole fen")


@pytest.mark.parametrize(("change", "said"), [
    ({"setl_time": "2026-W49-2 08:18:00"}, "has a setl_time that is not yyyy-MM-dd HH:mm:ss"),
    ({"hifp_pay": -1}, "has amounts outside 0 to ¥1 billion: hifp_pay")])
def test_a_settlement_no_money_event_could_carry_fails_verify_and_stops_clearing(
        logs: Path, tmp_path: Path, change: dict[str, Any], said: str):
    """A time that is no time, or a negative fund payment: both ended in a traceback from
    the money flow's own check (a review of the commit that made that check stricter)."""
    broken = with_first_settlement(logs, tmp_path, lambda setl: setl.update(change))
    failed = huimin("verify", str(logs / "a.jsonl"), str(broken))
    assert failed.exit_code == 1 and "Traceback" not in failed.output, failed.output
    assert said in " ".join(failed.output.split())
    refused(huimin("clearing", str(logs / "a.jsonl"), str(broken)), said.split(": ")[0][-20:])


# -- bad input of other kinds ---------------------------------------------------------------

def test_a_cluster_address_that_is_not_host_and_port_is_refused(logs: Path, tmp_path: Path):
    for command in (["dead-letters", "--bootstrap", "127.0.0.1:abc"],
                    ["topics", "--bootstrap", "broker:99999"],
                    ["topics", "--bootstrap", "a:b:c"],  # colons, and not an IPv6 address
                    ["topics", "--bootstrap", "[fe80::1::2]:9092"],
                    ["replay", str(logs / "a.jsonl"), "--rate", "1", "--bootstrap", "x:1,y:0"],
                    ["replay", str(logs / "a.jsonl"), "--rate", "1", "--bootstrap", ""]):
        result = huimin(*command)
        assert result.exit_code == 2 and "is not host[:port]" in result.output, result.output
    for command in (["run"], ["replay", str(logs / "a.jsonl"), "--rate", "1", "--results",
                              str(tmp_path / "r.jsonl")]):
        refused(huimin(*command, env={BOOTSTRAP_ENV: "127.0.0.1:abc"}),
                f"{BOOTSTRAP_ENV}: '127.0.0.1:abc' is not host[:port]")


def test_what_a_user_typed_is_printed_as_typed():
    """No emoji codes: ":b:" in a path is not a letter B in a box."""
    result = huimin("generate", *GENERATE, "-o", "/nonexistent/a:b:c.jsonl")
    assert result.exit_code == 2 and "/nonexistent/a:b:c.jsonl" in result.output, result.output


def test_an_unknown_error_code_is_refused_not_listed_as_none():
    result = huimin("dead-letters", "--bootstrap", "127.0.0.1:1", "--code", "BOGUS")
    assert result.exit_code == 2 and "BOGUS is not one of the platform's error codes" in \
        " ".join(result.output.split())


def test_a_full_disk_is_a_message_not_a_traceback():
    assert error_message(OSError(errno.ENOSPC, "No space left on device")) == \
        "cannot write the output: no space left on its device"


def test_a_failing_device_is_a_message_not_a_traceback():
    assert error_message(OSError(errno.EIO, "Input/output error")) == (
        "an input/output error on a file's device (a failing disk or file system, or a "
        "special file such as one under /proc)")
    assert error_message(OSError(errno.EIO, "Input/output error", "/data/v.jsonl")) == \
        "/data/v.jsonl: Input/output error"  # named: said with its file


@pytest.mark.skipif(not os.access("/proc/version", os.W_OK),
                    reason="only root opens /proc/version for writing")
def test_a_device_that_fails_a_write_is_a_message_not_a_traceback(logs: Path, tmp_path: Path):
    """/proc/version opens for writing (as root), and each write fails with EIO (a failing
    disk's error), which names no file."""
    results = tmp_path / "r.jsonl"  # the oracle's answers as a replay's (verify warns)
    results.write_bytes((logs / "a.expected.jsonl").read_bytes())
    said = refused(huimin("verify", str(logs / "a.jsonl"), str(results), "--json",
                          "/proc/version"), "Error: an input/output error")
    assert "a special file such as one under /proc" in said


def test_an_interrupted_generate_leaves_no_half_written_log(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path):
    def interrupted(*_: object, **__: object) -> Iterator[object]:
        yield from ()
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "generate_visits", interrupted)
    result = huimin("generate", *GENERATE, "-o", str(tmp_path / "v.jsonl"))
    assert result.exit_code == 130  # as the shell reports Ctrl-C
    assert list(tmp_path.iterdir()) == []  # neither the log, its answers nor a partial file


@pytest.mark.parametrize(("change", "phrase"), [
    (lambda v: v.update(begntime="2026-13-45 99:00:00"), "begntime: Value error, month must"),
    (lambda v: v.update(begntime="2026-12-01  8:00:00"), "Value error, Invalid isoformat"),
    (lambda v: v.update(certno="12345"), "certno: String should match pattern"),
    (lambda v: v.update(steps=[*v["steps"], "9999"]), "is not a transaction a visit sends"),
    (lambda v: v.update(steps=["2601", *v["steps"]]), "a 2601 with nothing to reverse"),
    # a mark on a step it is not of was taken and ignored: `2207x` settled, PASS (a review)
    (lambda v: v.update(steps=[*v["steps"], "2207x"]), "the mark x is of a cancellation"),
    (lambda v: v.update(steps=["1101^", *v["steps"][1:]]), "the mark ^ is of a 2601, not"),
    (lambda v: v.update(steps=[*v["steps"], "5206d"]), "the mark d is of a fee upload"),
    (lambda v: v["items"][0].update(pric=2**62, cnt=8), "items.0.pric: Input should be less"),
    (lambda v: v.update({"张三110105194912310025": 1}),
     "(an unknown field): Extra inputs are not permitted"),  # a key's name is not echoed
    (lambda v: v.update(steps=[*v["steps"], "张三110105194912310025"]),
     "is not a transaction a visit sends"),
    (lambda v: v.update(begntime="9999-12-31 23:00:00"), "not in the years 1990–2099"),
    (lambda v: v.update(begntime="0001-01-01 00:00:00"), "not in the years 1990–2099"),
    (lambda v: v["items"][0].update(pric="1200"), "items.0.pric: Input should be a valid int"),
    (lambda v: v["items"][0].update(pric=12.0), "items.0.pric: Input should be a valid int"),
    (lambda v: v["items"][0].update(cnt=True), "items.0.cnt: Input should be a valid int"),
    (lambda v: v.update(certno="１１０１０５１９４９１２３１００２５"),  # full-width digits
     "certno: String should match pattern"),
    # a hospital or area code the platform cannot take: each request was dead-lettered while
    # the hospital waited out its answer, and verify passed 0 of 0
    (lambda v: v.update(fixmedins_code=""), "fixmedins_code: String should match pattern"),
    (lambda v: v.update(fixmedins_code="医院一"), "fixmedins_code: String should match pattern"),
    (lambda v: v.update(mdtrtarea_admvs="11010"), "mdtrtarea_admvs: String should match"),
    # a line of a later version may mean more than this huimin would carry out
    (lambda v: v.update(v=9), "v: Value error, visit version 9: this huimin reads versions"),
    (lambda v: v.update(v="3"), "v: Input should be a valid integer"),
    (lambda v: v.update(v=3, steps=[*v["steps"], "2302"]), "a 2302 step is of visit version 4"),
    (lambda v: v.update(v=2, steps=[*v["steps"], "7002"]), "a health-record step (7001–7004)"),
    (lambda v: v.update(kind="inpatient", med_type="21", batches=1, items=v["items"][:1],
                        steps=["1101", "2401", "2301", "2301", "2402", "2303", "2304"]),
     "step 3: a 2301 with no item left to upload"),
    # another city than the hospital's: the platform refuses every request (E3003)
    (lambda v: v.update(mdtrtarea_admvs=v["fixmedins_code"][1:5] + "99"),
     "mdtrtarea_admvs is not the hospital's city"),
])
def test_a_visit_line_that_cannot_be_carried_out_is_refused_with_where_and_why(
        logs: Path, tmp_path: Path, change: Callable[[dict], None], phrase: str):
    lines = (logs / "a.jsonl").read_bytes().splitlines(True)
    visit = orjson.loads(lines[2])
    change(visit)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join([*lines[:2], orjson.dumps(visit) + b"\n", *lines[3:]]))
    for command in (["verify", str(bad), str(logs / "a.expected.jsonl")],
                    ["replay", str(bad), "--rate", "1", "--results", str(tmp_path / "r.jsonl")]):
        result = huimin(*command)
        refused(result, "line 3 is not a visit", phrase)
        assert "张三" not in result.output and "2026-13-45" not in result.output


def test_a_visit_repeated_or_sharing_another_visits_first_msgid_is_refused(
        logs: Path, tmp_path: Path):
    """Hospitals route answers by msgid: a copied line's visit waited for ever for answers
    its twin took."""
    lines = (logs / "a.jsonl").read_bytes().splitlines(True)
    twin = orjson.loads(lines[2])
    twin["visit_no"] = 10**6
    for rest, phrase in (([lines[2]], "repeats an earlier visit's visit_no"),
                         ([orjson.dumps(twin) + b"\n"], "repeats an earlier visit's first msgid")):
        bad = tmp_path / "bad.jsonl"
        bad.write_bytes(b"".join([*lines[:3], *rest, *lines[3:]]))
        refused(huimin("replay", str(bad), "--rate", "1", "--results", str(tmp_path / "r.jsonl")),
                "line 4 repeats", phrase)


def test_a_log_with_a_header_and_no_visits_is_refused_before_anything_starts(
        monkeypatch: pytest.MonkeyPatch, logs: Path, tmp_path: Path):
    """It started the broker and the platform for ~22 s, replayed nothing, and `verify` then
    said "no results"."""
    monkeypatch.setattr(cli, "execute", lambda *a, **k: pytest.fail("it replayed"))
    header_only = tmp_path / "h.jsonl"
    header_only.write_bytes((logs / "a.jsonl").read_bytes().splitlines(True)[0] + b"\n")
    refused(huimin("replay", str(header_only), "--rate", "300", "--results",
                   str(tmp_path / "r.jsonl")), str(header_only), "no visits: nothing to replay")
    assert not (tmp_path / "r.platform").exists()


def test_blank_lines_may_end_a_results_file_not_come_between_its_records(
        logs: Path, tmp_path: Path):
    """As a visit log's: a results file ending in blank lines was refused ("line 31 is not a
    result record")."""
    records = (logs / "a.expected.jsonl").read_bytes().splitlines(True)
    ended = tmp_path / "ended.jsonl"
    ended.write_bytes(b"".join(records) + b"\n \n")
    result = huimin("verify", str(logs / "a.jsonl"), str(ended))
    assert result.exit_code == 0, result.output
    between = tmp_path / "between.jsonl"
    between.write_bytes(b"".join([*records[:2], b"\n", *records[2:]]))
    refused(huimin("verify", str(logs / "a.jsonl"), str(between)),
            "line 3 is blank, between result records")


def test_a_truncated_visit_line_is_placed_by_its_column(logs: Path, tmp_path: Path):
    """The parser places the end within the line it was given: not "at line 2" of it."""
    lines = (logs / "a.jsonl").read_bytes().splitlines(True)
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(b"".join([*lines[:2], lines[2][:100] + b"\n", *lines[3:]]))
    said = refused(huimin("verify", str(cut), str(logs / "a.expected.jsonl")),
                   "line 3 is not a visit: Invalid JSON: EOF while parsing")
    assert said.endswith("at column 100") and "at line" not in said


def test_blank_lines_may_end_a_log_not_come_between_its_visits(logs: Path, tmp_path: Path):
    lines = (logs / "a.jsonl").read_bytes().splitlines(True)
    ended = tmp_path / "ended.jsonl"
    ended.write_bytes(b"".join(lines) + b"\n\n")
    result = huimin("verify", str(ended), str(logs / "a.expected.jsonl"))
    assert result.exit_code == 0, result.output
    between = tmp_path / "between.jsonl"
    between.write_bytes(b"".join([*lines[:3], b"\n", *lines[3:]]))
    refused(huimin("verify", str(between), str(logs / "a.expected.jsonl")),
            "line 4 is blank, between visits")


@pytest.mark.parametrize(("content", "phrase"), [
    (b"\x1f\x8b\x08\x00rest", "is gzip-compressed: decompress it first"),
    (b'{"huimin_visitlog": 3, "world": {}, "visits": {}}\n{"certno": "\xd5\xc5"}\n',
     "line 2 is not UTF-8 text"),
    (b"[1, 2]\n", "line 1 is not a visit-log header (no `huimin_visitlog` version"),
])
def test_a_file_that_is_not_a_visit_log_says_what_it_is(tmp_path: Path, content: bytes,
                                                        phrase: str):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    refused(huimin("replay", str(bad), "--rate", "1", "--results", str(tmp_path / "r.jsonl")),
            phrase)


@pytest.mark.parametrize(("content", "phrase"), [
    (b"\x1f\x8b\x08\x00rest", "is gzip-compressed: decompress it first"),
    (b"\xd5\xc5\xfe binary\n", "line 1 is not UTF-8 text (a results file is UTF-8)"),
])
def test_a_results_file_that_is_not_text_says_so(logs: Path, tmp_path: Path, content: bytes,
                                                 phrase: str):
    """It was told as JSON it fails to be (`str is not valid UTF-8: surrogates not allowed`;
    a review found it), where a visit log's is told as not text."""
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    refused(huimin("verify", str(logs / "a.jsonl"), str(bad)), phrase)


@pytest.mark.parametrize(("key", "value", "phrase"), [
    ("persons", "50", "persons must be a whole number"),
    ("employee_share", True, "employee_share must be a number"),
    ("persons", -5, "persons must be 1–10,000,000"),
    ("cities_per_province", 0, "cities_per_province must be 1–99"),
    ("seed", 2**70, "seed must be a whole number of at most 64 bits"),
])
def test_a_header_that_describes_no_world_is_refused(logs: Path, tmp_path: Path, key: str,
                                                     value: int, phrase: str):
    lines = (logs / "a.jsonl").read_bytes().splitlines(True)
    header = orjson.loads(lines[0])
    header["world"][key] = value
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))
    refused(huimin("verify", str(bad), str(logs / "a.expected.jsonl")),
            "line 1 is not a visit-log header", phrase)


@pytest.mark.parametrize("value", ["3", 10**9, -1, True])
def test_a_header_asking_for_too_many_or_no_whole_number_of_bad_requests_is_refused(
        logs: Path, tmp_path: Path, value: object):
    """10⁹ took 5.6 GB in 15 s before anything was sent."""
    lines = (logs / "a.jsonl").read_bytes().splitlines(True)
    header = orjson.loads(lines[0])
    header["bad_per_kind"] = value
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))
    refused(huimin("replay", str(bad), "--rate", "1", "--results", str(tmp_path / "r.jsonl")),
            "line 1 is not a visit-log header", "bad_per_kind must be a whole number 0–1,000")


@pytest.mark.parametrize("value", ["2", 0, 2.0, True])
def test_a_header_naming_no_generator_version_is_refused(logs: Path, tmp_path: Path,
                                                         value: object):
    lines = (logs / "a.jsonl").read_bytes().splitlines(True)
    header = orjson.loads(lines[0])
    assert header["generator"] == GENERATOR_VERSION  # as `generate` writes it
    header["generator"] = value
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))
    refused(huimin("verify", str(bad), str(logs / "a.expected.jsonl")),
            "line 1 is not a visit-log header", "its generator must be a whole number from 1")


def test_a_header_of_before_the_generator_was_said_reads_as_unsaid(logs: Path, tmp_path: Path):
    """Logs written before 2026-12-07 have no `generator`: still read, the generator unsaid
    (None), so their replays' summaries do not claim the generator of today."""
    lines = (logs / "a.jsonl").read_bytes().splitlines(True)
    header = orjson.loads(lines[0])
    del header["generator"]
    old = tmp_path / "old.jsonl"
    old.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))
    read, visits = read_visit_log(old)
    visits.close()
    assert read.generator is None
    assert read == replace(read_visit_log(logs / "a.jsonl")[0], generator=None)
    result = huimin("verify", str(old), str(logs / "a.expected.jsonl"))
    assert result.exit_code == 0, result.output


def test_verify_of_a_piped_log_without_expected_answers_says_it_needs_a_file(
        logs: Path, tmp_path: Path):
    """`verify <(cat visits.jsonl) results.jsonl` read the pipe twice, and the second time
    found no header."""
    import os
    import threading

    pipe = tmp_path / "visits.jsonl"
    os.mkfifo(pipe)
    content = (logs / "a.jsonl").read_bytes()
    writer = threading.Thread(target=lambda: pipe.write_bytes(content), daemon=True)
    writer.start()
    refused(huimin("verify", str(pipe), str(logs / "a.expected.jsonl")),
            "is not a regular file", "reads the log twice")
    writer.join(timeout=5)


def test_replay_says_before_it_starts_when_its_arrivals_span_hours(logs: Path, tmp_path: Path):
    """A visit mistyped years out at --speed 10000 meant ~8.8 h of waiting, unannounced."""
    lines = (logs / "a.jsonl").read_bytes().splitlines(True)
    late = orjson.loads(lines[-1])
    late["begntime"] = "2036-01-01 08:00:00"
    log = tmp_path / "late.jsonl"
    log.write_bytes(b"".join([*lines[:-1], orjson.dumps(late) + b"\n"]))
    result = huimin("replay", str(log), "--speed", "10000", "--bootstrap", "127.0.0.1:1",
                    "--results", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 2  # refused after the notice: the cluster cannot be reached
    assert "The visits arrive over 7 h 57 min of wall time (--speed 10000)" in result.output
    assert "a higher --speed or --rate shortens it" in result.output


def test_trail_of_an_empty_msgid_is_refused_as_matching_everything():
    refused(huimin("trail", " ", "--bootstrap", "127.0.0.1:1"), "an empty msgid would match "
            "every record")


def test_trail_of_a_citizen_id_is_refused_without_reading_the_cluster(
        monkeypatch: pytest.MonkeyPatch):
    """Every record holding a person's ID, `ehr.audit` and the health-record rows among them,
    said where the person has records with no consent asked and no audit (a privacy audit).
    A real msgid, which holds none, is followed."""
    followed: list[list[str]] = []

    def follow(_: str, msgids: list[str], *__: object, **___: object) -> Trail:
        followed.append(msgids)
        return Trail({m: [] for m in msgids}, complete=True)

    monkeypatch.setattr(cli_cluster, "follow_trail", follow)
    monkeypatch.setattr(cli_cluster, "bootstrap_servers", lambda given: given)
    certno = "110101199003071233"
    result = huimin("trail", "H11010000001202612010800000001", f"x{certno}", "--bootstrap",
                    "127.0.0.1:1")
    refused(result, "holds a citizen ID number")
    assert certno not in result.output and followed == []
    result = huimin("trail", "H11010000001202612010800000001", "--bootstrap", "127.0.0.1:1")
    assert followed == [["H11010000001202612010800000001"]], result.output


def test_a_web_or_metrics_port_in_use_is_refused_naming_its_option(
        monkeypatch: pytest.MonkeyPatch):
    """Before any broker or platform starts: Faust, or prometheus-client, would otherwise
    fail with a traceback after them."""
    monkeypatch.setattr(cli, "run_scenario", unreachable)  # what `run` would go on to
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for command, option in ((["worker", "--bootstrap", "127.0.0.1:1"], "--web-port"),
                                (["run"], "--metrics-port")):
            result = huimin(*command, option, port)
            refused(result, f"Invalid value for {option}: cannot serve on 127.0.0.1:{port}")
            assert "the port is in use" in " ".join(result.output.replace("│", "").split())
    refused(huimin("worker", "--bootstrap", "127.0.0.1:1", "--web-host", "nosuchhost.invalid"),
            "Invalid value for --web-host: cannot serve on nosuchhost.invalid")


@pytest.mark.parametrize("command", [["run", "--broker", "redpanda"],
                                     ["bench", "--broker", "redpanda"],
                                     ["broker", "--kind", "redpanda"]])
def test_a_broker_kind_huimin_cannot_start_is_refused_before_anything_starts(
        monkeypatch: pytest.MonkeyPatch, command: list[str]):
    monkeypatch.setattr(cli, "run_scenario", unreachable)
    monkeypatch.setattr(cli_cluster, "EmbeddedBroker", unreachable)
    monkeypatch.setattr("benchmarks.load.run_bench", unreachable)
    refused(huimin(*command), f"Invalid value for {command[1]}: one of tansu, kafka")


def test_a_data_folder_for_the_embedded_broker_is_refused_before_it_starts(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Tansu keeps its data in memory: nothing would be kept there, as the option says."""
    monkeypatch.setattr(cli_cluster, "EmbeddedBroker", unreachable)
    refused(huimin("broker", "--data-dir", str(tmp_path / "k")),
            "Invalid value for --data-dir: the embedded broker keeps its data in memory")


@pytest.mark.parametrize(("command", "copies"), [
    (["world", "--out", "{tmp}/w"], "build in this process: ~4,400 MiB in all"),
    (["generate", "-o", "{tmp}/v.jsonl"], "build in this process: ~4,400 MiB in all"),
    (["run", "--workers", "2", "--out", "{tmp}/r"],
     "build in each of this run and its 2 worker(s): ~13,200 MiB in all"),
    (["run", "--faults", "join-worker=1", "--out", "{tmp}/r"],
     "build in each of this run and its 2 worker(s): ~13,200 MiB in all"),
    (["bench", "--rates", "5", "--duration", "3", "--warmup", "1", "--out", "{tmp}/b"],
     "build in each of the bench and its 1 worker(s): ~8,800 MiB in all"),
    (["worker", "--bootstrap", "127.0.0.1:9"], "build in this worker: ~4,400 MiB in all"),
])
def test_a_world_too_large_for_the_machines_memory_is_refused_before_it_is_built(
        command: list[str], copies: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten million persons take ~4.4 GiB in every process that builds the world: a command
    whose copies would not fit says so at once (exit 2), rather than be killed minutes into
    building them, naming the processes that build it and what they take in all."""
    monkeypatch.setattr(cli_options, "available_mib", lambda: 4_000)
    args = [a.format(tmp=tmp_path) for a in command]
    line = refused(huimin(*args, "--persons", "10000000"), "more than the 4,000 MiB")
    assert f"a world of 10,000,000 persons takes ~4,400 MiB and ~140 s to {copies}, more " \
           "than the 4,000 MiB available here; give fewer --persons" in line
    assert not any(tmp_path.iterdir())  # nothing made before the refusal


def test_a_world_refused_for_its_copies_fits_in_fewer_processes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: Path) -> None:
    """With 10,000 MiB free, one copy of ten million persons fits and three do not: the
    count of processes decides, and each command says what would help; a replay or a
    verify of a log builds its header's world as many times."""
    monkeypatch.setattr(cli_options, "available_mib", lambda: 10_000)
    cli_options.check_world_fits(10_000_000, 2, "two")
    line = refused(huimin("run", "--workers", "2", "--persons", "10000000", "--out",
                          str(tmp_path / "r")), "~13,200 MiB in all")
    assert line.endswith("give fewer --persons or --workers")
    line = refused(huimin("bench", "--rates", "40000", "--duration", "1", "--warmup", "0.5",
                          "--workers", "2", "--out", str(tmp_path / "b")), "in all")
    assert line.endswith("give --persons (the rates make it 8,000,000) or fewer --workers")
    monkeypatch.setattr(cli_options, "available_mib", lambda: 1)  # 200 persons: ~1 MiB each
    line = refused(huimin("replay", str(logs / "a.jsonl"), "--rate", "5", "--results",
                          str(tmp_path / "r.jsonl")), "a world of 200 persons")
    assert "this replay and its 1 worker(s): ~2 MiB in all, more than the 1 MiB" in line
    assert line.endswith("or generate a log of fewer --persons")
    assert not (tmp_path / "r.jsonl").exists()
    monkeypatch.setattr(cli_options, "available_mib", lambda: 0)
    line = refused(huimin("verify", str(logs / "a.jsonl"), str(logs / "a.jsonl")),
                   "a world of 200 persons")
    assert "this process: ~1 MiB in all" in line


def test_a_large_world_that_fits_is_announced_with_what_it_costs(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """From a million persons a command says, before building, what each copy of the world
    takes; below that it says nothing; unknown free memory refuses nothing."""
    monkeypatch.setattr(cli_options, "available_mib", lambda: None)
    cli_options.check_world_fits(999_999, 9, "these")
    assert capsys.readouterr().err == ""
    cli_options.check_world_fits(2_000_000, 9, "the bench and its 8 worker(s)")
    assert capsys.readouterr().err.strip() == (
        "note: a world of 2,000,000 persons takes ~880 MiB and ~28 s to build in each of the "
        "bench and its 8 worker(s)")


def test_a_platform_started_with_the_hospitals_is_given_the_time_its_workers_build_for() -> None:
    """The hospitals' sign-in waits for workers that answer nothing until their world is
    built: twice the estimate, in rounds of as many workers as there are cores."""
    assert worlds_build_s(10_000_000, 1, 2) == 280.0
    assert worlds_build_s(10_000_000, 2, 2) == 280.0
    assert worlds_build_s(10_000_000, 3, 2) == 560.0
    assert worlds_build_s(1_000_000, 4, 1) == 4 * 28.0


def test_expected_answers_that_are_none_are_told_as_expected_answers(logs: Path):
    """verify's --expected given the visit log: "line 1 is not a result record"."""
    result = huimin("verify", str(logs / "a.jsonl"), str(logs / "a.expected.jsonl"),
                    "--expected", str(logs / "a.jsonl"))
    refused(result, "line 1 is not an expected-answers record")


@pytest.mark.parametrize(("args", "said"), [
    (["generate", "-o", "{tmp}/v.jsonl", "--start", "9999-12-31"],
     "the visits' days from 9999-12-31 are not all in"),
    (["generate", "-o", "{tmp}/v.jsonl", "--start", "0001-01-01"], "years 1990–2099"),
    (["generate", "-o", "{tmp}/loop", "--visits", "2"], "Symlink loop"),
    (["run", "--answer-timeout", "inf", "--out", "{tmp}/r"], "--answer-timeout"),
    (["replay", "{tmp}/v.jsonl", "--rate", "5", "--answer-timeout", "inf"],
     "--answer-timeout"),
], ids=["a start near 9999", "a start in year 1", "an output in a symlink loop",
        "an endless answer timeout", "an endless answer timeout (replay)"])
def test_values_past_the_calendar_or_the_clock_are_refused_before_anything_starts(
        tmp_path: Path, args: list[str], said: str):
    """Each ended in a traceback (exit 1), the answer timeout after the platform had started,
    or in a message about a date format for a valid date (a review)."""
    (tmp_path / "loop").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop")
    (tmp_path / "v.jsonl").write_text("")
    refused(huimin(*(a.replace("{tmp}", str(tmp_path)) for a in args)), said)


def test_a_broker_on_a_port_in_use_is_refused_saying_so():
    """It said `the embedded broker exited at start (code 0); see None` (a review)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused(huimin("broker", "--port", str(port)), "--port", "cannot listen on")


@pytest.mark.parametrize("at", ["0001-01-01 00:00:00", "9999-12-31 23:59:59",
                                "2027-02-30 10:00:00"])
def test_publish_refuses_a_time_no_msgid_can_carry_before_sending(tmp_path: Path, at: str):
    """Year 1 or 9999 was sent, dead-lettered unanswered (E1002), and the publish waited out
    its 30 s for an answer (a review)."""
    (doc := tmp_path / "p.json").write_text('{"resourceType": "Patient"}')
    refused(huimin("publish", str(doc), "--certno", "110101199003071233", "--at", at,
                   "--bootstrap", "127.0.0.1:9"), "--at")


@pytest.mark.parametrize("args", [
    ["dead-letters", "--code", "11010519491231002X"],
    ["run", "--start", "11010519491231002X"],
    ["run", "--faults", "11010519491231002X"],
    ["generate", "--visits", "3", "-o", "/nowhere/v.jsonl", "--faults",
     "lose-answer=11010519491231002X"],
    ["11010519491231002X"],
    ["replay", "/nowhere/11010519491231002X.jsonl", "--rate", "1"],
], ids=["code", "start", "fault", "fault-value", "command", "path"])
def test_usage_errors_mask_an_id_number_typed_in_them(args: list[str]):
    """Click's usage errors echoed what was typed, an ID number whole (a privacy review);
    DOMAIN.md §7 has it masked, as huimin's own refusals are."""
    result = huimin(*args)
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert "11010519491231002X" not in result.output and "19491231" not in said
    assert "110105********002X" in said
