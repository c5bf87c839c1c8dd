"""A fetched batch with a header key that is not UTF-8 is read whole, in order, by the
worker's fetcher (streams/tolerant_records.py), where aiokafka's reader raised: over the
broker, tests/test_e2e_operations.py sends such a request."""

from __future__ import annotations

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from streams.tolerant_records import TolerantMemoryRecords, _FastMemoryRecords

ODD = "\u00ff"  # UTF-8 c3 bf, replaced below by ff fe: two bytes that are not UTF-8


def fetched(*batches: list[str]) -> bytes:
    """Batches of records whose header keys are given, then the odd key's bytes spoiled."""
    raw = b""
    offset = 0
    for keys in batches:
        builder = DefaultRecordBatchBuilder(
            magic=2, compression_type=0, is_transactional=0, producer_id=-1,
            producer_epoch=-1, base_sequence=-1, batch_size=1_000_000)
        for i, key in enumerate(keys):
            builder.append(i, timestamp=1_000 + i, key=b"k%d" % (offset + i),
                           value=b"v%d" % (offset + i), headers=[(key, b"h")])
        built = bytearray(builder.build())
        built[0:8] = offset.to_bytes(8, "big")  # the batch's base offset
        raw += bytes(built)
        offset += len(keys)
    return raw.replace(ODD.encode(), b"\xff\xfe")


def read(records: object) -> list[tuple[int, bytes, str]]:
    out = []
    while records.has_next():  # type: ignore[attr-defined]
        for record in records.next_batch():  # type: ignore[attr-defined]
            out.append((record.offset, record.value, record.headers[0][0]))
    return out


def test_aiokafka_alone_fails_on_such_a_batch():
    with pytest.raises(UnicodeDecodeError):
        read(_FastMemoryRecords(fetched(["ok", ODD, "ok"])))


def test_every_record_comes_through_once_in_order_with_the_key_replaced():
    raw = fetched(["ok", ODD, "ok"], ["ok", "ok"])
    assert read(TolerantMemoryRecords(raw)) == [
        (0, b"v0", "ok"), (1, b"v1", "\ufffd\ufffd"), (2, b"v2", "ok"),
        (3, b"v3", "ok"), (4, b"v4", "ok")]


def test_a_batch_without_odd_keys_is_read_as_aiokafka_reads_it():
    raw = fetched(["ok", "ok"], ["ok"])
    assert read(TolerantMemoryRecords(raw)) == read(_FastMemoryRecords(raw))
