"""Shared fixtures. End-to-end tests start their own embedded broker (or use
KAFKA_BOOTSTRAP_SERVERS) and need no setup by hand."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

from simulators.interrupt import forget_stops

REPO = Path(__file__).resolve().parent.parent
#: Copies of ../shared/data/fhir (HL7 examples CC0-1.0, Synthea bundles Apache-2.0; see its
#: SOURCES.md), kept in the repository so that a clean checkout anywhere can run the tests.
FHIR_DATA = REPO / "tests" / "data" / "fhir"


#: End-to-end modules that keep about a core busy while they run.
BUSY_E2E_MODULES = frozenset({
    "test_e2e_bench.py", "test_e2e_faults.py", "test_e2e_kafka.py", "test_e2e_operations.py",
    "test_e2e_replay.py", "test_e2e_run.py", "test_kafka_broker.py", "test_e2e_lost_writes.py",
})
#: End-to-end modules that mostly wait (for a consumer group's session to time out, a
#: rebalance, a worker to stop) rather than compute: each took 0.2–0.45 of a core on average.
#: Two lanes of them (~5.5 and ~4 minutes on a 2-core machine, 12-07): the second is followed
#: by the unit tests under `make test` (`EndToEndGroups`).
WAITING_E2E_LANES = (
    frozenset({
        "test_e2e_cluster_contact.py", "test_e2e_hospital_sink.py", "test_e2e_spare_worker.py",
        "test_owner_fence.py", "test_e2e_time_out.py", "test_e2e_clearing_gauge.py",
        "test_e2e_records.py", "test_e2e_topics.py", "test_broker.py",
        "test_partition_ends.py", "test_e2e_used_cluster.py",
    }),
    frozenset({
        "test_e2e_faust_losses.py", "test_e2e_cluster_lost.py", "test_e2e_worker_stop.py",
        "test_e2e_trail.py", "test_table_files.py", "test_e2e_record_limits.py",
        "test_e2e_seek_committed.py", "test_offset_gaps.py", "test_rdkafka_tail.py",
        "test_rdkafka_requests.py",
    }),
)
WAITING_E2E_MODULES = WAITING_E2E_LANES[0] | WAITING_E2E_LANES[1]


#: Settings that make rich (the CLI's console) treat captured output as a terminal: colour
#: codes and progress bars would then reach what the tests read. A CI service or a developer's
#: shell may set them; the tests run as if none were set.
TERMINAL_FORCING = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


#: CI sets this (`.ci/run`): a test whose tool is missing fails instead of being skipped
#: (promtool and amtool, Java and Maven for Apache Kafka, py-spy reading other processes).
TOOLS_REQUIRED = bool(os.environ.get("HUIMIN_REQUIRE_TOOLS"))
needs_java_and_maven = pytest.mark.skipif(
    (shutil.which("java") is None or shutil.which("mvn") is None) and not TOOLS_REQUIRED,
    reason="Apache Kafka needs `java` (17+) and `mvn` on PATH")

def pytest_configure(config: pytest.Config) -> None:
    for name in TERMINAL_FORCING:  # before any test, and so for every `huimin` they start
        os.environ.pop(name, None)


def module_of(nodeid: str) -> str:
    """A test's module, by its file name (its parameters may hold `::` or `/`)."""
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def lane_of(nodeid: str) -> int:
    """Where a test's module runs under `make test`: 0 the busy end-to-end lane, 1 and 2 the
    waiting ones, 3 the unit tests (after lane 2's end-to-end tests)."""
    module = module_of(nodeid)
    if module in BUSY_E2E_MODULES:
        return 0
    return next((n for n, lane in enumerate(WAITING_E2E_LANES, 1) if module in lane), 3)


def xdist_group_of(nodeid: str, workers: int = 2) -> str:
    """The group a test runs in under pytest-xdist with `workers` workers: the busy end-to-end
    group, one waiting group (two with three workers or more), or else its module, which with
    exactly three workers joins the second waiting group."""
    lane = lane_of(nodeid)
    if lane == 0:
        return "e2e-busy"
    if lane == 3 and workers != 3:
        return module_of(nodeid)
    return "e2e-waiting" if workers < 3 else f"e2e-waiting-{min(lane, 2)}"


