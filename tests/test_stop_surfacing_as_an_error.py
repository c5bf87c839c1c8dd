"""A Ctrl-C or SIGTERM that surfaces as a library's own error ends every command as the stop
would have, not with a traceback (simulators/interrupt.py): Python raises the handler's
exception wherever the command is, and inside confluent-kafka's `produce` or a lock's wait it
has come out as `TypeError: expected header key to be unicode string` or `RuntimeError:
release unlocked lock`. Each test sends itself the real signal and turns the exception it
raises into such an error, as the library did; what ran is stood in for, so the handling
alone is tested."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from huimin import cli, cli_cluster
from huimin.cli_app import _exit_on_sigterm, _Typer
from huimin.run import UNSENT_WAIT_S, unsent_wait_s
from simulators.interrupt import forget_stops, is_the_stop, raised_stops, stop_handled
from simulators.visit_run import HospitalRunResult
from streams.broker import BOOTSTRAP_ENV


@pytest.fixture(autouse=True)
def signals_as_in_a_terminal() -> Iterator[None]:
    """Python's own SIGINT handler, whatever started the tests (a CI job may start them with
    SIGINT ignored, which the commands leave alone), and SIGTERM's put back after."""
    before_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    before_term = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGINT, before_int)
    signal.signal(signal.SIGTERM, before_term)
    forget_stops()


def stopped_inside_a_library(sig: signal.Signals, error: BaseException) -> None:
    """Send ourselves `sig`; what its handler raises comes out as `error`."""
    try:
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the handler raises within this
    except BaseException:
        raise error from None
    raise AssertionError(f"no {sig.name} came")


