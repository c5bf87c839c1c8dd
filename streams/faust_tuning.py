"""Faust settings that matter on a Kafka-protocol broker such as Tansu, idempotent
producers where the broker offers them (Apache Kafka; Tansu does not), and the RocksDB
settings Faust does not pass on.

Faust hard-codes `fetch_max_wait_ms=1500` for its worker consumer. Tansu (like Kafka) holds an
empty fetch that long, which adds up to 1.5 s per hop on a quiet partition (Kafka answers as
soon as data arrives; Tansu does not: streams/config.py). It has no setting for the fetch's
least size either. aiokafka reads both attributes only when the consumer starts, so setting
them on the freshly built consumer is enough.
"""

from __future__ import annotations

from typing import Any

import rocksdict
from faust.stores import rocksdb as faust_rocksdb
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.config import (
    FETCH_MIN_BYTES,
    FETCH_WAIT_MS,
    ROCKSDB_BLOCK_CACHE_TOTAL,
    ROCKSDB_WRITE_BUFFERS_TOTAL,
)

_original = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
_fetch_max_wait_ms = FETCH_WAIT_MS
_fetch_min_bytes = FETCH_MIN_BYTES


def _create_worker_consumer(self: faust_aiokafka.AIOKafkaConsumerThread,
                            transport: Any) -> Any:
    consumer = _original(self, transport)
    consumer._fetch_max_wait_ms = _fetch_max_wait_ms
    consumer._fetch_min_bytes = _fetch_min_bytes
    return consumer


def set_worker_fetch(max_wait_ms: int, min_bytes: int = FETCH_MIN_BYTES) -> None:
    """How long the worker's fetches wait, and for how much data at least."""
    global _fetch_max_wait_ms, _fetch_min_bytes
    _fetch_max_wait_ms, _fetch_min_bytes = max_wait_ms, min_bytes
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = (  # type: ignore[method-assign]
        _create_worker_consumer)


_original_extra = faust_aiokafka.Producer._settings_extra


def _idempotent_extra(self: faust_aiokafka.Producer) -> dict[str, Any]:
    return {**_original_extra(self), "acks": "all", "enable_idempotence": True}


def set_idempotent_producer(enabled: bool) -> None:
    """Faust enables idempotence only inside transactions (exactly_once); we want it for
    at-least-once too, so a producer retry never writes a message twice."""
    faust_aiokafka.Producer._settings_extra = (  # type: ignore[method-assign]
        _idempotent_extra if enabled else _original_extra)


#: RocksDB options Faust's rocksdict driver drops (it keeps them in `extra_options` and builds
#: its options from a fixed few); each is applied by rocksdict's `set_<name>`.
_ROCKSDB_EXTRA = ("level_zero_file_num_compaction_trigger", "max_bytes_for_level_base")
_original_as_options = faust_rocksdb.RocksDBOptions.as_options
_write_buffers: Any = None
_block_cache: Any = None


def _shared_cache_table(options: Any) -> Any:
    """Faust's table format (bloom filter, binary-search index) read through the process's
    one block cache instead of a cache of its own per partition."""
    table = rocksdict.BlockBasedOptions()
    table.set_bloom_filter(options.bloom_filter_size, block_based=True)
    table.set_block_cache(_block_cache)
    table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
    return table


def _as_options(self: faust_rocksdb.RocksDBOptions) -> Any:
    options = _original_as_options(self)
    if self.use_rocksdict:
        for key in _ROCKSDB_EXTRA:
            if key in self.extra_options:
                getattr(options, f"set_{key}")(self.extra_options[key])
        options.set_write_buffer_manager(_write_buffers)
        options.set_block_based_table_factory(_shared_cache_table(self))
    return options


_original_open = faust_rocksdb.RocksDBOptions.open


def _open_without_wal(self: faust_rocksdb.RocksDBOptions, path: Any, *,
                      read_only: bool = False) -> Any:
    """A table partition written without RocksDB's write-ahead log. The changelog is the
    table's log: after a crash the worker rebuilds its files from the changelogs anyway
    (streams/table_files.py), and an unlogged write lost in a stop that did not close the
    file leaves an earlier state whose remembered changelog offset is earlier too, so the
    worker reads the rest from the changelog. The log's write per row was half of each put's
    CPU (docs/performance.md)."""
    db = _original_open(self, path, read_only=read_only)
    if self.use_rocksdict:
        unlogged = rocksdict.WriteOptions()
        unlogged.disable_wal = True  # type: ignore[method-assign,assignment]  # a setter
        db.set_write_options(unlogged)
    return db


def set_rocksdb_tuning() -> None:
    """Apply the compaction settings of streams/config.py's ROCKSDB_OPTIONS, share one write
    buffer budget and one block cache among all of this process's table partitions, and
    write the tables without a write-ahead log."""
    global _write_buffers, _block_cache
    if _write_buffers is None:
        _write_buffers = rocksdict.WriteBufferManager(ROCKSDB_WRITE_BUFFERS_TOTAL, False)
        _block_cache = rocksdict.Cache(ROCKSDB_BLOCK_CACHE_TOTAL)
    faust_rocksdb.RocksDBOptions.as_options = _as_options  # type: ignore[method-assign]
    faust_rocksdb.RocksDBOptions.open = _open_without_wal  # type: ignore[method-assign]