class EndToEndGroups(LoadScopeScheduling):
    """How `make test` shares the two cores (`pytest -n 3`), in three lanes: the busy
    end-to-end tests one after another on one worker (about a core), the waiting ones in two
    lanes (a fraction of a core each), and the second of those followed by the unit tests, a
    module at a time. So at most three brokers run at once, two of them mostly idle, and no
    more than two workers compute at once. Every group runs one test at a time, on one
    worker. (xdist's own `--dist loadgroup` marks would do, but pytest 9.2's node ids lose
    them: pytest-xdist#1386.)"""

    def _split_scope(self, nodeid: str) -> str:
        return xdist_group_of(nodeid, self.numnodes)


@pytest.hookimpl(optionalhook=True)  # `-p no:xdist` runs the tests without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> EndToEndGroups | None:
    if config.getvalue("dist") in ("load", "loadscope", "loadfile", "loadgroup"):
        return EndToEndGroups(config, log)
    return None  # --dist each or worksteal: as xdist does


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the end-to-end groups first, the longest first (the busy one takes ~9 of
    the ~23 minutes the suite takes serially on a 2-core machine, each waiting lane ~4–5.5),
    and the unit tests last. A plain run keeps pytest's order."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: lane_of(item.nodeid))


@pytest.fixture(autouse=True)
def no_stop_left_noted() -> Iterator[None]:
    """The process's record of the Ctrl-Cs and SIGTERMs raised (simulators/interrupt.py)
    empty after each test: a test that sent one would otherwise have an error of a later
    test in its process taken for that stop."""
    yield
    forget_stops()


def processes_mentioning(text: str, where: str = "cmdline") -> list[int]:
    """PIDs whose command line (or, with `where="environ"`, environment) contains `text`
    (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            found = (entry / where).read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in found:
            pids.append(int(entry.name))
    return pids


def huimin_command() -> str:
    """The `huimin` console script of this checkout's .venv (else the one on PATH)."""
    path = REPO / ".venv" / "bin" / "huimin"
    return str(path) if path.exists() else "huimin"


def interrupt_huimin(args: list[str], marker: str, after_s: float, timeout: float,
                     presses: int = 1, sig: int = signal.SIGINT, victim: str | None = None,
                     **kwargs: object) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """`huimin *args`, sent `presses` Ctrl-Cs (SIGINT, 0.2 s apart; or `sig`) `after_s`
    seconds after a line of its output (stdout and stderr together) holds `marker`, unless
    it has ended by then; and the processes it started still running once it has ended
    (found by a mark in the environment they inherit: brokers, workers, the raw ceiling's
    forwarders). `victim`: the signals go instead to the processes it started whose command
    line holds `victim` (its broker, say)."""
    token = f"HUIMIN_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, **dict([token.split("=")])}
    with subprocess.Popen([huimin_command(), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                          **kwargs) as proc:  # type: ignore[call-overload]
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if marker in line:
                break
        try:
            proc.wait(timeout=after_s)
        except subprocess.TimeoutExpired:
            targets = [pid for pid in processes_mentioning(token, where="environ")
                       if victim in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
                           errors="replace")] if victim else [proc.pid]
            assert targets, f"no process of its holds {victim!r}"
            for n in range(presses):
                time.sleep(0.2 if n else 0)
                for pid in targets:
                    os.kill(pid, sig)
        out = "".join(seen) + proc.communicate(timeout=timeout)[0]
    return (subprocess.CompletedProcess(proc.args, proc.returncode, out, ""),
            processes_mentioning(token, where="environ"))


def run_huimin(args: list[str], timeout: float, **kwargs: object
               ) -> subprocess.CompletedProcess[str]:
    """`huimin *args`, output captured as text. On time-out it gets SIGTERM first, so that it
    stops the broker and workers it started (`subprocess.run` would SIGKILL it and leave them
    running), and SIGKILL only if it has not ended 30 s later; the time-out is then raised."""
    with subprocess.Popen([huimin_command(), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kwargs) as proc:  # type: ignore[call-overload]
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
