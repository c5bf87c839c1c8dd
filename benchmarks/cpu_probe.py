"""How fast the machine's cores run while a rate runs, measured beside it.

A virtual machine's cores do not run at one speed: on the 2-vCPU machine of
docs/performance.md a plain Python loop took 11 ms in one second and 19 ms in the next, and
whole hours ran slower than others. A figure measured in a slow stretch is not comparable with
one from a fast stretch, so each rate (and each rate of the raw ceiling) records the median
time of a fixed loop, run twice a second by a process of its own (not a thread of the
hospitals', whose timings it would delay), timed in CPU time so that waiting for a busy core
does not count. Its own cost is ~1 % of a core.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time

#: The loop timed: a million additions, reported in ms (a fifth of them, times five).
LOOP = 200_000
SCALE = 1_000_000 / LOOP
INTERVAL_S = 0.5


def main() -> None:
    """`python -m benchmarks.cpu_probe`: one timing a line, in ms, until stopped."""
    while True:
        t0 = time.process_time()
        sum(range(LOOP))
        print(f"{(time.process_time() - t0) * 1000 * SCALE:.2f}", flush=True)
        time.sleep(INTERVAL_S)


class CpuProbe:
    """Runs the probe while in its `with` block; `median_ms()` is what it measured."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                self.samples.append(float(line))
            except ValueError:
                continue

    def __enter__(self) -> CpuProbe:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.cpu_probe"], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None and self._reader is not None
        self._process.terminate()
        self._process.wait()
        self._reader.join(timeout=5)

    def median_ms(self) -> float | None:
        """The median time of a million additions in ms; None if nothing was measured."""
        return round(statistics.median(self.samples), 2) if self.samples else None


if __name__ == "__main__":
    main()  # stopped by SIGTERM
