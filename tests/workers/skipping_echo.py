"""A Faust echo worker on huimin's Faust settings (`streams.app.faust_app`, mends included)
whose stream skips some messages once each, as Faust's takeover race does
(streams/faust_offsets.py): the fetched message carries a consumer generation that is not the
app's, so the stream neither processes nor acks it. Every message of `in` is echoed to `out`
as `<value>|<times this key was seen>`; a per-key table makes it a stateful agent.

    python -m tests.workers.skipping_echo BOOTSTRAP WEB_PORT DATA_DIR [--unmended]
"""

from __future__ import annotations

import logging
import sys

import faust.transport.drivers.aiokafka as faust_aiokafka
from faust.transport.consumer import Consumer
from faust.worker import Worker

from streams import faust_offsets
from streams.app import faust_app
from streams.config import WorkerConfig

PARTITIONS = 4
SKIP_EVERY = 97  # offsets 7, 104, 201, ... of each partition are skipped the first time

_skipped: set[tuple[object, int]] = set()
_to_message = faust_aiokafka.Consumer._to_message


def _to_message_skipping_some(self, tp, record):  # type: ignore[no-untyped-def]
    message = _to_message(self, tp, record)
    if tp.topic == "in" and record.offset % SKIP_EVERY == 7 and (tp, record.offset) not in _skipped:
        _skipped.add((tp, record.offset))
        message.generation_id = -1
    return message


def main(argv: list[str]) -> None:
    bootstrap, web_port, data_dir = argv[0], int(argv[1]), argv[2]
    app = faust_app(WorkerConfig(bootstrap=bootstrap, app_id="skipping-echo",
                                 web_port=web_port, data_dir=data_dir, partitions=PARTITIONS))
    if "--unmended" in argv:  # Faust as released, to show the test can fail
        Consumer.ack = faust_offsets._original_ack  # type: ignore[method-assign]
        Consumer._new_offset = faust_offsets._original_new_offset  # type: ignore[method-assign]
    faust_aiokafka.Consumer._to_message = _to_message_skipping_some  # type: ignore[method-assign]
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw", "partitions": PARTITIONS}
    source = app.topic("in", **raw)
    seen = app.Table("seen", key_type=bytes, value_type=bytes, default=None,
                     partitions=PARTITIONS)

    @app.agent(source, name="echo")
    async def echo(stream):  # type: ignore[no-untyped-def]
        producer = app.producer
        async for event in stream.events():
            count = int(seen.get(event.key) or b"0") + 1
            seen[event.key] = str(count).encode()
            await producer.send("out", event.key, event.value + b"|" + str(count).encode(),
                                None, None, None)

    for noisy in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
