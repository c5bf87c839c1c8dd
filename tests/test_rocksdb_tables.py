"""The RocksDB settings of a worker's tables reach RocksDB itself: Faust's rocksdict driver
drops every option but a fixed few, and the compaction settings are what keep a long run's
worker from falling behind (streams/config.py, docs/performance.md)."""

from __future__ import annotations

import re
from pathlib import Path

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from streams import faust_tuning
from streams.config import ROCKSDB_OPTIONS, ROCKSDB_WRITE_BUFFERS_TOTAL, table_options


def _written_options(db_dir: Path) -> dict[str, str]:
    """What RocksDB wrote down as the options it opened the database with."""
    text = max(db_dir.glob("OPTIONS-*")).read_text()
    return dict(re.findall(r"^\s*(\w+)=(.*)$", text, re.M))


def test_a_rocksdb_table_partition_opens_with_our_compaction_settings_and_shared_budget(
        tmp_path: Path):
    faust_tuning.set_rocksdb_tuning()
    budget = faust_tuning._write_buffers
    options = table_options("rocksdb://")["options"]
    db = RocksDBOptions(**options, use_rocksdict=True).open(tmp_path / "trt_persons-0.db")
    for i in range(100):
        db[f"{i:018d}".encode()] = b"x" * 1000
    assert budget.get_buffer_size() == ROCKSDB_WRITE_BUFFERS_TOTAL
    assert budget.get_usage() >= 100 * 1000  # the partition's buffer is counted in it
    db.close()
    found = _written_options(tmp_path / "trt_persons-0.db")
    assert int(found["write_buffer_size"]) == ROCKSDB_OPTIONS["write_buffer_size"] == 16 * 2**20
    assert int(found["level0_file_num_compaction_trigger"]) == 8
    assert int(found["max_bytes_for_level_base"]) == 32 * 2**20


def test_faust_alone_would_drop_the_compaction_settings(tmp_path: Path):
    """Why the patch exists: RocksDB's defaults are 4 and 256 MiB."""
    unpatched = faust_tuning._original_as_options(
        RocksDBOptions(**table_options("rocksdb://")["options"], use_rocksdict=True))
    rocksdict.Rdict(str(tmp_path / "db"), options=unpatched).close()
    found = _written_options(tmp_path / "db")
    assert int(found["level0_file_num_compaction_trigger"]) == 4
    assert int(found["max_bytes_for_level_base"]) == 256 * 2**20


def test_a_workers_table_partitions_read_through_one_shared_block_cache(tmp_path: Path):
    faust_tuning.set_rocksdb_tuning()
    cache = faust_tuning._block_cache
    before = cache.get_usage()
    options = table_options("rocksdb://")["options"]
    dbs = [RocksDBOptions(**options, use_rocksdict=True).open(tmp_path / f"trt_persons-{p}.db")
           for p in range(2)]
    for db in dbs:
        for i in range(1000):
            db[f"{i:018d}".encode()] = b"x" * 1000
        db.flush()  # to a table file, whose blocks are then read through the block cache
        assert all(db[f"{i:018d}".encode()] == b"x" * 1000 for i in range(1000))
    # Both partitions' blocks are in the one cache: ~2 MB, more than either holds alone.
    assert cache.get_usage() - before > 1.5 * 1000 * 1000
    for db in dbs:
        db.close()


def test_a_table_partition_writes_no_write_ahead_log_and_keeps_its_rows_over_a_close(
        tmp_path: Path):
    faust_tuning.set_rocksdb_tuning()
    options = RocksDBOptions(**table_options("rocksdb://")["options"], use_rocksdict=True)
    db = options.open(tmp_path / "trt_persons-0.db")
    for i in range(100):
        db[f"{i:018d}".encode()] = b"x" * 1000
    assert sum(f.stat().st_size for f in (tmp_path / "trt_persons-0.db").glob("*.log")) == 0
    db.close()  # a clean close writes the unlogged rows to a table file
    db = options.open(tmp_path / "trt_persons-0.db")
    assert all(db[f"{i:018d}".encode()] == b"x" * 1000 for i in range(100))
    db.close()