def invoke(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_huimin_run_stopped_by_ctrl_c_as_a_type_error_says_stopped_and_exits_130(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def run_hit_in_produce(*_: Any, **__: Any) -> None:
        stopped_inside_a_library(signal.SIGINT,
                                 TypeError("expected header key to be unicode string"))

    monkeypatch.setattr(cli, "run_scenario", run_hit_in_produce)
    result = invoke(cli.app, "run", "--persons", "200", "--visits", "10",
                    "--out", str(tmp_path / "run"))
    assert result.exit_code == 130, result.output
    assert "Stopped by Ctrl-C: the broker and the workers this run started" in \
        " ".join(result.output.split())
    assert not isinstance(result.exception, TypeError), result.exception


def test_huimin_run_stopped_by_sigterm_as_a_lock_error_exits_143_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def run_hit_in_a_wait(*_: Any, **__: Any) -> None:
        stopped_inside_a_library(signal.SIGTERM, RuntimeError("release unlocked lock"))

    monkeypatch.setattr(cli, "run_scenario", run_hit_in_a_wait)
    result = invoke(cli.app, "run", "--persons", "200", "--visits", "10",
                    "--out", str(tmp_path / "run"))
    assert result.exit_code == 143, result.output
    assert "terminated (SIGTERM): stopping what this command started" in result.output
    assert "Stopped by SIGTERM: the broker and the workers this run started" in \
        " ".join(result.output.split())
    assert "Stopped by Ctrl-C" not in result.output
    assert not isinstance(result.exception, RuntimeError), result.exception


def test_a_replay_stopped_after_its_visits_as_a_type_error_keeps_its_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Outside the visits' loop (the clearing, the reconciliation, the platform's stop) a
    Ctrl-C interrupts at once; surfacing as an error, it still keeps the answers written (and
    an earlier replay's summary beside them goes)."""
    log = tmp_path / "v.jsonl"
    assert invoke(cli.app, "generate", "--persons", "200", "--visits", "5", "-o",
                  str(log)).exit_code == 0

    def visits_over_then_ctrl_c(*_: Any, on_visits_over: Any, **__: Any) -> None:
        on_visits_over(HospitalRunResult([], {}, {}, [], [], 0, 1.0))
        stopped_inside_a_library(signal.SIGINT,
                                 TypeError("expected header key to be unicode string"))

    monkeypatch.setattr(cli, "execute", visits_over_then_ctrl_c)
    monkeypatch.setattr(cli, "check_reachable", lambda *_: None)
    monkeypatch.setattr(cli, "_check_platform_there", lambda *_: 0)
    earlier = tmp_path / "r.summary.json"  # an earlier replay's, of the answers replaced
    earlier.write_bytes(b'{"ok": true}')
    result = invoke(cli.app, "replay", str(log), "--rate", "10", "--bootstrap",
                    "127.0.0.1:1", "--results", str(tmp_path / "r.jsonl"))
    assert result.exit_code == 130, (result.output, result.exception)
    assert "Stopped by Ctrl-C" in result.output
    assert (tmp_path / "r.jsonl").exists()
    assert not earlier.exists()  # not to be read as this one's: it wrote none


@pytest.mark.parametrize(("sig", "code", "last_line"), [
    (signal.SIGINT, 0, "no dead letters"),  # following ends on Ctrl-C: summed up
    (signal.SIGTERM, 143, "terminated (SIGTERM): stopping what this command started"),
], ids=["Ctrl-C", "SIGTERM"])
def test_dead_letters_following_ends_on_a_stop_that_surfaced_as_a_lock_error(
        monkeypatch: pytest.MonkeyPatch, sig: signal.Signals, code: int, last_line: str):
    def letters_then_the_stop(*_: Any, **__: Any) -> Iterator[Any]:
        yield from ()
        stopped_inside_a_library(sig, RuntimeError("release unlocked lock"))

    monkeypatch.setattr(cli_cluster, "read_dead_letters", letters_then_the_stop)
    with socket.create_server(("127.0.0.1", 0)) as listening:  # reachable, as a cluster is
        result = invoke(cli.app, "dead-letters", "--follow", "--bootstrap",
                        f"127.0.0.1:{listening.getsockname()[1]}")
    assert result.exit_code == code, (result.output, result.exception)
    assert result.output.splitlines()[-1] == last_line


def test_generate_stopped_by_a_ctrl_c_that_surfaced_as_an_error_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    written = []

    def stopped_on_the_second(f: object, visit: object) -> None:
        written.append(visit)
        if len(written) == 2:  # Rich's progress display waits on a lock meanwhile
            stopped_inside_a_library(signal.SIGINT, RuntimeError("release unlocked lock"))

    monkeypatch.setattr(cli, "write_visit", stopped_on_the_second)
    result = invoke(cli.app, "generate", "--persons", "200", "--visits", "30", "-o",
                    str(tmp_path / "v.jsonl"))
    assert result.exit_code == 130, (result.output, result.exception)
    assert "Stopped by Ctrl-C before the visit log was complete: nothing was put in place" \
        in " ".join(result.output.split())


@pytest.fixture
def bare_app() -> typer.Typer:
    """Commands with no stop handling of their own: the app's error policy alone."""
    app = _Typer()

    @app.command()
    def hit(sig: str = "", fault: bool = False) -> None:
        """Stopped by `sig` inside a library, or a real fault of its own."""
        if fault:
            raise RuntimeError("a real fault")
        stopped_inside_a_library(signal.Signals[sig],
                                 TypeError("expected header key to be unicode string"))

    @app.command()
    def ends() -> None:
        """Its own ending, after a stop was noted."""
        raised_stops.append(signal.SIGINT)
        raise typer.Exit(3)

    @app.command()
    def handles(fault: bool = False) -> None:
        """A Ctrl-C dealt with (as the bench keeps its rates), then perhaps a real fault."""
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            print("noted", raised_stops)
            stop_handled()
        if fault:
            raise RuntimeError("a real fault")

    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # as the huimin app's callback does
    return app


def test_any_command_takes_an_error_after_sigterm_for_the_stop_exit_143(bare_app: typer.Typer):
    result = invoke(bare_app, "hit", "--sig", "SIGTERM")
    assert result.exit_code == 143, (result.output, result.exception)
    assert "terminated (SIGTERM)" in result.output


def test_any_command_takes_an_error_after_ctrl_c_for_the_ctrl_c(bare_app: typer.Typer):
    """Ended as a Ctrl-C it has no handling of is ended by Typer: exit 130."""
    result = invoke(bare_app, "hit", "--sig", "SIGINT")
    assert result.exit_code == 130, (result.output, result.exception)
    assert not isinstance(result.exception, TypeError), result.exception


def test_an_error_with_no_stop_is_raised_as_it_is(bare_app: typer.Typer):
    result = invoke(bare_app, "hit", "--fault")
    assert isinstance(result.exception, RuntimeError), (result.output, result.exception)


def test_a_command_s_own_exit_after_a_stop_is_kept(bare_app: typer.Typer):
    assert invoke(bare_app, "ends").exit_code == 3


def test_each_command_starts_with_no_stop_noted(bare_app: typer.Typer):
    raised_stops.append(signal.SIGINT)  # a stop of an earlier command in this process
    result = invoke(bare_app, "hit", "--fault")
    assert isinstance(result.exception, RuntimeError), result.exception


def test_the_sigint_handler_notes_the_stop_and_is_python_s_own_again_after(
        bare_app: typer.Typer):
    result = invoke(bare_app, "handles")
    assert result.output == f"noted [{signal.SIGINT}]\n"
    assert raised_stops == []  # the command's own record
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_error_after_the_stop_was_dealt_with_is_reported_as_itself(bare_app: typer.Typer):
    result = invoke(bare_app, "handles", "--fault")
    assert isinstance(result.exception, RuntimeError), (result.output, result.exception)


def test_only_errors_count_as_the_stop_never_an_exit():
    assert is_the_stop(KeyboardInterrupt(), lambda: False)
    assert is_the_stop(RuntimeError("release unlocked lock"), lambda: True)
    assert not is_the_stop(RuntimeError("release unlocked lock"), lambda: False)
    assert not is_the_stop(SystemExit(2), lambda: True)


@pytest.mark.parametrize(("raised", "noted", "cluster_lost", "wait_s"), [
    (None, [], False, UNSENT_WAIT_S),
    (RuntimeError("a fault of its own"), [], False, UNSENT_WAIT_S),
    (KeyboardInterrupt(), [], False, 0.0),
    (TypeError("expected header key to be unicode string"), [signal.SIGINT], False, 0.0),
    (RuntimeError("release unlocked lock"), [signal.SIGTERM], False, 0.0),
    (SystemExit(143), [signal.SIGTERM], False, 0.0),
    (None, [], True, 0.0),
], ids=["ended", "a-fault", "ctrl-c", "ctrl-c-as-type-error", "sigterm-as-lock-error",
        "sigterm-exit", "cluster-lost"])
def test_a_run_gives_up_its_unsent_requests_at_once_only_on_a_stop_or_a_cluster_lost(
        raised: BaseException | None, noted: list[int], cluster_lost: bool, wait_s: float):
    raised_stops.extend(noted)
    assert unsent_wait_s(raised, cluster_lost) == wait_s


def test_a_fault_after_the_stop_was_dealt_with_lets_the_unsent_requests_go_out():
    raised_stops.append(signal.SIGINT)
    stop_handled()
    assert unsent_wait_s(RuntimeError("the report's disk is full"), False) == UNSENT_WAIT_S


@pytest.mark.parametrize("case", ["before-any-log", "platform-started", "earlier-logs",
                                  "third-press"])
def test_a_replay_stopped_before_any_visit_ended_says_so_and_leaves_no_empty_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str):
    """A Ctrl-C while the platform starts ended the replay in silence, and left its logs'
    folder behind empty (a review found it); the platform's logs, once any, are kept, and
    named only if this replay wrote them. A third Ctrl-C, in the visits, is told as such."""
    log = tmp_path / "v.jsonl"
    assert invoke(cli.app, "generate", "--persons", "200", "--visits", "5", "-o",
                  str(log)).exit_code == 0
    platform_logs = tmp_path / "r.platform"
    if case == "earlier-logs":  # an earlier replay's
        platform_logs.mkdir()
        (platform_logs / "broker.log").write_text("an earlier replay's\n")
        os.utime(platform_logs / "broker.log", (time.time() - 600, time.time() - 600))

    def ctrl_c_while_starting(*_: Any, interrupt: Any, **__: Any) -> None:
        if case in ("platform-started", "third-press"):
            (platform_logs / "broker.log").write_text("starting\n")
        if case == "third-press":
            interrupt.presses = 2  # two taken as requests while the visits ran
        stopped_inside_a_library(signal.SIGINT, KeyboardInterrupt())

    monkeypatch.setattr(cli, "execute", ctrl_c_while_starting)
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    result = invoke(cli.app, "replay", str(log), "--rate", "10", "--results",
                    str(tmp_path / "r.jsonl"))
    said = " ".join(result.output.split())
    assert result.exit_code == 130, (result.output, result.exception)
    when = "again, before the answers were written" if case == "third-press" else \
        "before any visit ended"
    assert f"stopped by Ctrl-C {when}: no results written" in said
    assert not (tmp_path / "r.jsonl").exists()
    assert platform_logs.exists() == (case != "before-any-log")
    assert ("the platform's logs are in" in said) == (case in ("platform-started",
                                                               "third-press"))
