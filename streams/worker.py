"""Run one platform worker process: `python -m streams.worker CONFIG_JSON`."""

from __future__ import annotations

import contextlib
import gc
import logging
import sys

import mode.loop
import orjson
from faust.worker import Worker

from streams.app import create_app
from streams.config import WorkerConfig


def run_worker(cfg: WorkerConfig, loglevel: str = "info") -> None:
    """Our own lines at `loglevel`; Faust and the Kafka clients only from warnings up.
    uvloop, when installed, runs the event loops (the worker's and its consumer thread's)."""
    with contextlib.suppress(ImportError):
        mode.loop.use("uvloop")
    app = create_app(cfg)
    gc.freeze()  # the world (a million persons, if asked) is never garbage: keep it out of GC
    for noisy in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    cfg = WorkerConfig.from_dict(orjson.loads(args[0]))
    run_worker(cfg, loglevel=args[1] if len(args) > 1 else "info")


if __name__ == "__main__":
    main()
