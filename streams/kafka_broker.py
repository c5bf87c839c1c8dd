"""A real Apache Kafka broker (single KRaft node, no ZooKeeper, no Docker), run from the official
jars that Maven resolves into a local cache: for checking huimin against the reference broker,
not only against the embedded Tansu one. Same interface as `streams.broker.EmbeddedBroker`."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.broker import (
    BrokerError,
    free_port,
    kafka_protocol_ready,
    stop_process_group,
    stopped_with_parent,
)

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # the log4j Kafka 4.1.1 depends on; its slf4j 1.x binding logs to stdout
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
CACHE_ENV = "HUIMIN_KAFKA_CACHE"
_MARKER = ".complete"

_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>huimin</groupId><artifactId>kafka-broker-jars</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

# Found on the classpath by log4j2 itself, so the broker and the storage tool both log to stdout.
_LOG4J2_XML = """<Configuration status="WARN" shutdownHook="disable">
  <Appenders><Console name="out" target="SYSTEM_OUT">
    <PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers><Root level="${sys:huimin.kafka.loglevel:-INFO}"><AppenderRef ref="out"/></Root>
  </Loggers>
</Configuration>
"""


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _check_java() -> str:
    """The broker of Kafka 4.x needs Java 17 or later."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError("`java` (17 or later) is not on PATH: the Apache Kafka broker needs it")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(1\.)?(\d+)', out)  # "17.0.15", or "1.8.0" for Java 8
    major = int(m.group(2)) if m else 0
    if major < 17:
        raise BrokerError(f"Apache Kafka {KAFKA_VERSION} needs Java 17 or later; "
                          f"`java -version` says: {_tail(out, 3)}")
    return java


