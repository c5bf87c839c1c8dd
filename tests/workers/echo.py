"""A Faust echo worker on huimin's Faust settings (`streams.app.faust_app`, mends included),
to show Faust's ways of losing a message on the real broker (streams/faust_offsets.py).
Every message of `in` is echoed to `out` as `<value>|<times this key was seen>`; a per-key
table makes it a stateful agent, with a changelog to recover when it starts again.

    python -m tests.workers.echo BOOTSTRAP WEB_PORT DATA_DIR [--skip-some] [--slow-start]
                                 [--unmended]

--skip-some   the stream skips some messages once each, as Faust's takeover race does: the
              fetched message carries a consumer generation that is not the app's, so the
              stream neither processes nor acks it.
--slow-start  the first SLOW_EVENTS events take SLOW_S each (a loaded machine), and the
              seek to the committed offsets as the recovery of the table ends lands once
              the backlog is being handed to the stream, as a slow broker's answer does:
              the backlog waits in the stream's queue when the flow is resumed.
--unmended    Faust as released, to show that the tests can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import Any

import faust.transport.drivers.aiokafka as faust_aiokafka
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.worker import Worker
from mode.utils.queues import FlowControlEvent

from streams import faust_offsets
from streams.app import faust_app
from streams.config import WorkerConfig

PARTITIONS = 4
SKIP_EVERY = 97  # offsets 7, 104, 201, ... of each partition are skipped the first time
SLOW_EVENTS = 300
SLOW_S = 0.01

_skipped: set[tuple[object, int]] = set()
_to_message = faust_aiokafka.Consumer._to_message
_seek_to_committed = faust_aiokafka.Consumer.seek_to_committed
_backlog_fetched = asyncio.Event()


def _to_message_skipping_some(self, tp, record):
    message = _to_message(self, tp, record)
    if tp.topic == "in" and record.offset % SKIP_EVERY == 7 and (tp, record.offset) not in _skipped:
        _skipped.add((tp, record.offset))
        message.generation_id = -1
    return message


def _to_message_noting_the_backlog(self, tp, record):
    if tp.topic == "in":
        _backlog_fetched.set()
    return _to_message(self, tp, record)


async def _seek_to_committed_once_fetching(self):
    with contextlib.suppress(TimeoutError):  # a seek before `in` was resumed: no wait
        await asyncio.wait_for(_backlog_fetched.wait(), 3.0)
    return await _seek_to_committed(self)


def unmend() -> None:
    """Faust's own offset bookkeeping and flow control again."""
    Consumer.ack = faust_offsets._original_ack  # type: ignore[method-assign]
    Consumer._new_offset = faust_offsets._original_new_offset  # type: ignore[method-assign]
    Consumer._add_gap = faust_offsets._original_add_gap  # type: ignore[method-assign]
    FlowControlEvent.resume = faust_offsets._original_resume  # type: ignore[method-assign]
    AIOKafkaConsumerThread.seek_to_committed = faust_offsets._original_seek_to_committed  # type: ignore[method-assign]
    Consumer.perform_seek = faust_offsets._original_perform_seek  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    bootstrap, web_port, data_dir = argv[0], int(argv[1]), argv[2]
    app = faust_app(WorkerConfig(bootstrap=bootstrap, app_id="echo",
                                 web_port=web_port, data_dir=data_dir, partitions=PARTITIONS))
    if "--unmended" in argv:
        unmend()
    if "--skip-some" in argv:
        faust_aiokafka.Consumer._to_message = _to_message_skipping_some  # type: ignore[method-assign]
    slow_events = SLOW_EVENTS if "--slow-start" in argv else 0
    if slow_events:
        faust_aiokafka.Consumer._to_message = _to_message_noting_the_backlog  # type: ignore[method-assign]
        faust_aiokafka.Consumer.seek_to_committed = _seek_to_committed_once_fetching  # type: ignore[method-assign]
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw", "partitions": PARTITIONS}
    source = app.topic("in", **raw)
    seen = app.Table("seen", key_type=bytes, value_type=bytes, default=None,
                     partitions=PARTITIONS)

    @app.agent(source, name="echo")
    async def echo(stream):
        producer = app.producer
        handled = 0
        async for event in stream.events():
            handled += 1
            if handled <= slow_events:
                await asyncio.sleep(SLOW_S)
            count = int(seen.get(event.key) or b"0") + 1
            seen[event.key] = str(count).encode()
            await producer.send("out", event.key, event.value + b"|" + str(count).encode(),
                                None, None, None)

    for noisy in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
