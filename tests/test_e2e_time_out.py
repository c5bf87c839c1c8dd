"""A test's time-out stops `huimin run` and everything it started. Most of this test waits
for the time-out, so it runs in the waiting end-to-end group (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import processes_mentioning, run_huimin

pytestmark = pytest.mark.e2e

SCENARIO = ["--persons", "1000", "--visits", "400", "--seed", "11", "--rate", "2", "--no-ehr"]


def test_a_run_a_test_times_out_stops_its_broker_and_workers(tmp_path: Path):
    """A test's time-out stops `huimin run` with SIGTERM first (tests/conftest.py,
    `run_huimin`), so it stops the broker and workers it started. `subprocess.run` would
    SIGKILL it and leave them running, as one failed CI run did. What the run started
    inherits its environment, so a mark there finds them, and only them: other tests may
    start brokers meanwhile (`make test` runs two at once)."""
    token = uuid.uuid4().hex
    out = tmp_path / "cut-short"
    with pytest.raises(subprocess.TimeoutExpired):
        run_huimin(["run", *SCENARIO, "--out", str(out)], timeout=30,
                   env={**os.environ, "HUIMIN_TEST_RUN": token})
    assert (out / "broker.log").exists()  # it got as far as starting a broker
    assert processes_mentioning(f"HUIMIN_TEST_RUN={token}", where="environ") == []
    assert processes_mentioning(str(out)) == []
