"""The embedded Tansu broker starts on a free loopback port, speaks Kafka, and stops cleanly."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from kafka import KafkaAdminClient

from streams.broker import (
    EmbeddedBroker,
    broker,
    free_port,
    kafka_protocol_ready,
    unreachable,
)
from streams.topics import ensure_topics

pytestmark = pytest.mark.e2e


def test_the_embedded_brokers_log_is_plain_text_without_colour_codes(tmp_path, monkeypatch):
    """Tansu colours its log lines whatever they are written to: broker.log had ANSI
    escapes around an error (a review). Its debug lines show every level's colouring."""
    monkeypatch.setenv("RUST_LOG", "debug")
    log = tmp_path / "broker.log"
    with EmbeddedBroker(log_path=log) as b:
        ensure_topics(b.bootstrap, ["t.one"], partitions=1)
    text = log.read_text()
    assert "DEBUG" in text and "\x1b[" not in text


def test_embedded_broker_answers_kafka_and_frees_its_port_when_stopped(tmp_path):
    b = EmbeddedBroker(log_path=tmp_path / "broker.log").start()
    try:
        assert kafka_protocol_ready("127.0.0.1", b.port)
        ensure_topics(b.bootstrap, ["t.one", "t.two"], partitions=3)
        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        try:
            described = {t["name"]: len(t["partitions"])
                         for t in admin.describe_topics(["t.one", "t.two"])}
        finally:
            admin.close()
        assert described == {"t.one": 3, "t.two": 3}
        ensure_topics(b.bootstrap, ["t.one"], partitions=3)  # creating again is harmless
    finally:
        pid = b.process.pid if b.process else None
        b.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", b.port)) != 0
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        import os
        os.kill(pid, 0)


def test_kafka_bootstrap_servers_wins_over_the_embedded_broker(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    with broker() as bootstrap:
        assert bootstrap == "kafka.example:9092"


def test_huimin_broker_says_so_when_its_broker_dies_by_itself():
    """It printed "Broker stopped." and exit 0, as for a Ctrl-C: a crash read as a stop."""
    import os
    import signal
    import subprocess
    from pathlib import Path

    from tests.conftest import huimin_command

    proc = subprocess.Popen([huimin_command(), "broker"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in (proc.stdout.readline() if proc.stdout else "")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children
        for child in children:
            os.kill(int(child), signal.SIGKILL)  # the broker itself, not huimin
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out + err
    assert "the broker exited by itself (code -9)" in err and "Broker stopped." not in out


def resolve_as_given(host: str, port: int, *_: object, **__: object) -> list[tuple]:
    """A name lookup that answers each host with itself, as it does a numeric address."""
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]


def test_an_address_without_a_port_that_refuses_says_which_port_was_tried(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--bootstrap localhost` tries Kafka's 9092: a refusal says so, not only the host."""
    looked_up = []
    closed = free_port()  # nothing listens there: every address below refuses for real

    def lookup(host: str, port: int, *_: object, **__: object) -> list[tuple]:
        looked_up.append((host, port))
        return resolve_as_given("127.0.0.1", closed)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    assert unreachable("localhost,[::1],127.0.0.1:7") == (
        "localhost (port 9092, Kafka's default, as none was given): connection refused; "
        "[::1] (port 9092, Kafka's default, as none was given): connection refused; "
        "127.0.0.1:7: connection refused")
    assert looked_up == [("localhost", 9092), ("::1", 9092), ("127.0.0.1", 7)]


def test_each_address_a_name_resolves_to_is_tried_until_one_takes_the_connection(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A name with a dead address first and a listening one after is reachable, as the
    Kafka clients would find it; with only dead ones, it is said refused."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        alive = listening.getsockname()[1]
        dead = free_port()
        both = [*resolve_as_given("127.0.0.1", dead), *resolve_as_given("127.0.0.1", alive)]
        monkeypatch.setattr(socket, "getaddrinfo", lambda *_, **__: both)
        assert unreachable("kafka.example:9092", timeout_s=1) is None
        monkeypatch.setattr(socket, "getaddrinfo", lambda *_, **__: both[:1])
        assert unreachable("kafka.example:9092", timeout_s=1) == (
            "kafka.example:9092: connection refused")


def test_a_name_lookup_that_hangs_counts_as_slow_not_as_gone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver that never answers must not hold the caller (a silent run's loop asking
    whether its cluster is there) past the time-out: the cluster is not called unreachable,
    as with an address that does not answer a connection in time."""
    released = threading.Event()
    asked = threading.Event()

    def hang(*_: object, **__: object) -> list[tuple]:
        asked.set()
        released.wait(30)
        raise socket.gaierror("released by the test")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    try:
        started = time.monotonic()
        assert unreachable("kafka.hanging.example:9092", timeout_s=0.2) is None
        assert asked.is_set() and time.monotonic() - started < 10
        # asked again while that lookup still hangs: no second one is started
        asked.clear()
        assert unreachable("kafka.hanging.example:9092", timeout_s=0.2) is None
        assert not asked.is_set()
    finally:
        released.set()


def test_a_name_that_does_not_resolve_and_a_port_that_refuses_are_each_said(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lookup's own failure is still told apart from a refused connection."""
    def lookup(host: str, port: int, *_: object, **__: object) -> list[tuple]:
        if host == "gone.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return resolve_as_given(host, port)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    port = free_port()  # nothing listens there
    assert unreachable(f"gone.invalid:9092,127.0.0.1:{port}", timeout_s=1) == (
        f"gone.invalid:9092: no such host; 127.0.0.1:{port}: connection refused")
