"""The FHIR R4 rules that `fhir.resources` does not check, checked at ingress after it.

The pydantic models check structure and primitive types, but not: required code bindings
(`Patient.gender` "Chalmers" passes), the id type's 64-character limit, a uri with spaces,
an empty string, base64 that is not, or the narrative rules txt-1/txt-2 (a `text.div` that
is not XHTML, or that carries a `<script>`, passes and would be served as published to every
province that reads it).
These are the rules a receiving province would hold a document to; each problem is named by
its path, as the models' are. The bindings listed are the required ones of the elements the
simulated hospitals and the shared examples use; any other element is left to the models.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from typing import Any

XHTML = "{http://www.w3.org/1999/xhtml}"

#: FHIR's `id`: 1-64 of A-Z a-z 0-9 - .
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: FHIR's `uri`/`url`/`canonical`: no whitespace.
_URI = re.compile(r"\S*")
#: FHIR's base64Binary, as a Binary's or an Attachment's `data` holds it. Each run of blanks
#: has one `\s*` to match it: `(\s*x{4}\s*)+` tried every split of each run, 3^n steps for n
#: lines that fail at the end (a review hung a worker with ~100 bytes).
_BASE64 = re.compile(r"\s*[0-9a-zA-Z+/=]{4}(?:\s*[0-9a-zA-Z+/=]{4})*\s*")
#: The elements typed so that hospitals' documents use (`meta.profile` a list of them).
_URI_KEYS = frozenset({"url", "fullUrl", "system", "profile", "valueUri", "valueUrl",
                       "valueCanonical", "valueOid", "valueUuid", "instantiatesCanonical",
                       "instantiatesUri"})

_STATUS_CLINICAL = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                    "entered-in-error", "unknown"}

#: Required bindings of resource elements: (resourceType, element) → the codes allowed.
RESOURCE_CODES: dict[tuple[str, str], frozenset[str]] = {k: frozenset(v) for k, v in {
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("Practitioner", "gender"): {"male", "female", "other", "unknown"},
    ("RelatedPerson", "gender"): {"male", "female", "other", "unknown"},
    ("Person", "gender"): {"male", "female", "other", "unknown"},
    ("Bundle", "type"): {"document", "message", "transaction", "transaction-response", "batch",
                         "batch-response", "history", "searchset", "collection"},
    ("Observation", "status"): _STATUS_CLINICAL,
    ("DiagnosticReport", "status"): _STATUS_CLINICAL | {"partial", "appended"},
    ("Encounter", "status"): {"planned", "arrived", "triaged", "in-progress", "onleave",
                              "finished", "cancelled", "entered-in-error", "unknown"},
    ("Composition", "status"): {"preliminary", "final", "amended", "entered-in-error"},
    ("DocumentReference", "status"): {"current", "superseded", "entered-in-error"},
    ("Procedure", "status"): {"preparation", "in-progress", "not-done", "on-hold", "stopped",
                              "completed", "entered-in-error", "unknown"},
    ("Immunization", "status"): {"completed", "entered-in-error", "not-done"},
    ("MedicationRequest", "status"): {"active", "on-hold", "cancelled", "completed",
                                      "entered-in-error", "stopped", "draft", "unknown"},
    ("MedicationRequest", "intent"): {"proposal", "plan", "order", "original-order",
                                      "reflex-order", "filler-order", "instance-order",
                                      "option"},
    ("CarePlan", "status"): {"draft", "active", "on-hold", "revoked", "completed",
                             "entered-in-error", "unknown"},
    ("CarePlan", "intent"): {"proposal", "plan", "order", "option"},
    ("Claim", "status"): {"active", "cancelled", "draft", "entered-in-error"},
    ("Claim", "use"): {"claim", "preauthorization", "predetermination"},
    ("ExplanationOfBenefit", "status"): {"active", "cancelled", "draft", "entered-in-error"},
    ("ExplanationOfBenefit", "outcome"): {"queued", "complete", "error", "partial"},
    ("Coverage", "status"): {"active", "cancelled", "draft", "entered-in-error"},
    ("Consent", "status"): {"draft", "proposed", "active", "rejected", "inactive",
                            "entered-in-error"},
}.items()}

#: Required bindings of data types, by the element that holds them: element → (type, field)
#: → codes. A ContactPoint is found under `telecom`, a HumanName under `name`, and so on.
TYPE_CODES: dict[str, dict[str, frozenset[str]]] = {
    "telecom": {"system": frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"}),
                "use": frozenset({"home", "work", "temp", "old", "mobile"})},
    "name": {"use": frozenset({"usual", "official", "temp", "nickname", "anonymous", "old",
                               "maiden"})},
    "address": {"use": frozenset({"home", "work", "temp", "old", "billing"}),
                "type": frozenset({"postal", "physical", "both"})},
    "identifier": {"use": frozenset({"usual", "official", "temp", "secondary", "old"})},
    # not a data type: Consent's provision (and those nested in it), the only `provision`
    "provision": {"type": frozenset({"deny", "permit"})},
}

#: How deep a document may nest (objects and arrays): real ones stay under ~20. A row, an
#: answer and the wire add a few levels, and orjson encodes at most 255.
MAX_DEPTH = 200

#: Below U+0020 a FHIR string holds only tab, LF and CR.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_CONTROL_TEXT = "a string holds no control characters (below U+0020 only tab, LF and CR)"

_EMPTY_TEXT = ("every element has a value or children (ele-1): FHIR JSON has no null, \"\", "
               "{} or [] (leave the element out)")

NARRATIVE_STATUS = frozenset({"generated", "extensions", "additional", "empty"})
#: Elements txt-1 keeps out of a narrative: active content, forms, frames, whole documents.
FORBIDDEN_XHTML = frozenset({
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form",
    "input", "button", "select", "textarea", "html", "head", "body", "meta", "link", "base"})


#: Resource types R4B added (FHIR 4.3): the models know them, an R4 platform does not.
R4B_ONLY = frozenset({
    "AdministrableProductDefinition", "Citation", "ClinicalUseDefinition", "EvidenceReport",
    "Ingredient", "ManufacturedItemDefinition", "MedicinalProductDefinition",
    "NutritionProduct", "PackagedProductDefinition", "RegulatedAuthorization",
    "SubscriptionStatus", "SubscriptionTopic", "SubstanceDefinition"})
#: R4 resource types R4B replaced (the medicinal-product family, evidence syntheses, the
#: substance details): refused by name, as there is no model to check them with.
R4_NOT_IN_R4B = frozenset({
    "EffectEvidenceSynthesis", "MedicinalProduct", "MedicinalProductAuthorization",
    "MedicinalProductContraindication", "MedicinalProductIndication",
    "MedicinalProductIngredient", "MedicinalProductInteraction", "MedicinalProductManufactured",
    "MedicinalProductPackaged", "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect", "RiskEvidenceSynthesis", "SubstanceNucleicAcid",
    "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
    "SubstanceSourceMaterial", "SubstanceSpecification"})


def not_r4(kind: str) -> str | None:
    """Why an R4 platform does not take a resource type the models know, or None."""
    if kind in R4B_ONLY:
        return f"resourceType {kind} is R4B's, not R4's"
    if kind in R4_NOT_IN_R4B:
        return (f"resourceType {kind} is not taken: R4 has it, but the platform validates "
                "with R4B's models, which replaced it")
    return None


class RuleBroken(ValueError):
    """A rule the resource breaks: `path` names the element (as the models' errors do)."""

    def __init__(self, path: str, message: str, code: str = "value") -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.code = path, code


def check_rules(resource: dict[str, Any], path: str, depth: int = 0) -> None:
    """Raise RuleBroken for the first rule `resource` breaks; `depth`: how deep in its
    document it is. The resources of a Bundle's entries are checked on their own
    (records/validation.py), which hands over the Bundle without them: the rest of each
    entry (`fullUrl`, `request`, `response` and its `outcome`) is walked here."""
    for problem in _problems(resource, path, resource.get("resourceType"), depth, top=True):
        raise problem


def _problems(node: Any, path: str, kind: Any, depth: int, top: bool = False
              ) -> Iterator[RuleBroken]:
    if depth > MAX_DEPTH:
        yield RuleBroken(path, f"nested deeper than {MAX_DEPTH} levels", "too-costly")
        return
    if isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, str) and _CONTROL.search(item):
                yield RuleBroken(f"{path}[{i}]", _CONTROL_TEXT)
            if item in ({}, [], "") and not (kind == "Bundle" and path.endswith("entry")):
                yield RuleBroken(f"{path}[{i}]", _EMPTY_TEXT)  # (an entry is handed over
                # without its resource, which is checked on its own: it may be left empty)
            yield from _problems(item, f"{path}[{i}]", kind, depth + 1)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("resourceType"), str):  # a resource (the top or one inside it:
        kind = node["resourceType"]  # contained, a parameter's, an outcome, ...)
        if not top and (why := not_r4(kind)) is not None:
            yield RuleBroken(path, why, "not-supported")
        rid = node.get("id")
        if rid is not None and not (isinstance(rid, str) and _ID.fullmatch(rid)):
            yield RuleBroken(f"{path}.id", "an id is 1-64 of A-Z a-z 0-9 - . only")
    for key, value in node.items():
        here = f"{path}.{key}"
        if value is None or value in ({}, [], ""):
            yield RuleBroken(here, _EMPTY_TEXT)
        if isinstance(value, str) and _CONTROL.search(value):
            yield RuleBroken(here, _CONTROL_TEXT)
        allowed = RESOURCE_CODES.get((kind, key)) if "resourceType" in node else None
        if allowed is not None and isinstance(value, str) and value not in allowed:
            yield _not_allowed(here, allowed)
        if key in _URI_KEYS:
            for i, uri in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(uri, str) and not _URI.fullmatch(uri):
                    yield RuleBroken(here if value is uri else f"{here}[{i}]",
                                     "a uri has no whitespace")
        if key == "data" and "contentType" in node and isinstance(value, str) \
                and not _BASE64.fullmatch(value):  # a Binary's or an Attachment's (a
            yield RuleBroken(here, "not base64")  # SampledData's `data` is plain text)
        if key == "modifierExtension":  # FHIR: one not understood may not be ignored
            yield RuleBroken(here, "a modifier extension changes what its element means, and "
                             "this platform understands none", "not-supported")
            continue
        if key == "implicitRules" and "resourceType" in node:  # a modifier element too
            yield RuleBroken(here, "implicit rules change what the resource means, and this "
                             "platform knows none", "not-supported")
            continue
        if key == "text" and isinstance(value, dict) and "div" in value:
            yield from _narrative(value, here)
            continue
        if key in TYPE_CODES:
            items: Iterable[tuple[int | None, Any]] = (
                enumerate(value) if isinstance(value, list) else [(None, value)])
            for n, item in items:
                if not isinstance(item, dict):
                    continue
                at = here if n is None else f"{here}[{n}]"
                for field, codes in TYPE_CODES[key].items():
                    code = item.get(field)
                    if isinstance(code, str) and code not in codes:
                        yield _not_allowed(f"{at}.{field}", codes)
        if isinstance(value, dict | list):
            yield from _problems(value, here, kind, depth + 1)


