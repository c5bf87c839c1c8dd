"""Following requests through the broker (streams/trail.py): a run whose worker stopped
taking requests says where each unanswered one stopped (on `hosp.requests`, not committed by
the platform's consumer group), and `huimin trail` follows the same msgids once the worker
has taken and answered them: every hop, the rows, the answer. Never a key or a body."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import orjson
import pytest

from huimin.local_platform import platform
from huimin.run import execute, unanswered_trail
from messages.topics import HOSP_REQUESTS, HOSP_RESPONSES
from simulators.visits import VisitSpec, generate_visits
from simulators.world import WorldSpec, build_world
from streams.broker import broker
from tests.conftest import run_huimin

pytestmark = pytest.mark.e2e

SPEC = WorldSpec(seed=17, persons=60)


def test_a_run_whose_worker_stopped_says_each_unanswered_request_waits_on_hosp_requests(
        tmp_path: Path):
    world = build_world(SPEC)
    visits = list(generate_visits(world, VisitSpec(visits=3, days=5)))
    with broker(tmp_path / "broker.log") as bootstrap, \
            platform(bootstrap, SPEC, 4, tmp_path) as ours:
        pid = ours.workers[0].process.pid  # type: ignore[union-attr]

        def on_stage(stage: str) -> None:
            if stage.endswith(" visits"):  # signed in: the worker stops taking requests
                os.kill(pid, signal.SIGSTOP)
            elif stage.startswith("the hospitals reconcile"):  # the trail is followed
                os.kill(pid, signal.SIGCONT)

        try:
            ex = execute(world, visits, [0.0, 0.1, 0.2], [], tmp_path, bootstrap=bootstrap,
                         partitions=4, answer_timeout_s=2.0, on_stage=on_stage)
        finally:
            os.kill(pid, signal.SIGCONT)
        unanswered = ex.result.timed_out
        assert len(unanswered) == len(visits)  # each visit's first request, then given up
        assert ex.trail is not None and ex.trail.complete, ex.trail
        assert list(ex.trail.sightings) == unanswered
        for msgid, seen in ex.trail.sightings.items():
            assert [(s.topic, s.committed) for s in seen] == [(HOSP_REQUESTS, False)], msgid

        # resumed, the worker takes them and answers (late): the trail now goes all the way
        deadline = time.monotonic() + 60
        while True:
            done = run_huimin(["trail", *unanswered, "--bootstrap", bootstrap, "--json"],
                              timeout=60)
            assert done.returncode == 0, done.stderr
            trails = [orjson.loads(line) for line in done.stdout.splitlines()]
            if all(t["sightings"][0]["committed"] for t in trails) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert [t["msgid"] for t in trails] == unanswered
        for t in trails:
            topics = [s["topic"] for s in t["sightings"]]
            assert topics[0] == HOSP_REQUESTS and t["sightings"][0]["committed"], t
            assert HOSP_RESPONSES in topics, t
            assert any(name.endswith("-changelog") for name in topics), t  # a row remembers it
        text = run_huimin(["trail", unanswered[0], "no-such-msgid", "--bootstrap", bootstrap],
                          timeout=60)
        assert text.returncode == 1, text.stderr  # as grep: one was found nowhere
        first, nowhere = text.stdout.splitlines()
        assert first.startswith(f"{unanswered[0]}: {HOSP_REQUESTS}[") and " committed" in first
        assert nowhere == "no-such-msgid: on no topic (nor of a msgid's shape: H or J and 29 " \
            "digits)"
        for person in world.ref.enrollments:  # where, never what: no certno in the output
            assert person not in done.stdout + text.stdout


def test_a_cluster_without_the_platforms_topics_is_refused_not_read_as_requests_lost(
        tmp_path: Path):
    """A mistyped address that reaches another broker: no msgid is "on no topic" there (read
    as a request the cluster lost), and no dead letter is listed; each says why (exit 2)."""
    with broker(tmp_path / "broker.log") as bootstrap:
        trail = run_huimin(["trail", "H11010000001202612010800000000001", "--bootstrap",
                            bootstrap], timeout=60)
        letters = run_huimin(["dead-letters", "--bootstrap", bootstrap], timeout=60)
        # a run's own trail of its unanswered requests says why it was not followed, and the
        # run's report is not lost for it
        unfollowed = unanswered_trail(bootstrap, ["H11010000001202612010800000000001"])
    assert trail.returncode == 2, trail.stdout + trail.stderr
    assert f"has no topic {HOSP_REQUESTS}" in " ".join(trail.stderr.split()), trail.stderr
    assert "on no topic" not in trail.stdout
    assert letters.returncode == 2 and "has no topic dead.letters" in letters.stderr
    assert unfollowed.problem.startswith("TopicMissing: ") and not unfollowed.complete
