"""The raw broker ceiling: the same number of broker hops as a cross-province settlement, as
plain aiokafka consumer → producer forwarders with no Faust and no rules, so every huimin
figure can be read as a ratio to what the broker and the client library allow on this machine.

A cross-province settlement crosses 6 topics (hosp.requests → nat.requests → ins.requests →
nat.answers → trt.answers → hosp.responses) through 5 forwarding stages; the ceiling does the
same with `raw.0` … `raw.5`, all 5 stages in one process (as one worker holds all roles),
driven open-loop at a fixed rate, with the time each message was due inside it.

It uses huimin's partitions per topic, producer linger, consumer fetch wait and the workers'
least fetch size (the forwarders play the workers' part; the sink, the hospitals'), and acks=1 as
huimin's workers do on Tansu, so there the two differ only in what runs between consume and
produce. On Apache Kafka huimin's producers are idempotent (acks=all, one broker) and the
forwarders keep acks=1: the ceiling is the plain forward, not huimin's delivery guarantee.

    python -m benchmarks.ceiling BOOTSTRAP LINGER_MS FETCH_WAIT_MS [FETCH_MIN_BYTES]
    (the forwarders; stopped with SIGTERM)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.broker import stopped_with_parent
from streams.config import FETCH_MIN_BYTES, FETCH_WAIT_MS, LINGER_MS
from streams.topics import ensure_topics

HOPS = 6
TOPICS = [f"raw.{i}" for i in range(HOPS)]
PAYLOAD = b"x" * 600  # about a settlement request's size


async def _forward(bootstrap: str, source: str, target: str, stop: asyncio.Event,
                   linger_ms: int, fetch_wait_ms: int, fetch_min_bytes: int) -> None:
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"raw-{source}",
                                auto_offset_reset="latest", fetch_max_wait_ms=fetch_wait_ms,
                                fetch_min_bytes=fetch_min_bytes, enable_auto_commit=True)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, acks=1)
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
            for records in batches.values():
                for r in records:
                    await producer.send(target, r.value, key=r.key)
    finally:
        await consumer.stop()
        await producer.stop()


async def _forwarders(bootstrap: str, linger_ms: int, fetch_wait_ms: int,
                      fetch_min_bytes: int = FETCH_MIN_BYTES) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.gather(*(_forward(bootstrap, a, b, stop, linger_ms, fetch_wait_ms,
                                    fetch_min_bytes) for a, b in itertools.pairwise(TOPICS)))


@dataclass
class CeilingResult:
    offered: float  # messages per second sent into raw.0
    achieved: float  # per second out of raw.5, after warm-up
    latencies_ms: list[float]
    lost: int  # of the messages due after the warm-up, not through by its end
    send_lag_ms: list[float]  # how late each measured message went out after it was due


class RawCeiling:
    """The forwarders in their own process, started once for all rates."""

    def __init__(self, bootstrap: str, log_path: Path | None = None, partitions: int = 1,
                 linger_ms: int = LINGER_MS, fetch_wait_ms: int = FETCH_WAIT_MS,
                 fetch_min_bytes: int = FETCH_MIN_BYTES) -> None:
        self.bootstrap = bootstrap
        self.log_path = log_path
        self.partitions = partitions
        self.linger_ms = linger_ms
        self.fetch_wait_ms = fetch_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RawCeiling:
        ensure_topics(self.bootstrap, TOPICS, partitions=self.partitions)
        with contextlib.ExitStack() as opened:  # the child keeps its own copy of the log
            out = opened.enter_context(open(self.log_path, "ab")) if self.log_path \
                else subprocess.DEVNULL
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.ceiling", self.bootstrap,
                 str(self.linger_ms), str(self.fetch_wait_ms), str(self.fetch_min_bytes)],
                stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C is bench's to take
                preexec_fn=stopped_with_parent())
        try:
            time.sleep(6)  # the forwarders join their groups (Tansu: ~3 s per group)
        except BaseException:  # a Ctrl-C meanwhile: __exit__ will not run, so stop them here
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()

    def measure(self, rate: float, duration: float, warmup: float) -> CeilingResult:
        """Send `rate` messages/s for `duration` s (open loop) and time each to the sink from
        when it was due to be sent, not from when the loop got to it: a loop that falls
        behind (it also drains the sink) adds its lag to the latency, as a real sender's
        would be felt, instead of hiding it (coordinated omission). The lag is reported too."""
        sink = KafkaConsumer(bootstrap_servers=self.bootstrap,
                             fetch_max_wait_ms=self.fetch_wait_ms,
                             enable_auto_commit=False, metrics_enabled=False)
        try:
            parts = [TopicPartition(TOPICS[-1], p) for p in range(self.partitions)]
            sink.assign(parts)
            sink.seek_to_end(*parts)
            for tp in parts:
                sink.position(tp)
            producer = KafkaProducer(bootstrap_servers=self.bootstrap,
                                     linger_ms=self.linger_ms, acks=1, metrics_enabled=False)
            try:
                return self._measure(sink, producer, rate, duration, warmup)
            finally:
                producer.close()
        finally:
            sink.close()

    def _measure(self, sink: KafkaConsumer, producer: KafkaProducer, rate: float,
                 duration: float, warmup: float) -> CeilingResult:
        n = int(rate * duration)
        start, wall_start = time.monotonic(), time.time_ns()
        sent, latencies, send_lags = 0, [], []
        kept_due = 0  # messages due after the warm-up: the only ones whose loss counts, as
        # on huimin's side (a forwarder joining late on a busy machine may miss the first)
        keep_from = wall_start + int(warmup * 1e9)
        last_kept = 0
        while True:
            now = time.monotonic() - start
            while sent < n and sent / rate <= now:
                due = wall_start + int(sent / rate * 1e9)
                if due >= keep_from:
                    kept_due += 1
                    send_lags.append((time.time_ns() - due) / 1e6)
                producer.send(TOPICS[0], key=str(sent).encode(),
                              value=due.to_bytes(8, "big") + PAYLOAD)
                sent += 1
            for records in sink.poll(timeout_ms=5, max_records=2000).values():
                for r in records:
                    t0 = int.from_bytes(r.value[:8], "big")
                    if t0 >= keep_from:
                        last_kept = time.time_ns()
                        latencies.append((last_kept - t0) / 1e6)
            if sent >= n and (len(latencies) >= kept_due or now > duration + 15):
                break
        # over the measured window as huimin's rate is: from the warm-up's end to the last
        # message through
        span = (last_kept - keep_from) / 1e9
        return CeilingResult(rate, len(latencies) / span if span > 0 else 0.0, latencies,
                             kept_due - len(latencies), send_lags)


if __name__ == "__main__":
    asyncio.run(_forwarders(sys.argv[1], *map(int, sys.argv[2:5])))
