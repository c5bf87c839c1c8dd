"""Whether a run's cluster has gone for good while its visits wait for answers.

A run whose cluster dies would otherwise go on until every visit has waited out its answer
time-out, one after another for a person's visits: 600 visits at 20 a second took 12.5
minutes so. Silence alone is not enough to stop: a platform busy recovering a killed
worker's tables answers nothing for a while on a cluster that is up. So a run is stopped
only when both hold for `stop_after_s`: no answer or dead letter has come while requests
were awaited, and every address of the bootstrap list refuses a connection (no such host,
connection refused, network unreachable). A cluster restarted within that time, or one
that only answers slowly, does not stop the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from streams.broker import unreachable

#: No answer for this long while requests are awaited before the cluster is asked at all:
#: a healthy run hears something every few milliseconds, so it never asks.
QUIET_BEFORE_ASKING_S = 5.0
#: How often a silent run asks whether the cluster takes a connection.
ASK_EVERY_S = 5.0
#: How long a host's name lookup, and then a connection to its address, may take before the
#: cluster counts as up (slow, not gone: the Kafka clients decide). The run's loop waits for
#: it, silent anyway.
CONNECT_TIMEOUT_S = 1.0
#: `--stop-after-unreachable`'s default: a broker restarting comes back well within it.
STOP_AFTER_UNREACHABLE_S = 60.0


def lost_reason(stop_after_s: float, refusal: str) -> str:
    """Why a run stopped on a cluster lost, as its log, report and summary say it."""
    return (f"the cluster refused every connection for {stop_after_s:g} s while no answer "
            f"came ({refusal})")


class ClusterWatch:
    """Told of every answer a run hears (`heard`) and asked on its time-out scans (`lost`);
    says why the cluster is lost once it has refused every connection for `stop_after_s`
    of silence. `stop_after_s` 0 never says so."""

    def __init__(self, bootstrap: str, stop_after_s: float,
                 refusal: Callable[[str], str | None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 quiet_s: float = QUIET_BEFORE_ASKING_S, ask_every_s: float = ASK_EVERY_S
                 ) -> None:
        self.bootstrap, self.stop_after_s, self.clock = bootstrap, stop_after_s, clock
        # asked at least as often as the time set, so that a short one is kept to
        self.quiet_s, self.ask_every_s = quiet_s, min(ask_every_s, stop_after_s or ask_every_s)
        self.refusal = refusal or (lambda b: unreachable(b, CONNECT_TIMEOUT_S))
        self.last_heard = clock()
        self.next_ask = -float("inf")
        self.refused_since: float | None = None  # every ask since refused
        self.asked = 0

    def heard(self) -> None:
        """An answer or a dead letter came: the cluster is there."""
        self.last_heard = self.clock()
        self.refused_since = None

    def lost(self, awaiting: bool) -> str | None:
        """Why the cluster is taken for lost (its last refusal), or None: it answered lately,
        nothing is awaited, it took a connection, or it has not refused for long enough
        (each refusal since nothing was awaited, it answered or it took a connection)."""
        now = self.clock()
        if not self.stop_after_s or not awaiting:
            self.refused_since = None  # nobody waited on it: it may have been back meanwhile
            return None
        if now - self.last_heard < self.quiet_s or now < self.next_ask:
            return None
        self.next_ask = now + self.ask_every_s
        self.asked += 1
        why = self.refusal(self.bootstrap)
        if not why:
            self.refused_since = None
            return None
        if self.refused_since is None:
            self.refused_since = now
        return why if now - self.refused_since >= self.stop_after_s else None
