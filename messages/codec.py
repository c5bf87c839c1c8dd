"""orjson encode/decode of wire messages. Decoding never raises anything but `MalformedMessage`."""

from __future__ import annotations

from typing import Any

import orjson


class MalformedMessage(ValueError):
    """The bytes are not a JSON object."""


def encode(obj: Any) -> bytes:
    return orjson.dumps(obj)


def encode_to_keep(obj: Any) -> bytes:
    """`encode` for a value held in memory (a table row): orjson's result occupies a 16 KiB
    block however short it is (measured: 16,265 bytes held for 2,008 bytes of JSON), so a
    value that stays gets an exact-size copy."""
    return bytes(memoryview(orjson.dumps(obj)))


def decode(data: bytes | None) -> dict[str, Any]:
    if data is None:
        raise MalformedMessage("empty message")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:  # orjson tells bad UTF-8 as "surrogates not allowed at byte 0", wherever it is
            data.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise MalformedMessage(f"not UTF-8 (at byte {bad.start}): JSON on the wire is "
                                   "UTF-8") from None
        raise MalformedMessage(f"not valid JSON: {exc.msg} at byte {exc.pos}") from None
    if not isinstance(value, dict):
        raise MalformedMessage(f"expected a JSON object, got {type(value).__name__}")
    return value
