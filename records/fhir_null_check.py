"""FHIR's "no null inside a list of complex elements" check, without walking every field of
the model each time.

fhir.resources (through fhir_core) runs `reject_null_complex_elements` before validating every
model, nested elements included: ~100 times for a typical 13-resource provide bundle. Each
run walks all of the model's fields (a Patient has ~40, counting the `_field` extension
siblings) and works out for each whether it is a list of a complex type. That was ~30 % of
cold ingress validation (docs/performance.md). The answer depends only on the class, so here
it is worked out once per class; the check itself, its errors and what it lets through are the
library's (tests/test_fhir_null_check.py compares the two on every R4B model).

Pydantic binds a model's validators when the class is built, looking them up by name on the
class, so `install()` takes effect for the model classes built after it. `records` installs
it on import, before any of its modules loads a model (they are built on first use); a
class built earlier keeps the library's check, which is slower, not different.
"""

from __future__ import annotations

from typing import Any

from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.utils import is_list_type, is_primitive_type
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

#: The library's check, as it was before `install()`.
LIBRARY_CHECK = FHIRAbstractModel.__dict__["reject_null_complex_elements"].__func__

#: Per model class: (field name, alias) of each field that is a list of a complex type.
_complex_lists: dict[type, tuple[tuple[str, str | None], ...]] = {}


def complex_list_fields(cls: type[FHIRAbstractModel]) -> tuple[tuple[str, str | None], ...]:
    """The fields the library's check looks at: lists of complex types, `_field` extension
    lists left out (their nulls line values up with their extensions)."""
    fields = _complex_lists.get(cls)
    if fields is None:
        fields = _complex_lists[cls] = tuple(
            (name, field.alias) for name, field in cls.model_fields.items()
            if is_list_type(field) and not is_primitive_type(field)
            and not name.endswith("__ext"))
    return fields


def reject_null_complex_elements(cls: type[FHIRAbstractModel], data: Any) -> Any:
    """The library's check on the fields `complex_list_fields` found once for `cls`."""
    if not isinstance(data, dict):
        return data
    errors: list[InitErrorDetails] = []
    for name, alias in complex_list_fields(cls):
        key = alias if alias and alias in data else name
        value = data.get(key)
        # `in` compares by identity first; nothing in parsed JSON or a model equals None
        if isinstance(value, list) and None in value:
            errors.append({
                "type": PydanticCustomError("list_type",
                                            "None is not allowed as an element of {field}",
                                            {"field": key}),
                "loc": (key,), "input": value})
    if errors:
        raise ValidationError.from_exception_data(cls.__name__, errors)
    return data


def install() -> None:
    """Model classes built from now on run `reject_null_complex_elements` from here."""
    FHIRAbstractModel.reject_null_complex_elements = classmethod(  # type: ignore[assignment,method-assign]
        reject_null_complex_elements)


def installed_in(model: type[FHIRAbstractModel]) -> bool:
    """Whether `model` was built with this module's check."""
    check = model.__pydantic_decorators__.model_validators["reject_null_complex_elements"]
    return getattr(check.func, "__func__", None) is reject_null_complex_elements
