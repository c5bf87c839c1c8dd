"""Ingress validation of FHIR resources with `fhir.resources.R4B`, and then the rules it
does not check (records/fhir_rules.py: required codes, ids, narratives), answered as an
OperationOutcome that names the path and the problem.

Validation happens once, at the provincial platform's ingress; inside, resources travel as
dicts/bytes. A Bundle is checked entry by entry (each resource by its own model, then the
Bundle's shell without them), so an error names its path inside the Bundle. Resources already
seen byte for byte are not checked again: that spares a resent publish, and resources that
publishers repeat verbatim; our own documents give every resource a fresh id, so for them the
cache rarely hits (benchmarks/test_micro.py measures both cases).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from functools import lru_cache
from hashlib import blake2b
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from records.fhir_json_types import check_json_types
from records.fhir_rules import RuleBroken, check_rules, not_r4
from records.fhir_speedups import build


class InvalidResource(ValueError):
    """A resource that is not valid FHIR R4; `outcome` is the OperationOutcome to answer."""

    def __init__(self, outcome: dict[str, Any]) -> None:
        super().__init__(outcome["issue"][0]["diagnostics"])
        self.outcome = outcome


def operation_outcome(code: str, diagnostics: str, expression: str | None = None,
                      severity: str = "error") -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


#: An element's name as FHIR spells them; a key a sender made up is not echoed (it may be
#: anything, a person's name included).
_ELEMENT = re.compile(r"_?[A-Za-z][A-Za-z0-9_]{0,63}")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")


def _path(prefix: str, loc: tuple[Any, ...]) -> str:
    out = prefix
    for part in loc:
        if part == "resource_type":  # fhir.resources' name for it
            part = "resourceType"
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if _ELEMENT.fullmatch(str(part)) or part == "(an unknown element)" \
                else ".(an unknown element)"
    return out


def _key_position(resource: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """Where a key the sender made up stands among its object's keys, in words (its name
    may hold personal data and is not echoed): " (not named: key 3 of the 7 there)"; ""
    where the model's path does not lead to it (a field named otherwise than in JSON)."""
    here: Any = resource
    for part in loc[:-1]:
        try:
            here = here[part]
        except (IndexError, KeyError, TypeError):
            return ""
    if not isinstance(here, dict) or loc[-1] not in here:
        return ""
    return f" (not named: key {list(here).index(loc[-1]) + 1} of the {len(here)} there)"


_ISSUE_CODES = {"missing": "required", "extra_forbidden": "structure", "json_invalid": "structure"}


def _strings_in(value: Any, limit: int = 1000) -> list[str]:
    """The strings and numbers inside a value (at most `limit` looked at), as text: what an
    error could echo."""
    out: list[str] = []
    todo = [value]
    while todo and limit > 0:
        limit -= 1
        item = todo.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, int | float):  # a phone number sent as a number
            out.append(str(item))
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return out


_CONTROLS = str.maketrans({"\r": "\\r", "\n": "\\n", "\t": "\\t"})


def _message(err: Any) -> str:
    """What is wrong, never the value sent (DOMAIN.md §7): pydantic's and fhir_core's texts
    echo some inputs (a wrong resourceType, a custom validator's error), and a value may be a
    name or an ID number. A text that would echo one says only the kind of error."""
    if err["type"] == "fhir-validation-wrong-resource-type":
        expected = str(err.get("ctx", {}).get("expected_resource_type", ""))
        return f"resourceType should be {expected}" if _RESOURCE_TYPE.fullmatch(expected) \
            else "resourceType is not the one this element takes"
    if err["type"] == "json_invalid":  # a string where an object goes, not JSON
        return "a JSON object is expected here, not a string"
    if err["type"] == "string_pattern_mismatch" and not str(err.get("input")).strip():
        return "empty: a FHIR string has a value (leave the element out instead)"
    msg = str(err["msg"]).translate(_CONTROLS)  # a pattern's \r\n\t: one line a problem
    echoed = not msg.isascii() or any(
        len(text) >= 3 and text in msg for text in _strings_in(err.get("input")))
    return f"invalid value ({err['type']})" if echoed else msg