def _narrative(text: dict[str, Any], path: str) -> Iterator[RuleBroken]:
    status = text.get("status")
    if isinstance(status, str) and status not in NARRATIVE_STATUS:
        yield _not_allowed(f"{path}.status", NARRATIVE_STATUS)
    div = text.get("div")
    if not isinstance(div, str):
        return
    if _DECLARATION.search(div):  # a DOCTYPE declares entities: not in a fragment
        yield RuleBroken(f"{path}.div", "no DOCTYPE or entity declarations in a narrative")
        return
    try:
        root = ET.fromstring(div)
    except ET.ParseError as exc:
        yield RuleBroken(f"{path}.div", f"not well-formed XHTML ({exc.msg})")
        return
    if root.tag != f"{XHTML}div":
        yield RuleBroken(f"{path}.div", "a narrative is one <div> in the XHTML namespace "
                         "(xmlns=\"http://www.w3.org/1999/xhtml\")")
        return
    for element in root.iter():
        problem = _unsafe(element)
        if problem:
            yield RuleBroken(f"{path}.div", f"{problem} (txt-1)")
            return
    if not "".join(root.itertext()).strip() and root.find(f".//{XHTML}img") is None:
        yield RuleBroken(f"{path}.div", "a narrative has text or an image (txt-2)")


