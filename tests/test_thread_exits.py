"""How a thread that ends with an exception is logged in a worker (streams/thread_exits.py):
one record, its exception's type and frames, never its text."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from streams.thread_exits import log_thread_exit


def records_of(thread: threading.Thread,
               caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the worker's hook logs as `thread` runs to its end."""
    before = threading.excepthook
    threading.excepthook = log_thread_exit
    try:
        with caplog.at_level(logging.INFO, logger="huimin.streams"):
            thread.start()
            thread.join()
    finally:
        threading.excepthook = before
    return caplog.records


def test_a_thread_that_fails_is_one_error_naming_it_its_exception_type_and_frames_only(
        caplog: pytest.LogCaptureFixture):
    def fail() -> None:
        raise KeyError("13010219800101001X")  # what an exception's text may hold

    (record,) = records_of(threading.Thread(target=fail, name="a-failing-thread"), caplog)
    assert record.levelname == "ERROR"
    first, *frames = record.getMessage().splitlines()
    assert first == "thread a-failing-thread ended with KeyError, in:"
    assert any("in fail" in line for line in frames)
    assert "13010219800101001X" not in record.getMessage()


def test_a_thread_cancelled_is_one_warning_naming_its_service(
        caplog: pytest.LogCaptureFixture):
    class AIOKafkaConsumerThread(threading.Thread):  # mode's threads carry their service
        service = object()

    def cancelled() -> None:
        raise asyncio.CancelledError()

    (record,) = records_of(AIOKafkaConsumerThread(target=cancelled, name="Thread-1"), caplog)
    assert record.levelname == "WARNING"
    assert record.getMessage() == \
        "thread Thread-1 (object) was cancelled while it stopped (waiting on the cluster?)"


def test_a_thread_that_calls_sys_exit_is_not_an_error(caplog: pytest.LogCaptureFixture):
    def leave() -> None:
        raise SystemExit(0)

    assert records_of(threading.Thread(target=leave), caplog) == []


def test_an_exception_without_frames_is_one_error_line(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="huimin.streams"):
        log_thread_exit(threading.ExceptHookArgs([KeyError, KeyError("x"), None, None]))
    assert [r.getMessage() for r in caplog.records] == ["thread ? ended with KeyError"]
