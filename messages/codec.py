"""orjson encode/decode of wire messages. Decoding never raises anything but `MalformedMessage`."""

from __future__ import annotations

from typing import Any

import orjson


class MalformedMessage(ValueError):
    """The bytes are not a JSON object."""


def encode(obj: Any) -> bytes:
    return orjson.dumps(obj)


def decode(data: bytes | None) -> dict[str, Any]:
    if data is None:
        raise MalformedMessage("empty message")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(f"not valid JSON: {exc.msg} at byte {exc.pos}") from None
    if not isinstance(value, dict):
        raise MalformedMessage(f"expected a JSON object, got {type(value).__name__}")
    return value
