"""A worker with no partitions stays in its consumer group, as a spare.

aiokafka leaves the group once its fetcher has been idle for `max_poll_interval` (no fetch
under way and none ended since), and will not rejoin while it stays idle. That guards against
a consumer whose loop is stuck with partitions. But Faust fetches only for the partitions
assigned, so a worker given none (a third worker on two partitions, or one restarted while
the others kept everything) never fetches: five minutes later it left the group for good,
still answering /metrics, and took nothing over when the others stopped (on Apache Kafka;
found by a replay tester). While the worker has no partition of its own (none assigned, or
standby copies only) and nothing to fetch, its event loop notes the fetcher as just active;
a worker with partitions keeps aiokafka's guard as it is.
"""

from __future__ import annotations

import time
from typing import Any

from streams.env_numbers import number_from_env

#: How long a worker's event loop may go without fetching before aiokafka takes it out of
#: the group: a stall longer than this (a 10 s one was seen) costs a rebalance, so it is long.
MAX_POLL_INTERVAL_ENV = "HUIMIN_MAX_POLL_INTERVAL_S"


def max_poll_interval_s() -> float:
    """How long a worker's event loop may go without fetching before aiokafka takes it out of
    the group: a stall longer than this (a 10 s one was seen) costs a rebalance, so it is long
    (300 s unless `HUIMIN_MAX_POLL_INTERVAL_S` says otherwise; ValueError if it is not
    seconds from 1 to 86,400: every huimin command checks it as it starts)."""
    return number_from_env(MAX_POLL_INTERVAL_ENV, 300, 1, 86_400, "seconds", float)


def spare_tick_s(max_poll_interval: float) -> float:
    """How often a worker with nothing of its own says it is alive: well within the interval."""
    return min(30.0, max_poll_interval / 4)


def keep_a_spare_in_its_group(app: Any) -> bool:
    """Note the fetcher of a worker with no partitions of its own and nothing to fetch as just
    active; whether it did. (The attributes are aiokafka's and Faust's own: without them,
    nothing is done.)"""
    consumer = app.consumer
    client = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    subscription = getattr(client, "_subscription", None)
    if subscription is None or getattr(subscription, "_fetch_count", 1) != 0 or \
            app.assignor.assigned_actives() or consumer._get_active_partitions():
        return False
    subscription._last_fetch_ended = time.monotonic()  # read by the consumer thread: one store
    return True