def _cache_dir(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "huimin" / f"kafka-{KAFKA_VERSION}"


def _complete(cache: Path) -> bool:
    marker = cache / _MARKER
    return marker.exists() and marker.read_text().strip() == KAFKA_VERSION


def _classpath(cache: Path) -> str:
    conf = cache / "conf" / "log4j2.xml"
    if not conf.exists() or conf.read_text() != _LOG4J2_XML:
        conf.parent.mkdir(exist_ok=True)
        conf.write_text(_LOG4J2_XML)
    jars = sorted(str(p) for p in (cache / "lib").glob("*.jar"))
    return os.pathsep.join([str(cache / "conf"), *jars])


def kafka_classpath(cache_dir: Path | None = None) -> str:
    """The broker's Java classpath. The jars are resolved from Maven Central once, into the cache
    folder; a marker written at the end makes a half-finished download start over."""
    _check_java()
    cache = _cache_dir(cache_dir)
    if _complete(cache):
        return _classpath(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:  # two processes must not download into one folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(cache):
            return _classpath(cache)
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(f"`mvn` is not on PATH: it is needed once to fetch the Apache Kafka "
                              f"{KAFKA_VERSION} jars into {cache}")
        (cache / _MARKER).unlink(missing_ok=True)
        shutil.rmtree(cache / "lib", ignore_errors=True)
        (cache / "pom.xml").write_text(_POM)
        cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(cache / "pom.xml"),
               f"{DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime",
               f"-DoutputDirectory={cache / 'lib'}"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired as e:
            raise BrokerError(f"mvn did not fetch the Kafka jars within {e.timeout:.0f} s") from e
        if done.returncode != 0 or not (cache / "lib" / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            raise BrokerError(f"mvn could not fetch org.apache.kafka:kafka_2.13:{KAFKA_VERSION} "
                              f"(exit {done.returncode}):\n{_tail(done.stdout + done.stderr)}")
        (cache / _MARKER).write_text(KAFKA_VERSION + "\n")
        return _classpath(cache)


def _properties(port: int, cport: int, logs: Path) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        # A static quorum: Kafka 4 refuses `format --standalone` next to controller.quorum.voters.
        "controller.quorum.voters": f"1@127.0.0.1:{cport}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(logs),
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "num.network.threads": "2",
        "num.io.threads": "2",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def _free(port: int) -> bool:
    """Whether nothing listens on the loopback `port` (one a killed broker's connections
    still hold in TIME_WAIT is free: Kafka binds it so too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _kept_ports(data_dir: Path | None) -> tuple[int, int] | None:
    """The broker's and controller's ports of an earlier start on `data_dir`, if any."""
    if data_dir is None:
        return None
    try:
        broker, controller = (data_dir / PORTS_FILE).read_text().split()
        return int(broker), int(controller)
    except (OSError, ValueError):
        return None


def _can_create_topic(bootstrap: str) -> bool:
    """True once the broker creates a topic and reports a leader for it: the listener answers
    before the broker has registered with its controller."""
    name = "__huimin_ready"
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="huimin-ready",
                                 request_timeout_ms=5_000)
    except KafkaError:
        return False
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics({name: {"num_partitions": 1, "replication_factor": 1}})
        [topic] = admin.describe_topics([name])
        parts = topic["partitions"]
        if topic["error_code"] or not parts or any(p["leader_id"] < 0 for p in parts):
            return False
        admin.delete_topics([name])
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


#: In a kept data folder: the ports its broker listened on, so that it starts again on them
#: (its clients' address, and the controller's that its metadata was written with).
PORTS_FILE = "huimin-ports"


class ApacheKafkaBroker:
    """An Apache Kafka broker and controller in one JVM on free loopback ports, in its own
    process group; its data lives in a temporary folder unless `data_dir` is given: that one
    is kept, and a broker started again on it resumes its topics on the same ports (its
    last start's, unless `port` is given)."""

    def __init__(self, port: int | None = None, log_path: Path | None = None,
                 data_dir: Path | None = None) -> None:
        kept = _kept_ports(data_dir)
        if kept and port == kept[1]:
            raise BrokerError(f"port {port} is the controller's of the broker kept in "
                              f"{data_dir} ({PORTS_FILE}): give another --port")
        self.port = port or (kept[0] if kept else free_port())
        self.controller_port = kept[1] if kept else free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.log_path = log_path
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _log_tail(self, log: Path) -> str:
        """Where to look, and the log's last lines (a temporary log is removed by stop())."""
        where = f"; see {self.log_path}" if self.log_path else ""
        with contextlib.suppress(OSError):
            return f"{where}\n{_tail(log.read_text(errors='replace'))}"
        return where

    def start(self, timeout: float = 60.0) -> ApacheKafkaBroker:
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()  # no JVM or temporary folder is left behind, whatever went wrong
            raise

    def _start(self, timeout: float) -> ApacheKafkaBroker:
        classpath = kafka_classpath()  # checks java too
        java = shutil.which("java") or "java"
        if self.data_dir is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="huimin-kafka-"))
        data = self.data_dir or self._tmp
        assert data is not None
        data.mkdir(parents=True, exist_ok=True)
        for port in (self.port, self.controller_port):  # else a broker already there looks
            if not _free(port):  # ready to the check below, and this one dies after it
                kept = f" (kept in {data / PORTS_FILE} from its last start)" \
                    if self.data_dir is not None else ""
                raise BrokerError(f"port {port} on 127.0.0.1 is in use{kept}: is a broker "
                                  "on this folder still running? Stop it, or give --port")
        (data / PORTS_FILE).write_text(f"{self.port} {self.controller_port}\n")
        props = data / f"server-{self.port}.properties"  # names this broker's JVM in `ps`
        props.write_text(_properties(self.port, self.controller_port, data / "logs"))
        log = self.log_path or data / "broker.log"
        if not (data / "logs" / "meta.properties").exists():  # a caller's data_dir is reused
            self._format(java, classpath, props)
        cmd = [java, "-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
               "-cp", classpath, "kafka.Kafka", str(props)]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=stopped_with_parent())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"the Apache Kafka broker exited at start (code "
                                  f"{self.process.returncode}){self._log_tail(log)}")
            if kafka_protocol_ready("127.0.0.1", self.port) and _can_create_topic(self.bootstrap):
                return self
            time.sleep(0.2)
        raise BrokerError(f"the Apache Kafka broker was not ready on {self.bootstrap} within "
                          f"{timeout:.0f} s{self._log_tail(log)}")

    @staticmethod
    def _format(java: str, classpath: str, props: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        fmt = subprocess.run([java, "-Xmx256m", "-Dhuimin.kafka.loglevel=WARN", "-cp", classpath,
                              "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                              "-c", str(props)],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if fmt.returncode != 0:
            raise BrokerError(f"formatting the Kafka storage failed:\n"
                              f"{_tail(fmt.stdout + fmt.stderr)}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM lets Kafka shut down cleanly; SIGKILL after `timeout`."""
        proc, self.process = self.process, None
        stop_process_group(proc, timeout)
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def __enter__(self) -> ApacheKafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
