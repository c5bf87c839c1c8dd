"""The platform huimin starts itself: its worker processes on one cluster, their data
folders, and what their web views say (the clearing, the ledger, the record totals)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from messages.topics import HOSP_REQUESTS
from simulators.world import WorldSpec
from streams.broker import free_port
from streams.config import FETCH_MIN_BYTES, FETCH_WAIT_MS, LINGER_MS, STORES, WorkerConfig
from streams.process import WorkerProcess, exit_reason
from streams.table_files import LOCK_FILE
from streams.topics import create_platform_topics, records_in, topic_problems, unfit_topics


class TopicsUnfit(Exception):
    """The cluster's topics cannot serve our platform: made earlier with another partition
    count (by `huimin topics`, an earlier run, or a broker that creates topics as asked)."""


def unfit(bootstrap: str, partitions: int, problems: list[str]) -> TopicsUnfit:
    return TopicsUnfit(f"{unfit_topics(bootstrap, partitions, problems)} Give --partitions of "
                       "the count the keyed topics were made with (by `huimin topics` or an "
                       "earlier run), or use a fresh cluster")


class PlatformNotServing(TimeoutError):
    """Our workers did not settle into one consumer group in time (their logs say why)."""


#: Written into each worker's data folder a new platform makes, so that a later one started in
#: the same folder empties only what huimin made there.
WORKER_DATA_MARK = ".huimin-worker-data"
#: How long the workers started may take to settle into one consumer group once the first
#: answers; those that build their world after it (more workers than cores) are given that
#: time besides (`simulators.world.worlds_build_s`).
SERVING_TIMEOUT_S = 90.0


def check_data_dir(data_dir: Path) -> None:
    """Refuse (FileExistsError) a `data_dir` a new worker may not take over: one huimin did
    not make (neither its mark nor Faust's `v1/` from before the mark), or one a running
    worker holds (another run into the same folder). Checked for every worker a run will
    start before it starts any, so that a `join-worker` fault's is not refused mid-run."""
    if data_dir.is_dir() and (data_dir / LOCK_FILE).is_file():
        with open(data_dir / LOCK_FILE) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FileExistsError(errno.EBUSY, "a running worker keeps its tables there "
                                      "(another run into the same folder?): give another "
                                      "--out", str(data_dir)) from None
    if data_dir.is_symlink() or (data_dir.exists() and not data_dir.is_dir()) or (
            data_dir.is_dir() and any(data_dir.iterdir())
            and not (data_dir / WORKER_DATA_MARK).is_file() and not (data_dir / "v1").is_dir()):
        raise FileExistsError(errno.EEXIST, "there is something there that is not a worker's "
                              "data folder huimin made: move it, or give another --out",
                              str(data_dir))


def fresh_data_dir(data_dir: Path) -> None:
    """Make `data_dir` an empty, marked worker data folder (`check_data_dir` first): what an
    earlier run left there is emptied."""
    check_data_dir(data_dir)
    if data_dir.is_dir():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    (data_dir / WORKER_DATA_MARK).touch()


class Platform:
    """Our platform's worker processes on one cluster (topics created first)."""

    def __init__(self, bootstrap: str, world: WorldSpec, partitions: int, out_dir: Path,
                 idempotent: bool = False, linger_ms: int = LINGER_MS,
                 fetch_wait_ms: int = FETCH_WAIT_MS, store: str = "memory",
                 fresh_tables: bool = True, fetch_min_bytes: int = FETCH_MIN_BYTES) -> None:
        self.fresh_tables = fresh_tables
        self.cfg = WorkerConfig(bootstrap=bootstrap, partitions=partitions, world=world,
                                idempotent=idempotent, linger_ms=linger_ms,
                                fetch_max_wait_ms=fetch_wait_ms,
                                fetch_min_bytes=fetch_min_bytes, store=STORES[store])
        self.out_dir = out_dir
        self.workers: list[WorkerProcess] = []
        create_platform_topics(bootstrap, partitions)
        if problems := topic_problems(bootstrap, partitions):
            raise unfit(bootstrap, partitions, problems)

    def add_worker(self) -> WorkerProcess:
        """Start one more worker in the consumer group (its own web port and data folder);
        the partitions are rebalanced across the workers. With `fresh_tables` (a new
        platform: run, replay, bench) a data folder an earlier run left in the same folder is
        emptied first: with `--store rocksdb` the worker would take up that run's tables and
        answer this run's requests as duplicates of its requests (it recovers its tables
        from the changelog topics instead)."""
        i = len(self.workers)
        data_dir = self.out_dir / f"worker-{i}-data"
        if self.fresh_tables:
            fresh_data_dir(data_dir)
        cfg = WorkerConfig(**{**self.cfg.to_dict(), "world": self.cfg.world,
                              "web_port": free_port(), "data_dir": str(data_dir)})
        worker = WorkerProcess(cfg, self.out_dir / f"worker-{i}.log").start()
        self.workers.append(worker)
        (self.out_dir / "workers.json").write_bytes(orjson.dumps([  # for a person
            {"worker": n, "web": f"http://127.0.0.1:{w.cfg.web_port}",
             "metrics": f"http://127.0.0.1:{w.cfg.web_port}/metrics"}
            for n, w in enumerate(self.workers)], option=orjson.OPT_INDENT_2))
        (self.out_dir / "targets.json").write_bytes(orjson.dumps([  # Prometheus file_sd
            {"targets": [f"127.0.0.1:{w.cfg.web_port}"],
             "labels": {"job": "huimin-workers", "worker": str(n)}}
            for n, w in enumerate(self.workers)], option=orjson.OPT_INDENT_2))
        return worker

    def gone(self) -> str | None:
        """Why the platform will not answer, if a worker has exited (a worker stops only
        when told to or on an error it cannot get over: a cluster refusing its producers);
        None while every worker runs."""
        for n, w in enumerate(self.workers):
            if (status := w.exited()) is not None:
                return exit_reason(f"worker {n}", status, w.log_path)
        return None

    def assignments(self) -> list[dict[str, Any] | None]:
        """Each worker's `/assignment/` (None while its web server is not up yet)."""
        out: list[dict[str, Any] | None] = []
        for w in self.workers:
            try:
                out.append(worker_json(w, "/assignment/", timeout_s=5))
            except (OSError, ValueError):
                out.append(None)
        return out

    def wait_until_serving(self, timeout_s: float = SERVING_TIMEOUT_S) -> float:
        """Wait until every worker started has joined the consumer group and the group has
        settled: one generation, the partitions of hosp.requests split among the workers, no
        rebalance under way. Otherwise a worker slow to start joins while the visits run — a
        rebalance no one asked for (docs/streams.md). Returns the seconds waited."""
        start = time.monotonic()
        while True:
            seen = self.assignments()
            served = sorted(p for a in seen if a for p in a["partitions"])
            if all(a and not a["rebalancing"] for a in seen) and \
                    len({a["generation"] for a in seen if a}) == 1 and \
                    served == list(range(self.cfg.partitions)):
                return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                logs = ", ".join(str(w.log_path) for w in self.workers)
                raise PlatformNotServing(
                    f"the {len(self.workers)} workers did not settle into one consumer group "
                    f"within {timeout_s:.0f} s (their logs: {logs}): {seen}")
            time.sleep(0.2)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to every worker first, then wait for them (SIGKILL past `timeout`): an
        interrupt while waiting (a second Ctrl-C) kills the rest, rather than leaving a worker
        that never heard it was to stop."""
        for w in self.workers:
            w.terminate()
        deadline = time.monotonic() + timeout
        try:
            for w in self.workers:
                w.wait_or_kill(max(0.0, deadline - time.monotonic()))
        except BaseException:
            for w in self.workers:
                w.kill()
            raise


@contextlib.contextmanager
def platform(bootstrap: str, world: WorldSpec, partitions: int, out_dir: Path,
             workers: int = 1, idempotent: bool = False,
             linger_ms: int = LINGER_MS, fetch_wait_ms: int = FETCH_WAIT_MS,
             store: str = "memory", fresh_tables: bool = True,
             fetch_min_bytes: int = FETCH_MIN_BYTES) -> Iterator[Platform]:
    """`workers` platform worker processes running; all stopped on exit. `store`: where they
    keep their tables (`memory` or `rocksdb`); `fresh_tables`: see `Platform.add_worker`."""
    p = Platform(bootstrap, world, partitions, out_dir, idempotent, linger_ms, fetch_wait_ms,
                 store, fresh_tables, fetch_min_bytes)
    try:
        for _ in range(workers):
            p.add_worker()
        yield p
    finally:
        p.stop()


class UsedCluster(Exception):
    """Our platform would start on a cluster an earlier run used: its workers would meet that
    run's persons and answers (in the changelogs and the consumer group's offsets)."""


def check_fresh(bootstrap: str, client_config: dict | None = None,
                partitions: int | None = None) -> None:
    """A cluster our platform may start on: none of an earlier run's requests, then (given
    `partitions`) none of its topics made with another count, refused before anything is
    written (topics missing are made later)."""
    held = records_in(bootstrap, HOSP_REQUESTS, client_config)
    if held:
        raise UsedCluster(
            f"the cluster at {bootstrap} already holds {held:,} hospital requests of an "
            "earlier run, and our platform needs a fresh one: use a new cluster, or delete "
            "the topics of docs/wire.md, the huimin-*-changelog topics and the consumer group "
            "huimin (or, to drive a platform already running there, `huimin replay "
            "--bootstrap`)")
    if partitions is not None and (problems := [
            p for p in topic_problems(bootstrap, partitions, client_config, wait_s=0)
            if not p.startswith("missing:")]):
        raise unfit(bootstrap, partitions, problems)


def worker_json(worker: WorkerProcess, path: str, timeout_s: float) -> Any:
    """GET `path` from a worker's web views, as JSON; OSError (not answering, or an HTTP
    error) or ValueError (not JSON) otherwise."""
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.cfg.web_port}{path}",
                                timeout=timeout_s) as r:
        return orjson.loads(r.read())


def summed_view(ours: Platform, path: str, attempts: int = 3) -> dict[str, int] | None:
    """GET `path` (JSON totals) from every worker, summed: each holds its partitions. None
    if a worker does not answer."""
    totals: dict[str, int] = {}
    for worker in ours.workers:
        for attempt in range(attempts):
            try:
                body = worker_json(worker, path, timeout_s=10)
                break
            except (OSError, ValueError):
                if attempt == attempts - 1:
                    return None
                time.sleep(1.0)
        for k, v in body.items():
            totals[k] = totals.get(k, 0) + v
    return totals


def national_view(ours: Platform, path: str, wait_s: float = 0.0) -> Any:
    """GET `path` (JSON) from the worker that holds the national clearing table, the only
    one that serves it; None if none does (a rebalance under way) within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        for worker in ours.workers:
            try:
                return worker_json(worker, path, timeout_s=5)
            except (OSError, ValueError):  # another worker's 503, or one not answering
                continue
        if time.monotonic() >= deadline:
            return None
        time.sleep(1.0)


def clearing_statements(ours: Platform, expected: list[dict[str, Any]] | None,
                        timeout_s: float = 15.0) -> list[dict[str, Any]] | None:
    """GET /clearing/ from our workers until the statements settle (or equal `expected`):
    the money events trail the hospitals' last answers by a few hops."""
    deadline = time.monotonic() + timeout_s
    last: list[dict[str, Any]] | None = None
    while time.monotonic() < deadline:
        body = national_view(ours, "/clearing/")
        seen = body["statements"] if body and body["events"] else None
        if seen is not None and seen in (expected, last):
            return seen
        last = seen
        time.sleep(1.0)
    return last



