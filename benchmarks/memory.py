"""Resident memory of the benchmark's processes (Linux /proc): the broker's, the workers' and
the hospitals', sampled while a rate runs, for the memory target."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of these processes now (Linux /proc), 0 for any that has gone."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines()
                       if line.startswith("VmRSS:")), 0)
    return total


class MemorySampler:
    """Samples each component's resident memory twice a second while a rate runs: the peak
    (the memory target is about the whole run, broker included), the first sample, and how
    fast each grew while the second half of the visits arrived — the growth per visit a
    longer run would add, without the one-off costs of starting up."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = {**pids, "hospitals": [os.getpid()]}
        self.t0 = time.monotonic()
        self.samples: list[tuple[float, dict[str, int]]] = []
        self._take()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _take(self) -> None:
        self.samples.append((time.monotonic() - self.t0,
                             {name: rss_bytes(pids) for name, pids in self.pids.items()}))

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self._take()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _mib(rss: dict[str, int]) -> dict[str, int]:
        out = {name: round(v / 2**20) for name, v in rss.items()}
        out["total"] = sum(out.values())
        return out

    def peak_mib(self) -> dict[str, int]:
        return self._mib({n: max(s[n] for _, s in self.samples) for n in self.pids})

    def start_mib(self) -> dict[str, int]:
        return self._mib(self.samples[0][1])

    def growth_kib_per_visit(self, rate: float, period: float) -> dict[str, float]:
        """KiB each component grew by per visit arriving in the second half of `period`
        (the seconds over which visits arrived at `rate`); empty for a period too short."""
        half = [(t, s) for t, s in self.samples if period / 2 <= t <= period]
        if len(half) < 2 or half[-1][0] - half[0][0] < 1.0:
            return {}
        (ta, a), (tb, b) = half[0], half[-1]
        visits = rate * (tb - ta)
        return {n: round((b[n] - a[n]) / 1024 / visits, 2) for n in self.pids}


def broker_pids(bootstrap: str, kind: str) -> list[int]:
    """The local broker's processes (none for an external cluster): this broker's own, by
    the port its command line names, not any other Kafka on the machine."""
    port = bootstrap.rsplit(":", 1)[-1]
    return pids_mentioning(f"server-{port}.properties" if kind == "kafka"
                           else f"tcp://127.0.0.1:{port}")


def pids_mentioning(text: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out
