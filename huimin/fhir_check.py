"""`huimin check-fhir`: would the platform take these FHIR R4 files in a 7001 publish? The
same checks as its provincial ingress (records/validation.py), offline: no broker, nothing
stored, and, as there, the answer names where a resource is wrong, never a value in it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from messages.codes import ErrorCode
from records.validation import InvalidResource, Validator
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


def check_fhir_file(path: Path, validator: Validator) -> FhirCheck:
    """`path` checked as the resource of a 7001 publish. OSError is left to the caller."""
    raw = path.read_bytes()
    try:
        resource = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return FhirCheck(path, ErrorCode.MALFORMED_JSON, f"not JSON: {exc}")
    try:
        size = len(orjson.dumps(resource)) + ENVELOPE_BYTES  # as a hospital sends it: compact
    except orjson.JSONEncodeError:  # nested past the 255 levels orjson writes: the check
        size = len(raw)  # below refuses it, as the platform's ingress does
    if size > MAX_REQUEST_BYTES:
        return FhirCheck(path, ErrorCode.MESSAGE_TOO_LARGE, f"~{size:,} bytes as a request: "
                                                            f"{MAX_REQUEST_BYTES:,} at most")
    try:
        validator.validate(resource)
    except InvalidResource as exc:
        issue = exc.outcome["issue"][0]
        return FhirCheck(path, ErrorCode.INVALID_FHIR, f"not valid FHIR R4: {exc}",
                         ", ".join(issue.get("expression", [])))
    return FhirCheck(path, None, _described(resource))
