"""Run one platform worker process: `python -m streams.worker CONFIG_JSON`."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
from pathlib import Path

import mode.loop
import orjson
from faust.worker import Worker

from streams import lost_writes
from streams.app import create_app
from streams.config import WorkerConfig
from streams.process import PROFILABLE_ENV, allow_profilers
from streams.table_files import discard_after_unclean_stop, mark_clean_stop

log = logging.getLogger("huimin.streams")


def run_worker(cfg: WorkerConfig, loglevel: str = "info") -> None:
    """Our own lines at `loglevel`; Faust and the Kafka clients only from warnings up.
    uvloop, when installed, runs the event loops (the worker's and its consumer thread's).
    RocksDB table files are kept from one run to the next only across a clean stop
    (streams/table_files.py). A write the cluster did not take ends the process with exit 75
    (streams/lost_writes.py)."""
    with contextlib.suppress(ImportError):
        mode.loop.use("uvloop")
    if os.environ.get(PROFILABLE_ENV):
        allow_profilers()
    lost_writes.install()
    app = create_app(cfg)
    gc.freeze()  # the world (a million persons, if asked) is never garbage: keep it out of GC
    for noisy in ("faust", "mode", "aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    worker = Worker(app, loglevel=loglevel, quiet=True)
    tables = Path(app.conf.tabledir) if cfg.store.startswith("rocksdb") else None
    if tables is not None and (discarded := discard_after_unclean_stop(tables)):
        log.warning("the last run of this worker did not stop cleanly: rebuilding its tables "
                    "from their changelogs instead of trusting %d table files", len(discarded))
    try:
        worker.execute_from_commandline()
    except SystemExit as stop:
        if tables is not None and stop.code in (0, None):
            mark_clean_stop(tables)
        raise


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    cfg = WorkerConfig.from_dict(orjson.loads(args[0]))
    run_worker(cfg, loglevel=args[1] if len(args) > 1 else "info")


if __name__ == "__main__":
    main()
