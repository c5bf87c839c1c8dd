"""The hospitals' requests producer on librdkafka (confluent-kafka; simulators/librdkafka.py
says why), with what the fleet needs of a producer: a send that never raises for one
request, a flush that says what is left, and a close that gives up what is left after a
time-out. Each request the producer gives up on reaches `on_undelivered` once, with
librdkafka's name for its error and that error's text, so that an unanswered request is not
taken for one the platform lost.

librdkafka reports on the thread that asks it to (`send`, `serve_reports`, `flush`,
`close`): the hospitals' loop, which asks on every pass.

Placed as every client here places a keyed message (streams/partitioner.py): murmur2 of the
key, modulo the partitions, which is librdkafka's `murmur2_random` for a message with a key.
The other settings are kafka-python's defaults, which the hospitals used before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import confluent_kafka

from simulators.librdkafka import client_config, client_log
from streams.config import LINGER_MS

log = client_log("huimin.hospitals.requests")

#: How long a request may wait to be delivered, retries included (kafka-python's
#: `delivery_timeout_ms`; librdkafka's own is 5 minutes).
DELIVERY_TIMEOUT_MS = 120_000
#: The largest request sent (kafka-python's `max_request_size`; librdkafka's own is 1,000,000).
MAX_REQUEST_BYTES = 1_048_576
#: What the producer may hold unsent while the cluster does not take it (kafka-python held
#: 32 MiB): ~100 s of requests at 100 visits/s.
QUEUE_MAX_MESSAGES, QUEUE_MAX_KBYTES = 100_000, 64 * 1024
#: How long a send waits for room once that is full, as kafka-python's `max_block_ms`,
#: before the request is given up on (`QUEUE_FULL`).
QUEUE_FULL_WAIT_S = 60.0
QUEUE_FULL = "_QUEUE_FULL"
#: How long a close waits for the reports of the requests it gave up on (those in flight are
#: reported once their connection lets go of them: at once, measured).
PURGED_REPORTS_S = 1.0

#: A request's error -> what to say of it: `on_undelivered(error name, error text)`.
OnUndelivered = Callable[[str, str], None]


class RequestsProducer:
    """Requests written by librdkafka, failures handed to `on_undelivered`."""

    def __init__(self, bootstrap: str, settings: dict[str, Any], on_undelivered: OnUndelivered,
                 idempotent: bool = False, linger_ms: int = LINGER_MS,
                 delivery_timeout_ms: int = DELIVERY_TIMEOUT_MS,
                 librdkafka: dict[str, Any] | None = None) -> None:
        """`settings`: kafka-python's (`simulators.librdkafka.client_config`);
        `idempotent` where the broker offers it (Apache Kafka; not Tansu): a retried send is
        never written twice. `librdkafka`: its own settings on top (the tests' mock cluster)."""
        self.on_undelivered = on_undelivered
        config = {**client_config(bootstrap, settings),
                  "acks": "all" if idempotent else 1, "enable.idempotence": idempotent,
                  "linger.ms": linger_ms, "partitioner": "murmur2_random",
                  "max.in.flight.requests.per.connection": 5,
                  "message.timeout.ms": delivery_timeout_ms,
                  "message.max.bytes": MAX_REQUEST_BYTES,
                  "queue.buffering.max.messages": QUEUE_MAX_MESSAGES,
                  "queue.buffering.max.kbytes": QUEUE_MAX_KBYTES,
                  # a request delivered is not reported back: only failures cost a call
                  "delivery.report.only.error": True, "on_delivery": self._delivered,
                  **(librdkafka or {})}
        self._producer = confluent_kafka.Producer(config, logger=log)
        self._closed = False

    def _delivered(self, error: confluent_kafka.KafkaError | None, _message: Any) -> None:
        if error is not None:
            self.on_undelivered(error.name(), error.str())

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None,
             headers: Sequence[tuple[str, bytes]] | None = None,
             partition: int | None = None) -> None:
        """Queue one request (in `partition`, or its key's). One that cannot be queued (too
        large, or no room within `QUEUE_FULL_WAIT_S`) is given up on at once."""
        give_up_at = None
        while True:
            try:
                self._producer.produce(topic, value, key, -1 if partition is None else partition,
                                       headers=list(headers) if headers else None)
                break
            except BufferError:  # full: wait for room, serving what the producer reports
                give_up_at = give_up_at or time.monotonic() + QUEUE_FULL_WAIT_S
                if time.monotonic() > give_up_at:
                    self.on_undelivered(QUEUE_FULL, "the producer's queue stayed full")
                    return
                self._producer.poll(0.1)
            except confluent_kafka.KafkaException as exc:  # refused before any delivery
                error = exc.args[0]
                if error.code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE:
                    log.warning("a request of %d bytes is over the %d the hospitals' producer "
                                "may send: not sent (a fee upload of that many items?)",
                                len(value or b""), MAX_REQUEST_BYTES)
                self.on_undelivered(error.name(), error.str())
                return
        self.serve_reports()

    def serve_reports(self) -> None:
        """Hand on the failures and log lines librdkafka has for us, without waiting."""
        self._producer.poll(0)

    def flush(self, timeout: float) -> int:
        """Wait at most `timeout` seconds for what was sent to be delivered (or given up
        on); what is still in the producer's queue (its requests, and any of librdkafka's
        own events not yet served): 0 once all is delivered."""
        return self._producer.flush(timeout)

    def close(self, timeout: float) -> int:
        """Deliver what is left within `timeout` seconds, give up the rest (each reaches
        `on_undelivered`), and close; the number given up. A second close does nothing."""
        if self._closed:
            return 0
        try:
            left = self._producer.flush(timeout)
        finally:  # a Ctrl-C in the flush too: what is left is given up and counted
            self._producer.purge()
            # the reports of those given up; librdkafka's close would wait for any left
            self._producer.flush(PURGED_REPORTS_S)
            self._producer.close()
            self._closed = True
        return left
