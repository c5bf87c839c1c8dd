"""Whether a worker may trust its RocksDB table files when it starts.

Faust writes a table change to the local RocksDB file at once and to the table's changelog
topic a moment later. A worker killed in between (SIGKILL, power loss, out of memory) leaves a
file that holds changes its changelog never got, and the messages that made them are
delivered again because their offsets were not committed either. The platform's roles
recognise a redelivered message by what the table already holds (a settlement already on the
person's row, a money event already in the clearing table) and so write nothing the second
time: the change would stay in this worker's file and be missing from the changelog, and the
worker that takes the partition over next rebuilds the table without it (seen: a settlement
missing from the national clearing table after a kill and a rebalance).

So a worker trusts its files only when its last run stopped cleanly, which it marks on the
way out; otherwise it deletes them and rebuilds its tables from the changelogs, which are the
source of truth (the memory store always does). Kafka Streams does the same with exactly-once:
no checkpoint file after a crash, the local store is wiped."""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path
from typing import IO

#: Written in the tables folder by a worker that stopped cleanly, removed when one starts.
CLEAN_STOP_MARK = "clean-stop"
#: Held locked in a worker's data folder while it runs.
LOCK_FILE = ".huimin-worker.lock"


class DataFolderInUse(RuntimeError):
    """Another running worker keeps its table files in this data folder."""


def hold_data_folder(folder: Path) -> IO[str]:
    """Lock `folder` for this worker's life (the lock goes with the process, however it
    ends). A second worker given the same folder would find the first's files not marked
    clean and delete them under it: it is refused instead."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a")  # noqa: SIM115 (held open until the process ends)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataFolderInUse(f"another running worker keeps its tables in {folder}: give "
                              "each worker a --data-dir of its own") from None
    return handle


def discard_after_unclean_stop(tables: Path) -> list[str]:
    """At a worker's start: the table files deleted (none if its last run stopped cleanly or
    it has none). The mark is removed either way, so that a crash of this run leaves none."""
    mark = tables / CLEAN_STOP_MARK
    clean = mark.exists()
    mark.unlink(missing_ok=True)
    if clean:
        return []
    files = sorted(p for p in tables.glob("*.db") if p.is_dir())
    for db in files:
        shutil.rmtree(db)
    return [db.name for db in files]


def mark_clean_stop(tables: Path) -> None:
    """At a worker's clean exit, after Faust has flushed every changelog write and committed."""
    tables.mkdir(parents=True, exist_ok=True)
    (tables / CLEAN_STOP_MARK).touch()
