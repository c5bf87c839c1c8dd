"""The hospitals' requests producer on librdkafka (confluent-kafka; simulators/librdkafka.py
says why), with what the fleet needs of a producer: a send that never raises for one
request, a flush that says what is left, and a close that gives up what is left after a
time-out. Each request the producer gives up on reaches `on_undelivered` once, with
librdkafka's name for its error and that error's text, so that an unanswered request is not
taken for one the platform lost.

Placed as every client here places a keyed message (streams/partitioner.py): murmur2 of the
key, modulo the partitions, which is librdkafka's `murmur2_random` for a message with a key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import confluent_kafka

from simulators.librdkafka import client_config, client_log
from streams.config import LINGER_MS

log = client_log("huimin.hospitals.requests")

#: How long a request may wait to be delivered, retries included: kafka-python's
#: `delivery_timeout_ms` (librdkafka's own is 5 minutes).
DELIVERY_TIMEOUT_MS = 120_000
#: What the producer may hold unsent: a cluster gone for two minutes at 100 visits/s is
#: ~60,000 requests of ~1 KB.
QUEUE_MAX_MESSAGES, QUEUE_MAX_KBYTES = 500_000, 256 * 1024
#: How long a send waits for room once that is full, as kafka-python's `max_block_ms`,
#: before the request is given up on (`QUEUE_FULL`).
QUEUE_FULL_WAIT_S = 60.0
QUEUE_FULL = "_QUEUE_FULL"

#: A request's error -> what to say of its `on_undelivered(error, text)`.
OnUndelivered = Callable[[str, str], None]


class RequestsProducer:
    """Requests written by librdkafka, failures handed to `on_undelivered`."""

    def __init__(self, bootstrap: str, settings: dict[str, Any], on_undelivered: OnUndelivered,
                 idempotent: bool = False, linger_ms: int = LINGER_MS,
                 delivery_timeout_ms: int = DELIVERY_TIMEOUT_MS) -> None:
        """`settings`: kafka-python's (`simulators.librdkafka.client_config`);
        `idempotent` where the broker offers it (Apache Kafka; not Tansu): a retried send is
        never written twice."""
        self.on_undelivered = on_undelivered
        config = {**client_config(bootstrap, settings),
                  "acks": "all" if idempotent else 1, "enable.idempotence": idempotent,
                  "linger.ms": linger_ms, "partitioner": "murmur2_random",
                  # as kafka-python: at most 5 requests unanswered on a connection
                  "max.in.flight.requests.per.connection": 5,
                  "message.timeout.ms": delivery_timeout_ms,
                  "queue.buffering.max.messages": QUEUE_MAX_MESSAGES,
                  "queue.buffering.max.kbytes": QUEUE_MAX_KBYTES,
                  # a request delivered is not reported back: only failures cost a call
                  "delivery.report.only.error": True, "on_delivery": self._delivered}
        self.max_bytes = 1_000_000  # librdkafka's message.max.bytes, as it is by default
        self._producer = confluent_kafka.Producer(config, logger=log)

    def _delivered(self, error: confluent_kafka.KafkaError | None, _message: Any) -> None:
        if error is not None:
            self.on_undelivered(error.name(), error.str())

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None,
             headers: Sequence[tuple[str, bytes]] | None = None,
             partition: int | None = None) -> None:
        """Queue one request (in `partition`, or its key's). One that cannot be queued (too
        large, or no room within `QUEUE_FULL_WAIT_S`) is given up on at once."""
        waited_until = None
        while True:
            try:
                self._producer.produce(topic, value, key, -1 if partition is None else partition,
                                       headers=headers)
                break
            except BufferError:  # full: wait for room, serving what the producer reports
                waited_until = waited_until or time.monotonic() + QUEUE_FULL_WAIT_S
                if time.monotonic() > waited_until:
                    self.on_undelivered(QUEUE_FULL, "the producer's queue stayed full")
                    return
                self._producer.poll(0.1)
            except confluent_kafka.KafkaException as exc:  # refused before any delivery
                error = exc.args[0]
                if error.code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE:
                    log.warning("a request of %d bytes is over the %d the hospitals' producer "
                                "may send: not sent (a fee upload of that many items?)",
                                len(value or b""), self.max_bytes)
                self.on_undelivered(error.name(), error.str())
                return
        self._producer.poll(0)  # reports of earlier failures, if any

    def flush(self, timeout: float) -> int:
        """Wait at most `timeout` seconds for what was sent to be delivered (or given up
        on); the number of requests still undelivered."""
        return self._producer.flush(timeout)

    def close(self, timeout: float) -> int:
        """Deliver what is left within `timeout` seconds, give up the rest (each reaches
        `on_undelivered`), and close; the number given up."""
        left = self._producer.flush(timeout)
        if left:
            self._producer.purge()
            self._producer.poll(0)  # the purged requests' reports
        self._producer.close()
        return left

