"""A line the Kafka client repeats (while the cluster is down, every failed connection) shows
once in a while with a count, not thousands of times a second."""

from __future__ import annotations

import logging

import pytest
from mode.utils.logging import ExtensionFormatter

from streams import log_repeats
from streams.log_repeats import RepeatsHeldBack, hold_back_repeats


def test_a_repeated_line_shows_once_a_window_saying_how_many_were_held_back(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    clock = [100.0]
    monkeypatch.setattr(log_repeats.time, "monotonic", lambda: clock[0])
    logger = logging.getLogger("aiokafka.test_client")
    held = RepeatsHeldBack(window_s=10)
    logger.addFilter(held)
    try:
        with caplog.at_level(logging.ERROR, logger="aiokafka.test_client"):
            for _ in range(1_300):
                logger.error("Unable connect to node with id %s: %s", 1, "refused")
                clock[0] += 0.001
            logger.error("Unable to update metadata from %s", [1])  # another kind: at once
            clock[0] += 10
            logger.error("Unable connect to node with id %s: %s", 2, "refused")
        # as the worker's log formats them (Faust's formatter rewrites a record's args)
        formatter = ExtensionFormatter(fmt="%(message)s")
        lines = [formatter.format(r) for r in caplog.records]
        assert lines == ["Unable connect to node with id 1: refused",
                         "Unable to update metadata from [1]",
                         "Unable connect to node with id 2: refused (1,299 more like it in "
                         "the last 11 s not shown)"]
    finally:
        logger.removeFilter(held)


def test_the_filter_is_on_every_known_logger_of_the_noisy_libraries():
    child = logging.getLogger("aiokafka.test_consumer.fetcher")
    held = hold_back_repeats(("aiokafka",))
    try:
        assert held in child.filters and held in logging.getLogger("aiokafka").filters
        assert held not in logging.getLogger("huimin.streams").filters
    finally:
        for name in ["aiokafka", *logging.root.manager.loggerDict]:
            logging.getLogger(name).removeFilter(held)


def test_a_request_held_for_the_answer_it_follows_is_told_once_a_minute(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """A soak logged it ~10 times a minute a worker, every line alike
    (huimin_redelivery_waits_total counts each)."""
    from streams.settlement_roles import held_log

    clock = [500.0]
    monkeypatch.setattr(log_repeats.time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.INFO, logger=held_log.name):
        for n in range(12):
            held_log.info("treatment_requests: a request waits … (%s)", f"hosp.requests[0]@{n}")
            clock[0] += 6
    said = [r.getMessage() for r in caplog.records if r.name == held_log.name]
    assert said == ["treatment_requests: a request waits … (hosp.requests[0]@0)",
                    "treatment_requests: a request waits … (hosp.requests[0]@10) (9 more like "
                    "it in the last 60 s not shown)"]
