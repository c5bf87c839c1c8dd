"""Two costs of fhir.resources' validation that its answers do not depend on, taken out.

fhir.resources (through fhir_core) validates a nested element (a Coding, a Reference, ...)
as a model of its own: ~100 models for a typical 13-resource provide bundle. Cold ingress
validation is almost all this per-model work (docs/performance.md, micro-benchmarks), and
two parts of it are spent twice or worked out again for nothing:

- **The null check.** `reject_null_complex_elements` runs before every model and walks all
  of its fields (a Patient has ~40, counting the `_field` extension siblings), working out for
  each whether it is a list of a complex type: ~30 % of cold validation. The answer depends
  only on the class, so here it is worked out once per class; the check itself, its errors
  and what it lets through are the library's. Pydantic binds a model's validators when the
  class is built, looking them up by name, so this takes effect for the model classes built
  after `install()`: `records` installs it on import, before any of its modules loads a model
  (they are built on first use). A class built earlier keeps the library's check: slower,
  not different.
- **Each nested element validated twice over.** The library validates an element as
  `Model.model_validate(value)`; a fhir_core model has its own `__init__`, so pydantic runs
  the model's validator once outside `__init__` and again inside it, after-validators
  included. Building the element as `Model(**value)` runs only the inner one (~13 % of cold
  validation). The rest of the library's per-element check (the model's class and resource
  type) still runs on the result. Ingress validation builds each resource the same way.

tests/test_fhir_speedups.py compares both with the library's own code: the null check on
every R4B model, the element validation on FHIR written by others and on broken copies of it.
"""

from __future__ import annotations

from typing import Any

from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase
from fhir_core.utils import is_list_type, is_primitive_type
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

#: The library's null check and element validator, as they were before `install()`.
LIBRARY_NULL_CHECK = FHIRAbstractModel.__dict__["reject_null_complex_elements"].__func__
LIBRARY_ELEMENT_VALIDATOR = FhirBase.__dict__["fhir_model_validator"].__func__

#: Per model class: (field name, alias) of each field that is a list of a complex type.
_complex_lists: dict[type, tuple[tuple[str, str | None], ...]] = {}


def complex_list_fields(cls: type[FHIRAbstractModel]) -> tuple[tuple[str, str | None], ...]:
    """The fields the library's null check looks at: lists of complex types, `_field`
    extension lists left out (their nulls line values up with their extensions)."""
    fields = _complex_lists.get(cls)
    if fields is None:
        fields = _complex_lists[cls] = tuple(
            (name, field.alias) for name, field in cls.model_fields.items()
            if is_list_type(field) and not is_primitive_type(field)
            and not name.endswith("__ext"))
    return fields


def reject_null_complex_elements(cls: type[FHIRAbstractModel], data: Any) -> Any:
    """The library's null check on the fields `complex_list_fields` found once for `cls`."""
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


def build(model: type[FHIRAbstractModel], data: dict[str, Any]) -> FHIRAbstractModel:
    """`model.model_validate(data)` in one validation pass, not two: through the model's
    `__init__`. Keys that are not strings cannot be passed by name: such a dict goes the
    library's way."""
    try:
        return model(**data)
    except TypeError:
        return model.model_validate(data)


def validate_element(cls: type[FhirBase], value: Any,
                     model_klass: type[FHIRAbstractModel]) -> Any:
    """The library's element validator, with a dict `build` by the element's model."""
    if isinstance(value, dict):
        value = build(model_klass, value)
    return LIBRARY_ELEMENT_VALIDATOR(cls, value, model_klass)


def install() -> None:
    """Model classes built from now on run this module's null check; element validation
    goes through `validate_element` at once (the library looks it up on every call)."""
    FHIRAbstractModel.reject_null_complex_elements = classmethod(  # type: ignore[assignment,method-assign]
        reject_null_complex_elements)
    FhirBase.fhir_model_validator = classmethod(validate_element)  # type: ignore[assignment,method-assign]


def installed_in(model: type[FHIRAbstractModel]) -> bool:
    """Whether `model` was built with this module's null check."""
    check = model.__pydantic_decorators__.model_validators["reject_null_complex_elements"]
    return getattr(check.func, "__func__", None) is reject_null_complex_elements