def _unsafe(element: ET.Element) -> str:
    """Why an element may not be in a narrative, or "": one outside XHTML (an <svg> may carry
    its own <script>), a forbidden one, an event handler, a script or data URL to follow."""
    tag = element.tag if isinstance(element.tag, str) else ""
    if not tag.startswith(XHTML):
        return "only XHTML elements are allowed in a narrative"
    name = tag.removeprefix(XHTML).lower()
    if name in FORBIDDEN_XHTML:
        return f"<{name}> is not allowed in a narrative"
    for attribute, value in element.attrib.items():
        local = attribute.rsplit("}", 1)[-1].lower()
        if local.startswith("on"):
            return "event-handler attributes (on…) are not allowed in a narrative"
        if local in ("href", "src") and _ACTIVE_URL.match(value) and not (
                name == "img" and local == "src" and value.lstrip().lower().startswith(
                    "data:image/")):
            return f"a {local} that runs or embeds content is not allowed in a narrative"
    return ""


_DECLARATION = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)

#: URLs that run code or carry content of their own: not to be followed from a narrative
#: (an image may be `data:image/…`).
_ACTIVE_URL = re.compile(r"\s*(javascript|vbscript|data):", re.IGNORECASE)


def _not_allowed(path: str, codes: frozenset[str]) -> RuleBroken:
    """The code sent is not echoed: a sender may have put free text (a name) there."""
    return RuleBroken(path, f"the code sent is not one of those allowed here "
                            f"({', '.join(sorted(codes))})", "code-invalid")
