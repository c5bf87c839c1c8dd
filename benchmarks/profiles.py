"""Where the time goes while a rate runs: py-spy samples the workers and the hospitals
(`huimin bench --profile`), and each gets a summary in the report beside its raw stacks.

py-spy reads a process's stacks from outside (ptrace), in its own process, with
`--nonblocking` so that the profiled process is never paused: what it costs the machine is
py-spy's own CPU, not a slower worker. It keeps only samples of a thread holding the GIL
(`--gil`): a thread waiting in epoll or on a lock has let it go, so what is left is where the
process's Python runs, not where it waits. The raw files are collapsed stacks, one line per
distinct stack with its sample count, which flamegraph.pl, inferno and speedscope read."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from streams.process import allow_profilers

log = logging.getLogger(__name__)

#: Samples a second per process: enough for a 30-second rate, light on two cores.
SAMPLE_HZ = 100
TOP = 12
#: Frames in at least this share of a thread's samples are its trunk.
TRUNK_SHARE = 0.8


def py_spy() -> str | None:
    """py-spy beside this interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiles:
    """py-spy on each process of `pids` ({component: [pid, ...]}) while the block runs, each
    writing `<component>-<pid>.txt` into `out_dir`. A process py-spy cannot attach to (no
    ptrace permission, as in a container without SYS_PTRACE) is logged and left out: the
    benchmark goes on without its profile."""

    def __init__(self, pids: dict[str, list[int]], out_dir: Path) -> None:
        self.out_dir = out_dir
        self.files = {(name, pid): out_dir / f"{name}-{pid}.txt"
                      for name, group in pids.items() for pid in group}
        self._running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def __enter__(self) -> Profiles:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed: pip install py-spy "
                               "(huimin's dev extras include it)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        allow_profilers()  # the hospitals: this process, py-spy's parent
        for (_, pid), path in self.files.items():
            with path.with_suffix(".log").open("wb") as errors:
                self._running.append((subprocess.Popen(
                    [binary, "record", "--pid", str(pid), "--format", "raw", "--threads",
                     "--gil", "--nonblocking", "--rate", str(SAMPLE_HZ), "--output", str(path)],
                    stdout=subprocess.DEVNULL, stderr=errors), path))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc, _ in self._running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        for proc, path in self._running:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if not path.exists():
                said = path.with_suffix(".log").read_text(errors="replace").strip()
                log.warning("no profile of %s: %s", path.stem, said.splitlines()[-1] if said
                            else f"py-spy ended with status {proc.returncode}")

    def summaries(self) -> dict[str, dict[str, Any]]:
        """Each component's summary (`summarise`), its processes' samples pooled."""
        stacks: dict[str, Counter[str]] = {}
        for (name, _), path in self.files.items():
            if path.exists():
                stacks.setdefault(name, Counter()).update(read_stacks(path))
        return {name: summarise(found) for name, found in stacks.items() if found}


def read_stacks(path: Path) -> Counter[str]:
    """py-spy's raw output: `frame;frame;... count` per line."""
    out: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out[stack] += int(count)
    return out


def _function(frame: str) -> str:
    """`name (path:line)` → `name (path)`, the path from its package on: one function, however
    many lines of it were sampled."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def summarise(stacks: Counter[str], top: int = TOP) -> dict[str, Any]:
    """Shares of the samples: by thread; by the function the sample was in (self); and by the
    functions it was under (inclusive), each thread's trunk left out: the frames nearly all of
    its samples share (the module, the worker's start, the hospitals' loop), which say nothing
    of where its time goes. Not every sample has them all: a stack read without pausing the
    process is sometimes cut short."""
    total = sum(stacks.values())
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    by_thread: dict[str, list[tuple[list[str], int]]] = {}
    for stack, n in stacks.items():
        thread, *frames = stack.split(";")
        name = thread.split(": ", 1)[-1]
        threads[name] += n
        functions = [_function(f) for f in frames]
        if functions:
            own[functions[-1]] += n
        by_thread.setdefault(name, []).append((functions, n))
    under: Counter[str] = Counter()
    for samples in by_thread.values():
        trunk = _trunk(samples)
        for functions, n in samples:
            for function in set(functions) - trunk:
                under[function] += n

    def shares(counts: Counter[str]) -> list[list[Any]]:
        return [[name, round(n / total, 3)] for name, n in counts.most_common(top)]

    return {"samples": total, "threads": shares(threads), "self": shares(own),
            "inclusive": shares(under)}


def _trunk(samples: list[tuple[list[str], int]]) -> set[str]:
    """A thread's trunk: from the bottom frame most of its samples start at (stacks cut short
    start elsewhere), each next frame while at least `TRUNK_SHARE` of the samples that reached
    the one before go through it to frames above it. A frame samples end in is where time
    goes, not the trunk."""
    trunk: set[str] = set()
    depth = 0
    while True:
        reached = sum(n for _, n in samples)
        below: Counter[str] = Counter()
        for functions, n in samples:
            if len(functions) > depth + 1:
                below[functions[depth]] += n
        if not below:
            return trunk
        frame, through = below.most_common(1)[0]
        if depth and through < TRUNK_SHARE * reached:
            return trunk
        trunk.add(frame)
        samples = [(functions, n) for functions, n in samples
                   if len(functions) > depth and functions[depth] == frame]
        depth += 1


def can_attach() -> str | None:
    """None if py-spy can read this process's stacks, else why not (for tests to skip on)."""
    binary = py_spy()
    if binary is None:
        return "py-spy is not installed"
    proc = subprocess.run([binary, "dump", "--pid", str(os.getpid())], capture_output=True,
                          text=True, timeout=60)
    return None if proc.returncode == 0 else (proc.stderr.strip() or "py-spy dump failed")
