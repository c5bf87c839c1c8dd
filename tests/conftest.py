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
WAITING_E2E_MODULES = frozenset({
    "test_broker.py", "test_e2e_faust_losses.py", "test_e2e_hospital_sink.py",
    "test_e2e_records.py", "test_e2e_time_out.py", "test_owner_fence.py",
    "test_partition_ends.py", "test_table_files.py", "test_e2e_used_cluster.py",
    "test_e2e_record_limits.py", "test_e2e_clearing_gauge.py", "test_e2e_topics.py",
    "test_e2e_seek_committed.py", "test_e2e_worker_stop.py", "test_e2e_trail.py",
    "test_e2e_spare_worker.py", "test_e2e_cluster_contact.py",
    "test_offset_gaps.py", "test_rdkafka_tail.py", "test_rdkafka_requests.py",
    "test_e2e_cluster_lost.py",
})


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


def xdist_group_of(nodeid: str) -> str:
    """The group a test runs in under pytest-xdist: one of the two end-to-end groups, or
    else its module."""
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    if module in BUSY_E2E_MODULES:
        return "e2e-busy"
    return "e2e-waiting" if module in WAITING_E2E_MODULES else module


class EndToEndGroups(LoadScopeScheduling):
    """How `make test` shares the two cores (`pytest -n 2`): the busy end-to-end tests run
    one after another on one worker, the waiting ones one after another on the other, and the
    unit tests, a module at a time, fill the gaps. So at most two brokers run at once, and one
    of them mostly idles. (xdist's own `--dist loadgroup` marks would do, but pytest 9.2's
    node ids lose them: pytest-xdist#1386.)"""

    def _split_scope(self, nodeid: str) -> str:
        return xdist_group_of(nodeid)


@pytest.hookimpl(optionalhook=True)  # `-p no:xdist` runs the tests without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> EndToEndGroups | None:
    if config.getvalue("dist") in ("load", "loadscope", "loadfile", "loadgroup"):
        return EndToEndGroups(config, log)
    return None  # --dist each or worksteal: as xdist does


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the busy end-to-end group first: it is the longest (~6 of the ~10
    minutes the suite takes serially). A plain run keeps pytest's order."""
    if hasattr(config, "workerinput"):
        first = {"e2e-busy": 0, "e2e-waiting": 1}
        items.sort(key=lambda item: first.get(xdist_group_of(item.nodeid), 2))


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