@lru_cache(maxsize=256)
def _known_type(kind: str) -> bool:
    """Whether `kind` is a resource type of FHIR's, so that an error's path may name it: any
    other word (a pinyin name, say) would be echoed in the OperationOutcome."""
    if not _RESOURCE_TYPE.fullmatch(kind):
        return False
    if not_r4(kind) is not None:
        return True
    try:
        get_fhir_model_class(kind)
    except (KeyError, ValueError):
        return False
    return True


def _an_r4_type(kind: str, path: str) -> None:
    """Refuse a resource type the models know but an R4 platform does not take."""
    if (why := not_r4(kind)) is not None:
        raise InvalidResource(operation_outcome("not-supported", why, path))


class Validator:
    """Validates resources against the R4B models, remembering the last `cache_size` valid
    resources by a digest of their bytes (32 bytes each, however large the resource: a
    worker's memory does not grow with what hospitals publish)."""

    def __init__(self, cache_size: int = 20_000) -> None:
        self._valid: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size

    def validate(self, resource: Any, path: str = "") -> None:
        """Raise InvalidResource if `resource` is not a valid R4 resource."""
        try:
            self._validate(resource, path, 0)
        except (RecursionError, orjson.JSONEncodeError):  # nested past what Python's stack
            raise InvalidResource(operation_outcome(  # holds, or orjson writes (255 levels)
                "too-costly", "nested too deeply to check", path or None)) from None

    def _validate(self, resource: Any, path: str, depth: int) -> None:
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise InvalidResource(operation_outcome(
                "structure", "not a FHIR resource: a JSON object with resourceType is required",
                path or None))
        kind = resource["resourceType"]
        here = path or (kind if _known_type(kind) else "resourceType")
        as_sent = resource  # where a key stands is told from it (`_key_position`)
        if kind == "Bundle":
            entries = resource.get("entry")
            if isinstance(entries, list):
                for i, entry in enumerate(entries):
                    if isinstance(entry, dict) and "resource" in entry:
                        self._validate(entry["resource"], f"{here}.entry[{i}].resource",
                                       depth + 3)
            if isinstance(entries, list):  # not a list: the model says so
                check_bundle_rules(resource, entries, here)  # its entries valid (or none)
                resource = {**resource, "entry": [  # the entries' resources checked above
                    {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
                    for e in entries]}
        self._check(kind, resource, here, depth, as_sent)

    def _check(self, kind: str, resource: dict[str, Any], path: str, depth: int,
               as_sent: dict[str, Any]) -> None:
        key = blake2b(f"{kind} {depth} ".encode()  # valid here, which is not everywhere
                      + orjson.dumps(resource, option=orjson.OPT_SORT_KEYS),
                      digest_size=32).digest()
        if key in self._valid:
            self._valid.move_to_end(key)
            return
        contained = resource.get("contained")
        for i, inner in enumerate(contained if isinstance(contained, list) else []):
            where = f"{path}.contained[{i}]"  # the models' own errors here say not where
            if not isinstance(inner, dict) or not isinstance(inner.get("resourceType"), str):
                raise InvalidResource(operation_outcome(
                    "structure", "not a FHIR resource: a JSON object with resourceType is "
                                 "required", where))
            _an_r4_type(inner["resourceType"], where)
            if not _known_type(inner["resourceType"]):
                raise InvalidResource(operation_outcome(
                    "not-supported", "unknown resourceType", where))
        _an_r4_type(kind, path)
        try:
            model = get_fhir_model_class(kind)
        except (KeyError, ValueError):
            raise InvalidResource(operation_outcome(
                "not-supported", "unknown resourceType", path)) from None
        try:
            built = build(model, resource)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err["loc"])
            where = ""
            if err["type"] == "extra_forbidden" and loc:  # named by the sender: not echoed,
                loc = (*loc[:-1], "(an unknown element)")  # but where it is, to find it by
                where = _key_position(as_sent, tuple(err["loc"]))
            raise InvalidResource(operation_outcome(
                _ISSUE_CODES.get(err["type"], "value"),
                f"{_path(path, loc)}: {_message(err)}{where}", _path(path, loc))) from None
        except KeyError:  # the models' lookup of a nested resource's type (a Parameters'
            raise InvalidResource(operation_outcome(  # resource, a response's outcome)
                "not-supported", f"{path}: a resource inside it is of an unknown "
                                 "resourceType", path)) from None
        except Exception as exc:
            raise InvalidResource(operation_outcome(
                "invalid", f"{path}: not valid R4 ({type(exc).__name__})", path)) from None
        try:
            check_rules(resource, path, depth)
            check_json_types(built, resource, path)
        except RuleBroken as broken:
            raise InvalidResource(operation_outcome(broken.code, str(broken),
                                                    broken.path)) from None
        self._valid[key] = None
        if len(self._valid) > self._cache_size:
            self._valid.popitem(last=False)


