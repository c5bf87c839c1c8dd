"""Our platform failing to come up is an error a person can act on: one line naming what to
read (the workers' logs), not a traceback after the wait."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from huimin.cli_app import error_message
from huimin.local_platform import Platform, PlatformNotServing
from streams.config import WorkerConfig


def test_workers_that_never_settle_are_one_line_naming_their_logs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    platform = Platform.__new__(Platform)  # no cluster: only the wait is under test
    platform.cfg = WorkerConfig(bootstrap="127.0.0.1:9092", partitions=2)
    platform.workers = [SimpleNamespace(log_path=tmp_path / "worker-0.log")]  # type: ignore[list-item]
    monkeypatch.setattr(Platform, "assignments", lambda self: [None])  # its web server silent
    with pytest.raises(PlatformNotServing) as caught:
        platform.wait_until_serving(timeout_s=0.0)
    message = error_message(caught.value)
    assert message is not None and "\n" not in message
    assert message.startswith("the 1 workers did not settle into one consumer group within 0 s")
    assert str(tmp_path / "worker-0.log") in message
