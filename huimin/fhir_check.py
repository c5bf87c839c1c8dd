"""`huimin check-fhir`: would the platform take these FHIR R4 files in a 7001 publish? The
same checks as its provincial ingress (records/validation.py), offline: no broker, nothing
stored, and, as there, the answer names where a resource is wrong, never a value in it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from messages.codes import ErrorCode
from records.gateway import document_refusal
from records.validation import Validator
from settlement.treatment import MAX_REQUEST_BYTES

#: What a 7001 request holds besides its resource: the envelope, the purpose, the signature.
ENVELOPE_BYTES = 512


@dataclass(frozen=True, slots=True)
class FhirCheck:
    """One file's verdict: `code` is None when the platform would take it."""

    path: Path
    code: ErrorCode | None
    what: str  # the resource (type, and a Bundle's type and size), or why it is refused
    where: str = ""  # the element at fault (FHIRPath-like), if the check names one

    def as_dict(self) -> dict[str, Any]:
        return {"file": str(self.path), "ok": self.code is None,
                "code": self.code and str(self.code), "what": self.what, "where": self.where}


def _described(resource: dict[str, Any]) -> str:
    kind = resource["resourceType"]
    if kind == "Bundle" and isinstance(resource.get("entry"), list):
        return f"Bundle ({resource.get('type', 'no type')}, {len(resource['entry'])} entries)"
    return str(kind)


def _not_utf8(raw: bytes) -> str | None:
    """What the bytes are instead of UTF-8 (orjson says only "surrogates not allowed")."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16, by its byte-order mark"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"at byte offset {exc.start:,}"
    return None


def check_fhir_file(path: Path, validator: Validator) -> FhirCheck:
    """`path` checked as the resource of a 7001 publish. OSError is left to the caller."""
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a file's UTF-8 mark, not JSON
    if (encoding := _not_utf8(raw)) is not None:
        return FhirCheck(path, ErrorCode.MALFORMED_JSON, f"not UTF-8 ({encoding}): a request "
                                                         "carries its JSON in UTF-8")
    try:
        resource = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return FhirCheck(path, ErrorCode.MALFORMED_JSON, f"not JSON: {exc}")
    try:
        # as a hospital sends it: compact, two levels down in the request
        size = len(orjson.dumps({"input": {"resource": resource}})) + ENVELOPE_BYTES
    except orjson.JSONEncodeError:  # nested past the 255 levels orjson writes: `huimin
        # publish` cannot send it, but another client's JSON can, and the platform reads up
        # to 1,024 levels and refuses it as nested too deeply (E5001), as checked below
        size = len(raw) + ENVELOPE_BYTES
    if not isinstance(resource, dict):  # the envelope's schema refuses it before FHIR does
        return FhirCheck(path, ErrorCode.SCHEMA_VIOLATION,
                         "not a JSON object, as a 7001's input.resource must be")
    if size > MAX_REQUEST_BYTES:
        return FhirCheck(path, ErrorCode.MESSAGE_TOO_LARGE, f"~{size:,} bytes as a request: "
                                                            f"{MAX_REQUEST_BYTES:,} at most")
    if (refusal := document_refusal(validator, resource)) is not None:  # as the platform
        code, reason, outcome = refusal
        return FhirCheck(path, code, reason,
                         ", ".join(outcome["issue"][0].get("expression", []) if outcome else []))
    return FhirCheck(path, None, _described(resource))
