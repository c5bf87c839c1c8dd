"""FHIR JSON's primitive types, which the models coerce: a boolean is JSON `true` or
`false`, an integer a JSON number without a fraction, a decimal a JSON number (FHIR R4,
JSON representation §2.6.2), and a complex element a JSON object. fhir.resources takes
`"true"`, `1`, `"2"`, `1.0` and `"12.5"` in their place, and a string holding an object's
JSON where the object goes; the platform keeps a document as it was sent, so a reader
elsewhere would get strings where its parser wants numbers or objects (a review: a Consent's
`provision` sent so was read as none by the platform's own consent reading). Checked
against the built model: its values say which type each element has, choice types and
primitive extensions included."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any, get_args

from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase  # the complex types' annotations

from records.fhir_rules import RuleBroken


@cache
def _elements(model: type[FHIRAbstractModel]) -> tuple[dict[str, str], frozenset[str],
                                                      dict[str, str]]:
    """Each JSON name of the model's elements with the attribute that holds it, the names
    of those a string cannot be sent for (typed boolean, integer, decimal or a complex type:
    a string anywhere else is one), and the
    names the models also take that R4's JSON does not have, each with what it stands for:
    their Python names (`birthDate__ext` for `_birthDate`, `class_fhir` for `class`,
    `resource_type`) and their own `fhir_comments`."""
    attributes = {field.alias or name: name for name, field in model.model_fields.items()
                  if name != "fhir_comments"}
    numeric = frozenset(field.alias or name for name, field in model.model_fields.items()
                        if _holds(field.annotation, (bool, int, Decimal, FhirBase)))
    not_json = {name: field.alias if field.alias not in (None, name) else ""
                for name, field in model.model_fields.items() if name not in attributes}
    not_json["resource_type"] = "resourceType"
    return attributes, numeric, not_json


def _holds(annotation: Any, types: tuple[type, ...]) -> bool:
    if isinstance(annotation, type):
        return issubclass(annotation, types)
    return any(_holds(arg, types) for arg in get_args(annotation))


def check_json_types(built: FHIRAbstractModel, sent: dict[str, Any], path: str) -> None:
    """Raise RuleBroken where `sent` gives a primitive in a JSON type other than FHIR's, or
    names an element otherwise than R4's JSON (the models take their own names too: such a
    document, kept as sent, would not read elsewhere)."""
    attributes, numeric, not_json = _elements(type(built))
    for key, value in sent.items():
        if key in not_json:  # the models' words, not the sender's: safe to name
            raise RuleBroken(f"{path}.{key}", "not an element of FHIR's JSON" + (
                f": the models' name for {not_json[key]}" if not_json[key] else ""),
                             "structure")
        kind = type(value)  # a string or a number where a string goes: the models say
        if (kind is dict or kind is list or key in numeric) and \
                (name := attributes.get(key)) is not None:
            _check(getattr(built, name), value, f"{path}.{key}")


def _check(built: Any, sent: Any, path: str) -> None:
    if isinstance(built, FHIRAbstractModel):
        if isinstance(sent, dict):
            check_json_types(built, sent, path)
        else:
            name = type(built).__name__
            raise RuleBroken(path, f"{'an' if name[0] in 'AEIOU' else 'a'} {name} is a JSON "
                                   f"object, not {_kind(sent)}", "structure")
    elif isinstance(built, list):
        if isinstance(sent, list):
            for i, (one_built, one_sent) in enumerate(zip(built, sent, strict=False)):
                _check(one_built, one_sent, f"{path}[{i}]")
    elif isinstance(built, bool):
        if type(sent) is not bool:
            raise RuleBroken(path, f"a boolean is JSON true or false, not {_kind(sent)}",
                             "structure")
    elif isinstance(built, int):
        if type(sent) is not int:
            raise RuleBroken(path, f"an integer is a JSON number without a fraction, not "
                                   f"{_kind(sent)}", "structure")
    elif isinstance(built, Decimal) and type(sent) not in (int, float):
        raise RuleBroken(path, f"a decimal is a JSON number, not {_kind(sent)}", "structure")


def _kind(sent: Any) -> str:
    return {str: "a string", bool: "true or false", int: "a number",
            float: "a number with a fraction"}.get(type(sent), "another JSON type")
