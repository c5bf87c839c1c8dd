"""Who spent a rate's CPU: each component's busy time (Linux /proc), the workers' time in each
role's handler against the rest (read from their /metrics), and the hospitals' time by thread
(their loop against their Kafka clients' network threads). Per visit, these are the figures a
change is compared by (docs/performance.md)."""

from __future__ import annotations

import os
import threading
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from simulators.hospital import DEAD_LETTERS_CLIENT


def busy_seconds(stat: Path, children: bool = False) -> float:
    """User + system CPU seconds from a /proc `stat` file (a process's, or a thread's under
    `task/`), with its waited-for children's if asked; 0 for one that has gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(x) for x in fields[11:15 if children else 13])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds(stat: Path = Path("/proc/stat")) -> dict[str, float] | None:
    """CPU seconds the whole machine has been busy, all cores: `all` (user, nice, system,
    irq, softirq, steal) and `processes` (user, nice and system: what processes are charged
    with; interrupts and a hypervisor's steal are charged to none); None where there is no
    /proc/stat. Set against the components' own, `processes` shows what other processes
    took from a rate: the CPU probe, timed in CPU time, cannot."""
    try:
        first = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    tick = os.sysconf("SC_CLK_TCK")
    return {"all": (user + nice + system + irq + softirq + steal) / tick,
            "processes": (user + nice + system) / tick}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (Linux /proc), children included."""
    return sum(busy_seconds(Path(f"/proc/{pid}/stat"), children=True) for pid in pids)


def cpu_per_visit(cpu_cores: dict[str, float], wall: float, visits: int) -> dict[str, float]:
    """Milliseconds of CPU each component spent per visit over the rate (polling included).
    Less at the mercy of a noisy machine than latency, and what decides the capacity: the
    machine's cores give 1,000 ms a second each."""
    if not visits:
        return {}
    per = {k: round(cores * wall * 1000 / visits, 2) for k, cores in cpu_cores.items()}
    return {**per, "all": round(sum(per.values()), 2)}


def role_cpu_seconds(metrics_urls: list[str]) -> dict[str, float] | None:
    """CPU seconds the workers' event loops spent in each role's handler so far
    (`huimin_role_cpu_seconds_total`, summed over the workers); None if a worker does not
    answer, since a sum without it, read against one with it, would split the rate's CPU
    wrongly (a busy worker can miss the 5 s past capacity)."""
    out: dict[str, float] = {}
    for url in metrics_urls:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                text = answer.read().decode()
        except OSError:
            return None
        for family in text_string_to_metric_families(text):
            if family.name == "huimin_role_cpu_seconds":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        role = sample.labels["role"]
                        out[role] = out.get(role, 0.0) + sample.value
    return out


def role_cpu_per_visit(before: dict[str, float] | None, after: dict[str, float] | None,
                       workers_ms_per_visit: float | None, visits: int) -> dict[str, float]:
    """Milliseconds of worker CPU per visit in each role's handler (the rules, the rows, the
    table writes), their sum (`handlers`), and the rest of the workers' CPU (`outside`:
    Faust, the Kafka client, polling). Where the worker's time goes, in every run, without a
    profiler. Nothing when a worker did not answer at either end (`role_cpu_seconds`), or
    when any handler's time went down between them (a worker restarted): no split rather
    than a wrong one. (`before` may be empty: no handler had run yet.)"""
    if not visits or before is None or not after:
        return {}
    if any(after.get(role, 0.0) < spent for role, spent in before.items()):
        return {}
    per = {role: round((after[role] - before.get(role, 0.0)) * 1000 / visits, 3)
           for role in sorted(after)}
    per = {role: ms for role, ms in per.items() if ms > 0}
    per["handlers"] = round(sum(per.values()), 2)
    if workers_ms_per_visit is not None:
        per["outside"] = round(workers_ms_per_visit - per["handlers"], 2)
    return per


#: The hospitals' threads by what they do: the run's own loop, and the network threads of
#: their clients: librdkafka's C threads (`rdk:…`), which the requests producer and the
#: answers reader run (simulators/librdkafka.py) and which do not say whose they are, and
#: kafka-python's dead-letter consumer's `kafka-io-<client id>`. Any other thread is the
#: bench's own.
HOSPITAL_THREADS = {"MainThread": "loop", f"kafka-io-{DEAD_LETTERS_CLIENT}": "dead_letters"}
LIBRDKAFKA_THREAD_PREFIX, LIBRDKAFKA_THREADS = "rdk:", "librdkafka"


def thread_cpu_seconds() -> dict[str, float]:
    """This process's CPU seconds so far by thread (`HOSPITAL_THREADS`' names, `other` for the
    rest), from /proc/self/task: how the hospitals' CPU splits between their loop and their
    clients' network threads (docs/performance.md, finding 6)."""
    names = {t.native_id: HOSPITAL_THREADS.get(t.name) for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        if (name := names.get(int(task.name))) is None:  # none of the hospitals' Python threads
            try:
                comm = (task / "comm").read_text()
            except OSError:  # a thread that has ended
                comm = ""
            name = (LIBRDKAFKA_THREADS if comm.startswith(LIBRDKAFKA_THREAD_PREFIX)
                    else "other")
        out[name] = out.get(name, 0.0) + busy_seconds(task / "stat")
    return out
