"""Authenticated requests: every hospital (and clearing agency) signs the exact bytes it sends
with its own key, HMAC-SM3 (GB/T 32905 hash, as NHSA interfaces use SM-family algorithms).

The signature travels in Kafka headers, so it covers the message key and the value exactly as
sent, byte for byte:

    huimin-signtype: HMAC-SM3
    huimin-sign:     hex(HMAC-SM3(key of the sender, len(key) ‖ key ‖ value))

A sender's key is derived from the platform's signing secret and its code (the institution
code, `fixmedins_code`), the way a provincial platform issues keys to the institutions it
designates; a hospital therefore cannot sign for another hospital. Key material is
configuration (HUIMIN_SIGNING_SECRET) and never logged.
"""

from __future__ import annotations

import hmac as std_hmac
import struct
from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives import hashes, hmac

from messages.codes import ErrorCode

SIGNTYPE = "HMAC-SM3"
SIGNTYPE_HEADER = "huimin-signtype"
SIGN_HEADER = "huimin-sign"
SIGNING_HEADERS = frozenset({SIGNTYPE_HEADER, SIGN_HEADER})
#: What joins the values of a signing header given more than once (`fold_headers`); never
#: in a hex signature or the signature type.
FOLD = b","


def fold_headers(items: Iterable[tuple[str, bytes]]) -> dict[str, bytes]:
    """Kafka headers as a dict: the last value of a name given twice, as Kafka clients take
    it, but a signing header's values all kept, joined by FOLD, so that `Signer.check`
    refuses the ambiguity rather than take one of them."""
    out: dict[str, bytes] = {}
    for name, value in items:
        out[name] = out[name] + FOLD + value if name in out and name in SIGNING_HEADERS \
            else value
    return out
#: Used when HUIMIN_SIGNING_SECRET is not set (streams/security.py): fine on a laptop, never
#: in production.
DEVELOPMENT_SECRET = b"huimin development signing secret: set HUIMIN_SIGNING_SECRET"

Headers = list[tuple[str, bytes]]
#: Whose key a forged request is signed with: not the sender's.
FORGER = "H00000000000"


def _hmac_sm3(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SM3())
    h.update(data)
    return h.finalize()


def sender_key(secret: bytes, sender: str) -> bytes:
    """The key issued to one institution (hospital `H…` or agency `J…`)."""
    return _hmac_sm3(secret, b"huimin sender key:" + sender.encode())


def signature(key: bytes, msg_key: bytes | None, value: bytes) -> str:
    k = msg_key or b""
    return _hmac_sm3(key, struct.pack(">I", len(k)) + k + value).hex()


class Signer:
    """Signs what hospitals send, with each sender's key (derived once, then kept)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._keys: dict[str, bytes] = {}

    def key(self, sender: str) -> bytes:
        if sender not in self._keys:
            self._keys[sender] = sender_key(self._secret, sender)
        return self._keys[sender]

    def headers(self, sender: str, msg_key: bytes | None, value: bytes) -> Headers:
        return [(SIGNTYPE_HEADER, SIGNTYPE.encode()),
                (SIGN_HEADER, signature(self.key(sender), msg_key, value).encode())]

    def headers_as(self, signing: str, sender: str, msg_key: bytes | None,
                   value: bytes) -> Headers | None:
        """Headers a hospital puts on: `valid` (signed by `sender`), `none` (unsigned),
        `forged` (signed with a key that is not the sender's) for a bad request, or `twice`
        (a forged signature, then the sender's: which one counts is ambiguous)."""
        if signing == "valid" and sender:
            return self.headers(sender, msg_key, value)
        if signing == "forged":
            return self.headers(FORGER, msg_key, value)
        if signing == "twice":
            return [*self.headers(FORGER, msg_key, value)[1:],
                    *self.headers(sender, msg_key, value)]
        return None

    def check(self, sender: str, headers: Mapping[str, bytes], msg_key: bytes | None,
              value: bytes) -> tuple[ErrorCode, str] | None:
        """None when `sender` signed exactly these bytes; else the error and why."""
        sign = headers.get(SIGN_HEADER)
        if any(FOLD in headers.get(h, b"") for h in SIGNING_HEADERS):
            return ErrorCode.FORGED, (f"{SIGN_HEADER} or {SIGNTYPE_HEADER} is given more than "
                                      "once: a request is signed once (which signature "
                                      "would count is ambiguous)")
        if not sign or headers.get(SIGNTYPE_HEADER) != SIGNTYPE.encode():
            return ErrorCode.UNSIGNED, (f"unsigned request: headers {SIGNTYPE_HEADER}: "
                                        f"{SIGNTYPE} and {SIGN_HEADER} are required")
        expected = signature(self.key(sender), msg_key, value).encode()
        if not std_hmac.compare_digest(sign, expected):
            return ErrorCode.FORGED, (f"the signature is not {sender}'s over the bytes sent "
                                      "(forged, altered, or signed by another institution)")
        return None
