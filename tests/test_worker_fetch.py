"""The worker's consumer fetches as configured (`--fetch-wait-ms`, `--fetch-min-bytes`):
Faust builds it with a fetch wait of its own (1.5 s) and no least size, so the settings are
put on the consumer it builds, under the names aiokafka reads when the consumer starts."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path

import faust.transport.drivers.aiokafka as faust_aiokafka
import pytest
from aiokafka import AIOKafkaConsumer
from typer.testing import CliRunner

import streams.worker
from benchmarks import ceiling
from huimin import cli, cli_cluster
from streams.app import faust_app
from streams.broker import BOOTSTRAP_ENV, free_port
from streams.config import FETCH_MIN_BYTES, FETCH_WAIT_MS, WorkerConfig
from streams.faust_tuning import set_worker_fetch


def fetch_settings(build: Callable[[], AIOKafkaConsumer]) -> tuple[int, int]:
    """The fetch wait and least size of a consumer built (never started) on an event loop."""
    async def built() -> tuple[int, int]:
        consumer = build()
        try:
            return consumer._fetch_max_wait_ms, consumer._fetch_min_bytes
        finally:
            await consumer.stop()

    return asyncio.run(built())


def test_the_worker_consumer_waits_as_long_and_for_as_much_as_configured():
    def worker_consumer() -> AIOKafkaConsumer:
        app = faust_app(WorkerConfig(bootstrap="127.0.0.1:9", fetch_max_wait_ms=7,
                                     fetch_min_bytes=8192))
        consumer, transport = app.consumer, app.transport
        assert isinstance(consumer, faust_aiokafka.Consumer)
        assert isinstance(transport, faust_aiokafka.Transport)
        return consumer._thread._create_worker_consumer(transport)

    try:
        assert fetch_settings(worker_consumer) == (7, 8192)
    finally:
        set_worker_fetch(FETCH_WAIT_MS, FETCH_MIN_BYTES)


def test_aiokafka_keeps_the_fetch_settings_under_the_names_we_set():
    """aiokafka hands these attributes to its fetcher at start; if a new version renamed them,
    setting them would silently do nothing."""
    assert fetch_settings(lambda: AIOKafkaConsumer(fetch_max_wait_ms=7,
                                                   fetch_min_bytes=8192)) == (7, 8192)


def test_huimin_worker_passes_its_fetch_options_to_the_worker(monkeypatch: pytest.MonkeyPatch):
    started: list[WorkerConfig] = []
    monkeypatch.setattr(cli_cluster, "bootstrap_servers", lambda given: given)
    monkeypatch.setattr(cli_cluster, "topic_problems", lambda *a: [])
    monkeypatch.setattr(cli_cluster, "settings_advice", lambda *a: [])
    monkeypatch.setattr(streams.worker, "run_worker", started.append)
    monkeypatch.delenv(BOOTSTRAP_ENV, raising=False)
    result = CliRunner().invoke(cli.app, ["worker", "--bootstrap", "127.0.0.1:9",
                                          "--persons", "50", "--web-port", str(free_port()),
                                          "--fetch-wait-ms", "5", "--fetch-min-bytes", "8192"])
    assert result.exit_code == 0, result.output
    assert [(c.fetch_max_wait_ms, c.fetch_min_bytes) for c in started] == [(5, 8192)]
    refused = CliRunner().invoke(cli.app, ["worker", "--fetch-min-bytes", "0"])
    assert refused.exit_code == 2 and "--fetch-min-bytes" in refused.output
    assert len(started) == 1


def forwarders_started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], object]]:
    """The raw ceiling's forwarders' process, stood in for: each start's arguments and the
    stdout it was given."""
    started: list[tuple[list[str], object]] = []

    class Started:
        def __init__(self, args: list[str], stdout: object = None, **_: object) -> None:
            started.append((args, stdout))

        def terminate(self) -> None: ...
        def wait(self, _timeout: float) -> None: ...
        def poll(self) -> int: return 0

    monkeypatch.setattr(ceiling, "ensure_topics", lambda *a, **k: None)
    monkeypatch.setattr(ceiling.subprocess, "Popen", Started)
    monkeypatch.setattr(ceiling.time, "sleep", lambda _s: None)
    return started


def test_the_raw_ceilings_forwarders_fetch_as_the_workers_do(monkeypatch: pytest.MonkeyPatch):
    """They play the workers' part in the raw chain, so `huimin bench --fetch-min-bytes`
    reaches them too, in the arguments their process reads."""
    started = forwarders_started(monkeypatch)
    with ceiling.RawCeiling("127.0.0.1:9", linger_ms=5, fetch_wait_ms=7, fetch_min_bytes=8192):
        pass
    args = started[0][0]
    assert args[-4:] == ["127.0.0.1:9", "5", "7", "8192"]
    forwarded: list[tuple[int, int, int]] = []

    async def forwarder(_bootstrap: str, _source: str, _target: str, _stop: object,
                        linger_ms: int, fetch_wait_ms: int, fetch_min_bytes: int) -> None:
        forwarded.append((linger_ms, fetch_wait_ms, fetch_min_bytes))

    monkeypatch.setattr(ceiling, "_forward", forwarder)
    asyncio.run(ceiling._forwarders(args[-4], *map(int, args[-3:])))
    assert forwarded == [(5, 7, 8192)] * (ceiling.HOPS - 1)


def test_the_raw_ceiling_leaves_no_log_file_open_in_the_bench(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The forwarders' process writes to its own copy of the log; the bench's stayed open,
    one a rate."""
    started = forwarders_started(monkeypatch)
    with ceiling.RawCeiling("127.0.0.1:9", log_path=tmp_path / "ceiling.log"):
        pass
    ((_, log),) = started
    assert getattr(log, "name", None) == str(tmp_path / "ceiling.log") and \
        isinstance(log, io.IOBase) and log.closed


@pytest.mark.parametrize(("host", "url"), [("::1", "http://[::1]:6167"),
                                           ("0.0.0.0", "http://0.0.0.0:6167")])
def test_a_worker_on_an_ipv6_address_has_a_url_faust_can_read(host: str, url: str):
    """`--web-host ::1` passed huimin's own check and then failed Faust's URL parsing with a
    traceback (a review): the address goes in brackets there, and is bound as given."""
    app = faust_app(WorkerConfig(bootstrap="127.0.0.1:9", web_host=host, web_port=6167))
    assert str(app.conf.canonical_url) == url and app.conf.web_bind == host
