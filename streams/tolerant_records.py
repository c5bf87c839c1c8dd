"""Records whose header keys are not UTF-8 read as records, not as a crash.

Kafka's protocol says a header key is a UTF-8 string, but a client may write any bytes there
(librdkafka and sarama do as they are told). aiokafka decodes header keys strictly while it
unpacks a fetched batch, so one such record raised UnicodeDecodeError in the worker's fetcher:
the worker crashed, and crashed again on every restart, since the record's offset was never
committed (a poison pill that stops the whole platform). With this module installed, the
fetcher still unpacks every batch with aiokafka's fast (Cython) reader; only a batch that
reader fails on is read again with aiokafka's own Python reader, header keys decoded with
U+FFFD for what is not UTF-8, from the record after the last one already handed over. The
record then reaches its role like any other, and a hospital's request with such a header is
judged by its signature and content as usual (an unknown header changes nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiokafka.consumer.fetcher as fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import _DefaultRecordBatchPy, _DefaultRecordPy
from aiokafka.record.util import decode_varint

#: A batch's framing in every message format: base offset (8 bytes), then its length (4).
_LENGTH_AT, _LOG_OVERHEAD = 8, 12


class _LenientBatch(_DefaultRecordBatchPy):
    """aiokafka's Python batch reader, but a header key that is not UTF-8 is decoded with
    replacement characters instead of raising. (`_read_msg` as in aiokafka 0.14, but for
    the `errors="replace"`.)"""

    _buffer: bytes
    _pos: int

    def _read_msg(self, decode_varint: Any = decode_varint) -> _DefaultRecordPy:
        buffer = self._buffer
        pos = self._pos
        length, pos = decode_varint(buffer, pos)
        start_pos = pos
        _, pos = decode_varint(buffer, pos)
        ts_delta, pos = decode_varint(buffer, pos)
        timestamp = self.max_timestamp if self.timestamp_type == self.LOG_APPEND_TIME \
            else self.first_timestamp + ts_delta
        offset_delta, pos = decode_varint(buffer, pos)
        key_len, pos = decode_varint(buffer, pos)
        key = None
        if key_len >= 0:
            key, pos = bytes(buffer[pos:pos + key_len]), pos + key_len
        value_len, pos = decode_varint(buffer, pos)
        value = None
        if value_len >= 0:
            value, pos = bytes(buffer[pos:pos + value_len]), pos + value_len
        header_count, pos = decode_varint(buffer, pos)
        if header_count < 0:
            raise CorruptRecordException(f"invalid number of record headers {header_count}")
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            h_key_len, pos = decode_varint(buffer, pos)
            if h_key_len < 0:
                raise CorruptRecordException(f"invalid negative header key size {h_key_len}")
            h_key = bytes(buffer[pos:pos + h_key_len]).decode("utf-8", errors="replace")
            pos += h_key_len
            h_value_len, pos = decode_varint(buffer, pos)
            h_value = None
            if h_value_len >= 0:
                h_value, pos = bytes(buffer[pos:pos + h_value_len]), pos + h_value_len
            headers.append((h_key, h_value))
        if pos - start_pos != length:
            raise CorruptRecordException(f"invalid record size: expected {length} bytes, "
                                         f"read {pos - start_pos}")
        self._pos = pos
        return _DefaultRecordPy(self.base_offset + offset_delta, timestamp,
                                self.timestamp_type, key, value, headers)


class _Batch:
    """A batch as the fast reader gives it (every attribute the fetcher asks for), iterated
    through the lenient reader from where the fast one failed on a header key."""

    def __init__(self, fast: Any, raw: memoryview) -> None:
        self._fast = fast
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fast, name)

    def __next__(self) -> Any:  # the fetcher reads a control batch's one record so
        return next(self._fast)

    def __iter__(self) -> Iterator[Any]:
        last = None
        try:
            for record in self._fast:
                last = record.offset
                yield record
            return
        except UnicodeDecodeError:
            pass  # a header key the fast reader would not decode: read on leniently
        for record in _LenientBatch(self._raw):
            if last is None or record.offset > last:
                yield record


class TolerantMemoryRecords:
    """aiokafka's MemoryRecords (the fast reader) over a fetched partition's bytes, with each
    batch's bytes at hand for the lenient reader."""

    def __init__(self, raw: bytes) -> None:
        self._fast = _FastMemoryRecords(raw)
        self._raw = memoryview(raw)
        self._pos = 0

    def size_in_bytes(self) -> int:
        return int(self._fast.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._fast.has_next())

    def next_batch(self) -> Any:
        fast = self._fast.next_batch()
        if fast is None:
            return None
        start = self._pos
        length = int.from_bytes(self._raw[start + _LENGTH_AT:start + _LOG_OVERHEAD], "big")
        self._pos = start + _LOG_OVERHEAD + length
        if getattr(fast, "magic", 2) < 2:  # legacy formats carry no headers
            return fast
        return _Batch(fast, self._raw[start:self._pos])


_FastMemoryRecords = fetcher.MemoryRecords


def install() -> None:
    """Make the consumer's fetcher read batches through TolerantMemoryRecords."""
    fetcher.MemoryRecords = TolerantMemoryRecords
