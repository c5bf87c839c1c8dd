"""Run one platform worker process: `python -m streams.worker CONFIG_JSON`."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import mode.loop
import orjson
from faust.worker import Worker

from streams import lost_writes, metadata_backoff, thread_exits
from streams.app import create_app
from streams.config import WorkerConfig
from streams.log_repeats import hold_back_repeats
from streams.process import PROFILABLE_ENV, allow_profilers
from streams.table_files import (
    DataFolderInUse,
    discard_after_unclean_stop,
    hold_data_folder,
    mark_clean_stop,
)
from streams.web_log import log_web_errors_unquoted

log = logging.getLogger("huimin.streams")

#: Seconds a stop may take before the worker ends without finishing it. A clean stop takes a
#: few seconds; with the cluster gone, Faust's waits for it add up to over a minute and a half.
STOP_GRACE_S = 30.0


class PlatformWorker(Worker):
    """Faust's worker, whose stop is bounded: a second SIGINT/SIGTERM, or STOP_GRACE_S after
    the first, ends the process at once (exit 1). Nothing is lost by it: offsets not
    committed are redelivered and judged by their rows, and RocksDB table files not marked
    clean are rebuilt from their changelogs (streams/table_files.py)."""

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if self._signal_stop_time:
            _stop_now(f"{signal.name} again while stopping")
        timer = threading.Timer(STOP_GRACE_S, _stop_now,
                                [f"still stopping after {STOP_GRACE_S:.0f} s (is the cluster "
                                 "reachable?)"])
        timer.daemon = True
        timer.start()
        log.info("%s: stopping (committing what was processed, closing the tables)",
                 signal.name)
        super()._schedule_shutdown(signal)


def _stop_now(why: str) -> None:
    log.warning("%s: stopping now, without a clean stop (table files are rebuilt from their "
                "changelogs next time)", why)
    logging.shutdown()
    os._exit(1)


def run_worker(cfg: WorkerConfig, loglevel: str = "info") -> None:
    """Our own lines at `loglevel`; Faust and the Kafka clients only from warnings up, a
    line they repeat at most once in 10 s (streams/log_repeats.py).
    uvloop, when installed, runs the event loops (the worker's and its consumer thread's).
    RocksDB table files are kept from one run to the next only across a clean stop
    (streams/table_files.py). A write the cluster did not take ends the process with exit 75
    (streams/lost_writes.py). A thread that ends with an exception is one line, not a
    traceback (streams/thread_exits.py). A failed metadata update backs off before the next
    (streams/metadata_backoff.py): a cluster gone took a whole core."""
    with contextlib.suppress(ImportError):
        mode.loop.use("uvloop")
    if os.environ.get(PROFILABLE_ENV):
        allow_profilers()
    lost_writes.install()
    thread_exits.install()
    metadata_backoff.install()
    if cfg.store.startswith("rocksdb"):
        held = hold_data_folder(Path(cfg.data_dir))  # noqa: F841 (the lock lives with it)
    app = create_app(cfg)
    gc.freeze()  # the world (a million persons, if asked) is never garbage: keep it out of GC
    noisy = ("faust", "mode", "aiokafka", "kafka")
    for name in noisy:
        logging.getLogger(name).setLevel(logging.WARNING)
    hold_back_repeats(noisy)  # a cluster down: each failed connection, a line
    log_web_errors_unquoted()  # a URL too long was logged, a citizen ID number in it
    worker = PlatformWorker(app, loglevel=loglevel, quiet=True)
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
    try:
        run_worker(cfg, loglevel=args[1] if len(args) > 1 else "info")
    except DataFolderInUse as exc:
        log.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