#: Which Bundle types an entry's `request` and `response` belong in (bdl-3, bdl-4) and
#: where `total` goes (bdl-1; an entry's `search` only in a searchset, bdl-2).
_REQUESTS = frozenset({"batch", "transaction", "history"})
_RESPONSES = frozenset({"batch-response", "transaction-response", "history"})
_TOTALS = frozenset({"searchset", "history"})


def _invariant(where: str, what: str) -> InvalidResource:
    return InvalidResource(operation_outcome("invariant", f"{where}: {what}", where))


def check_bundle_rules(bundle: dict[str, Any], entries: list[Any], path: str) -> None:
    """R4 Bundle's invariants, which the models do not check (a review found documents
    taken without identifier or timestamp, with two entries under one fullUrl, or with a
    request in them): bdl-1 to bdl-5 and bdl-7 to bdl-12, and a document's entries each with
    a fullUrl (FHIR R4 Bundle.entry.fullUrl: only a transaction's POST or an operation's
    result may lack one). A fullUrl is compared, never echoed."""
    kind = bundle.get("type")
    first = entries[0] if entries else None
    resource = first.get("resource") if isinstance(first, dict) else None
    first_type = resource.get("resourceType") if isinstance(resource, dict) else None
    if kind == "document" and first_type != "Composition":
        # which the platform reads the document's type from, and which a reader reads first
        raise _invariant(f"{path}.entry[0]", "a document's first resource must be its "
                         "Composition (bdl-11)")
    if kind == "message" and first_type != "MessageHeader":
        raise _invariant(f"{path}.entry[0]", "a message's first resource must be its "
                         "MessageHeader (bdl-12)")
    if "total" in bundle and kind not in _TOTALS:
        raise _invariant(f"{path}.total", "only a searchset or a history has a total (bdl-1)")
    seen: dict[tuple[str, Any], int] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue  # the model says what it should be
        here = f"{path}.entry[{i}]"
        if "search" in entry and kind != "searchset":
            raise _invariant(f"{here}.search", "only a searchset's entries have one (bdl-2)")
        if ("request" in entry) != (kind in _REQUESTS):
            raise _invariant(f"{here}.request", "a batch's, a transaction's and a history's "
                             "entries each have one, no other's (bdl-3)")
        if ("response" in entry) != (kind in _RESPONSES):
            raise _invariant(f"{here}.response", "a batch-response's, a transaction-response's"
                             " and a history's entries each have one, no other's (bdl-4)")
        if not ({"resource", "request", "response"} & entry.keys()):
            raise _invariant(here, "an entry holds a resource, a request or a response "
                             "(bdl-5)")
        url = entry.get("fullUrl")
        if not isinstance(url, str):
            if kind == "document":
                raise _invariant(f"{here}.fullUrl", "each entry of a document has one")
            continue
        if "/_history/" in url:
            raise _invariant(f"{here}.fullUrl", "not a version-specific reference (bdl-8)")
        resource = entry.get("resource")
        meta = resource.get("meta") if isinstance(resource, dict) else None
        version = meta.get("versionId") if isinstance(meta, dict) else None
        if kind != "history" and (earlier := seen.setdefault((url, version), i)) != i:
            raise _invariant(f"{here}.fullUrl", f"the same as entry[{earlier}]'s: each entry's "
                             "is its own, unless their versionIds differ (bdl-7)")
    if kind == "document":
        identifier = bundle.get("identifier")
        if not (isinstance(identifier, dict) and identifier.get("system")
                and identifier.get("value")):
            raise _invariant(f"{path}.identifier", "a document has one, with a system and a "
                             "value (bdl-9)")
        if not bundle.get("timestamp"):
            raise _invariant(f"{path}.timestamp", "a document has one (bdl-10)")
