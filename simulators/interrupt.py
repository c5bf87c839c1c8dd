"""A Ctrl-C that ends a replay cleanly: the answers received so far are worth keeping.

An integration tester who stops a long replay still wants what came back (which visit the
platform stalled on, the answers before it). Raising KeyboardInterrupt in the middle of the
hospitals' loop would leave a request half-recorded, so a Ctrl-C while the loop runs, or
while its answers are written, only asks it to stop at its next pass (every ≤ 50 ms;
`HospitalFleet.run`'s `stop_requested`); people press it twice, so a second one is taken as
the same request. A third, or any before the loop or after the answers are written,
interrupts at once, as usual. SIGTERM (a CI job's time-out, `kill`) is taken as a Ctrl-C:
the answers received are written, not thrown away with the replay (`terminated` says so,
for exit 143).

Python raises a handler's exception wherever the main thread is, and raised inside a
library's C call or a lock's wait it can come out as that library's own error: confluent-
kafka's `produce`, called in a loop, let 5 of 832 Ctrl-Cs out as `TypeError: expected header
key to be unicode string` (measured), and a lock's release in a Kafka client's wait as
`RuntimeError: release unlocked lock` (seen in CI). So each stop raised is noted
(`raised_stops`), and until the command has dealt with it (`stop_handled`), any error is
taken for it (`is_the_stop`) instead of crashing the command with a traceback.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any, NoReturn

#: Ctrl-Cs while armed taken as one request to stop; the next one interrupts.
PRESSES_TAKEN = 2

#: The signals (SIGINT, SIGTERM) whose handler raised into this command, in order: signals
#: are the process's, and so is this. A command starts and ends with it empty
#: (`forget_stops`).
raised_stops: list[int] = []
_handled = [0]  # how many of them the command has dealt with (`stop_handled`)


def forget_stops() -> None:
    raised_stops.clear()
    _handled[0] = 0


def stop_handled() -> None:
    """The stops raised so far are dealt with (the rates measured kept, the answers
    written): an error after this is the command's own, not a stop's, and is reported."""
    _handled[0] = len(raised_stops)


def stop_raised() -> bool:
    """Whether a Ctrl-C or SIGTERM has been raised into the command and not dealt with."""
    return len(raised_stops) > _handled[0]


def terminated() -> bool:
    """Whether a SIGTERM was among the stops raised (exit 143, not 130)."""
    return signal.SIGTERM in raised_stops


def is_the_stop(exc: BaseException, stop_signalled: Callable[[], bool] = stop_raised) -> bool:
    """Whether `exc` is a Ctrl-C's or SIGTERM's stop: a KeyboardInterrupt, or any error (not
    an exit) raised once one has come, which it may have surfaced as (above)."""
    return isinstance(exc, KeyboardInterrupt) or (isinstance(exc, Exception) and
                                                  stop_signalled())


def interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    """Python's own SIGINT handler, the stop noted."""
    raised_stops.append(signum)
    raise KeyboardInterrupt


class GentleInterrupt:
    """SIGINT's and SIGTERM's handler for a `with` block (main thread only). The hospitals'
    loop runs inside `armed()` and stops once `requested`."""

    def __init__(self) -> None:
        self.presses = 0
        self.terminated = False  # a SIGTERM came
        self._armed = False
        self._previous: Any = None  # SIGINT's handler before ours, None if ours was not set
        self._previous_term: Any = None

    @property
    def requested(self) -> bool:
        return self.presses > 0

    def was_requested(self) -> bool:
        return self.requested

    def __enter__(self) -> GentleInterrupt:
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job's stays
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
            self._previous_term = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if self._previous_term is not None:
            signal.signal(signal.SIGTERM, self._previous_term)

    @contextmanager
    def armed(self) -> Iterator[None]:
        """While the loop runs and its answers are written, Ctrl-C is a request."""
        self._armed = True
        try:
            yield
        finally:
            self._armed = False

    @property
    def stopper(self) -> str:
        """What stopped it, as a person reads it."""
        return "SIGTERM" if self.terminated else "Ctrl-C"

    @property
    def exit_code(self) -> int:
        """A stopped command's: 143 after a SIGTERM, 130 after Ctrl-C."""
        return 143 if self.terminated else 130

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.terminated = True
        self._on_sigint(signum, frame)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self._armed and self.presses < PRESSES_TAKEN:
            self.presses += 1
            return
        interrupt(signum, frame)
