"""records/fhir_null_check.py: the per-class null check decides exactly as fhir.resources'
own check does, on every R4B model, and the models ingress validation builds use it."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import fhir.resources.R4B as r4b
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError

from records.fhir_null_check import (
    LIBRARY_CHECK,
    complex_list_fields,
    installed_in,
    reject_null_complex_elements,
)
from records.validation import InvalidResource, Validator


def r4b_models() -> list[type[FHIRAbstractModel]]:
    """Every model class of fhir.resources.R4B (683 in 8.3.0)."""
    for module in pkgutil.iter_modules(r4b.__path__):
        if not module.name.startswith("fhirtypes"):
            importlib.import_module(f"{r4b.__name__}.{module.name}")

    def below(cls: type) -> Iterator[type]:
        for sub in cls.__subclasses__():
            yield sub
            yield from below(sub)

    return sorted({c for c in below(FHIRAbstractModel) if c.__module__.startswith(r4b.__name__)},
                  key=lambda c: f"{c.__module__}.{c.__qualname__}")


def outcome(check: Any, cls: type, data: Any) -> Any:
    """What a check does with `data`: the value it passes on, or the errors it raises."""
    try:
        return ("passed", check(cls, data))
    except ValidationError as exc:
        return ("refused", exc.title, exc.errors())


def inputs(cls: type[FHIRAbstractModel]) -> Iterator[Any]:
    """Inputs that tell the checks apart if they differ: nothing; a null, and no null, in each
    list field (complex or primitive, `_field` lists included), by name and by alias; two
    nulls at once; and a value that is not a dict."""
    yield {}
    yield "not a dict"
    lists = [(name, field.alias) for name, field in cls.model_fields.items()
             if "list" in str(field.annotation).lower()]
    for name, alias in lists:
        for key in {name, alias or name}:
            yield {key: [None]}
            yield {key: [{}, None]}
            yield {key: [{}]}
            yield {key: None}
    if len(lists) >= 2:
        yield {lists[0][0]: [None], lists[1][0]: [None]}


def test_the_per_class_check_decides_as_the_library_does_on_every_r4b_model() -> None:
    models = r4b_models()
    assert len(models) > 600
    compared = refused = 0
    for cls in models:
        for data in inputs(cls):
            mine = outcome(reject_null_complex_elements, cls, data)
            assert mine == outcome(LIBRARY_CHECK, cls, data), (cls.__name__, data)
            compared += 1
            refused += mine[0] == "refused"
    assert refused > 1000 and compared > refused  # both kinds of answer were compared


def test_only_lists_of_complex_elements_are_checked() -> None:
    patient = get_fhir_model_class("Patient")
    fields = dict(complex_list_fields(patient))
    assert {"name", "identifier", "contact"} <= fields.keys()
    assert not {"active", "birthDate", "gender"} & fields.keys()  # not lists
    assert not [f for f in fields if f.endswith("__ext")]
    assert "given" not in dict(complex_list_fields(get_fhir_model_class("HumanName")))


def test_the_models_ingress_validation_builds_use_the_per_class_check() -> None:
    assert installed_in(get_fhir_model_class("Patient"))
    assert installed_in(get_fhir_model_class("Bundle"))
    with pytest.raises(InvalidResource, match=r"Patient\.name: .*None is not allowed"):
        Validator().validate({"resourceType": "Patient", "name": [None]})
    Validator().validate({"resourceType": "Patient", "name": [{"family": "Li"}]})
