"""What a dead letter says about itself, for the people who read `dead.letters`: its error
code, reason and source topic (its headers), and which request it was, by the request's own
msgid, transaction and hospital when it names them. Never the message's key or body: those
are the original bytes, which may carry a person's data (docs/wire.md, Dead letters)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

from messages.envelope import answerable_msgid
from messages.platform import hospital_context
from messages.topics import HOSP_REQUESTS

#: The Kafka headers a role puts on a dead letter (streams/role.py, `RoleRunner.dead_letter`).
CODE_HEADER: Final = "huimin-error-code"
REASON_HEADER: Final = "huimin-reason"
SOURCE_HEADER: Final = "huimin-source-topic"
#: On a dead letter whose message was too large to write again whole: its size in bytes
#: (the letter keeps its first bytes).
TRUNCATED_HEADER: Final = "huimin-truncated-from"

# Only values of these shapes are shown: a sender that put something else there gets ""
# instead, as the reason already names the field (a msgid: `answerable_msgid`).
_HOSPITAL = re.compile(r"[HJ]\d{11}")
_INFNO = re.compile(r"\d{4}")


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """One message kept in `dead.letters`, where it is in the topic and why it is there."""

    partition: int
    offset: int
    timestamp_ms: int
    error_code: str
    reason: str
    source_topic: str
    size: int  # bytes of the message as received (the letter may keep only the first ones)
    infno: str = ""  # the request's, where the message carries one
    msgid: str = ""
    fixmedins_code: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for a person: when (UTC), where, code, from which topic, which request,
        why."""
        when = datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        request = " ".join(v for v in (self.infno, self.msgid) if v) or f"({self.size} bytes)"
        return (f"{when}  {self.partition}@{self.offset}  {self.error_code or '?':<5}  "
                f"{self.source_topic or '?':<14}  {request}  {self.reason}")


def summarise_dead_letters(entries: Iterable[DeadLetterEntry]) -> str:
    """How many, by error code and by source topic: `3 dead letters: E1001 2, E1004 1;
    from hosp.requests 3`."""
    entries = list(entries)
    if not entries:
        return "no dead letters"
    codes = Counter(e.error_code or "?" for e in entries)
    sources = Counter(e.source_topic or "?" for e in entries)
    by_code = ", ".join(f"{c} {n}" for c, n in sorted(codes.items()))
    by_source = ", ".join(f"{t} {n}" for t, n in sorted(sources.items()))
    noun = "dead letter" if len(entries) == 1 else "dead letters"
    return f"{len(entries)} {noun}: {by_code}; from {by_source}"


def header_values(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka record headers as text (a header that is not UTF-8 is shown replaced)."""
    return {k: (v or b"").decode(errors="replace") for k, v in (headers or ())}


def _original_size(value: bytes | None, headers: dict[str, str]) -> int:
    """The size of the message as received, also of one kept only in part."""
    whole = headers.get(TRUNCATED_HEADER, "")
    return int(whole) if whole.isascii() and whole.isdigit() else len(value or b"")


def describe_dead_letter(value: bytes | None, headers: dict[str, str], partition: int = 0,
                         offset: int = 0, timestamp_ms: int = 0) -> DeadLetterEntry:
    """The entry of a dead letter: its headers and, where its bytes carry a request or a
    platform message about one, that request's msgid, infno and hospital."""
    source = headers.get(SOURCE_HEADER, "")
    ctx = hospital_context(value, source == HOSP_REQUESTS) or {}

    def shown(name: str, shape: re.Pattern[str]) -> str:
        v = ctx.get(name, "")
        return v if isinstance(v, str) and shape.fullmatch(v) else ""

    return DeadLetterEntry(
        partition=partition, offset=offset, timestamp_ms=timestamp_ms,
        error_code=headers.get(CODE_HEADER, ""), reason=headers.get(REASON_HEADER, ""),
        source_topic=source, size=_original_size(value, headers), infno=shown("infno", _INFNO),
        msgid=msgid if answerable_msgid(msgid := ctx.get("msgid")) else "",
        fixmedins_code=shown("fixmedins_code", _HOSPITAL))
