"""A Ctrl-C (or two) during a replay's visits stops them at the loop's next pass; anywhere
else, or a third time, it interrupts at once (simulators/interrupt.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from simulators.interrupt import GentleInterrupt


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(autouse=True)
def sigint_as_in_a_terminal() -> Iterator[None]:
    """Python's own SIGINT handler, whatever started the tests: a CI job or a shell's
    background job starts them with SIGINT ignored, which GentleInterrupt leaves alone."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_a_double_ctrl_c_while_armed_is_one_request_and_a_third_interrupts() -> None:
    with GentleInterrupt() as interrupt, interrupt.armed():
        ctrl_c()
        assert interrupt.was_requested()
        ctrl_c()  # people press it twice: still the same request, the answers still kept
        with pytest.raises(KeyboardInterrupt):
            ctrl_c()


def test_once_the_answers_are_written_a_ctrl_c_interrupts_at_once() -> None:
    with GentleInterrupt() as interrupt:
        with interrupt.armed():
            ctrl_c()
        with pytest.raises(KeyboardInterrupt):
            ctrl_c()


def test_a_ctrl_c_outside_the_visits_interrupts_at_once() -> None:
    with GentleInterrupt() as interrupt:
        with pytest.raises(KeyboardInterrupt):
            ctrl_c()
        assert not interrupt.was_requested()


def test_the_previous_handler_is_back_afterwards() -> None:
    before = signal.getsignal(signal.SIGINT)
    with GentleInterrupt():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_a_ctrl_c_ignored_by_whoever_started_us_stays_ignored() -> None:
    """A script's background job (`huimin replay … &`) ignores SIGINT: not ours to turn on."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with GentleInterrupt() as interrupt, interrupt.armed():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_sigterm_is_taken_as_a_ctrl_c_and_says_so_in_the_exit_code() -> None:
    """A CI job's time-out: the answers received are kept (exit 143, not 130)."""
    before = signal.getsignal(signal.SIGTERM)
    with GentleInterrupt() as interrupt:
        with interrupt.armed():
            os.kill(os.getpid(), signal.SIGTERM)
            assert interrupt.was_requested() and interrupt.terminated
        assert interrupt.exit_code == 143
        with pytest.raises(KeyboardInterrupt):  # outside the visits: at once
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before
    with GentleInterrupt() as interrupt, interrupt.armed():
        ctrl_c()
        assert interrupt.exit_code == 130
