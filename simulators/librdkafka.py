"""What the hospitals' two librdkafka clients share (confluent-kafka): their settings, taken
in kafka-python's names and given in librdkafka's, and their log, its repeats held back.

The hospitals share the machine with the platform they load, so what their Kafka clients
spend is taken from it. kafka-python 3 hands every `poll()` and every new batch to a Python
network thread; librdkafka does its network work in C threads, without the GIL. Sending and
tailing 520 messages a second of 1 KB in one process, as the hospitals do at 100 visits/s,
took ~560 µs of CPU a message with kafka-python for both clients, ~460 with a librdkafka
producer, and ~60 with both on librdkafka (docs/performance.md, finding 6). The answers are
read by `simulators.rdkafka_tail`, the requests sent by `simulators.rdkafka_requests`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from streams.log_repeats import RepeatsHeldBack

#: kafka-python's names of the settings the hospitals pass on (a secured cluster's, the
#: client's name, the fetch wait), as librdkafka names them.
LIBRDKAFKA_NAMES = {"security_protocol": "security.protocol",
                    "sasl_mechanism": "sasl.mechanism",
                    "sasl_plain_username": "sasl.username",
                    "sasl_plain_password": "sasl.password",
                    "ssl_cafile": "ssl.ca.location",
                    "client_id": "client.id",
                    "fetch_max_wait_ms": "fetch.wait.max.ms"}


def librdkafka_settings(kafka_python: dict[str, Any]) -> dict[str, Any]:
    """`kafka_python`'s settings in librdkafka's names. One it has no name for is refused,
    rather than dropped: a dropped TLS setting would talk in the clear."""
    if unknown := sorted(set(kafka_python) - set(LIBRDKAFKA_NAMES)):
        raise ValueError(f"no librdkafka setting for {', '.join(unknown)}")
    return {LIBRDKAFKA_NAMES[k]: v for k, v in kafka_python.items() if v is not None}


def client_config(bootstrap: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A client's configuration from kafka-python's `settings`: as kafka-python talks
    (requests sent at once, not held for Nagle's algorithm), logging warnings and worse, and
    trusting the system's certificates on TLS without a CA file, as kafka-python does."""
    config = {"bootstrap.servers": bootstrap, "log_level": 4, "socket.nagle.disable": True,
              **librdkafka_settings(settings)}
    if config.get("security.protocol", "").endswith("SSL"):
        config.setdefault("ssl.ca.location", "probe")
    return config


def log_line_kind(record: logging.LogRecord) -> str:
    """What makes two log lines repeats of each other: librdkafka's share one template
    (facility, client, text), so their text tells them apart, its numbers (ports, times)
    left out; a refused connection is then one kind, and a failed TLS handshake another."""
    args = record.args if isinstance(record.args, tuple) else ()
    return f"{record.msg} {re.sub(r'[0-9]+', '#', ' '.join(map(str, args)))}"


#: librdkafka's warnings that say only that a freshly started Apache Kafka is not ready yet,
#: and that it retries: an idempotent producer's first ask for its producer id meets the
#: transaction coordinator still loading (`GETPID [...] Failed to acquire idempotence PID from
#: broker …: Coordinator load in progress: retrying`), on every fresh cluster. Not shown:
#: were it never ready, the sends would time out, and that is reported.
RETRIES_WHILE_STARTING = ("Coordinator load in progress: retrying",)


def not_a_retry_while_starting(record: logging.LogRecord) -> bool:
    """A log filter: False for the lines of `RETRIES_WHILE_STARTING`."""
    args = record.args if isinstance(record.args, tuple) else ()
    text = " ".join(map(str, args))
    return not any(retry in text for retry in RETRIES_WHILE_STARTING)


def client_log(name: str) -> logging.Logger:
    """The logger a client's librdkafka lines go to. librdkafka logs each failed
    connection, ~20 lines a second while the cluster is down: one line of a kind is shown,
    then a count. Its retries while a fresh cluster starts are not shown."""
    log = logging.getLogger(name)
    if not any(isinstance(f, RepeatsHeldBack) for f in log.filters):
        log.addFilter(not_a_retry_while_starting)
        log.addFilter(RepeatsHeldBack(kind=log_line_kind))
    return log
