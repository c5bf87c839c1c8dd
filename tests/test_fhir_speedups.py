"""records/fhir_speedups.py: validation with them decides exactly as fhir.resources' own code
does. The null check is compared on every R4B model; element and resource validation on FHIR
written by others (tests/data/fhir) and on broken copies of each of its resources."""

from __future__ import annotations

import copy
import importlib
import pkgutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fhir.resources.R4B as r4b
import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase
from pydantic import ValidationError

from records.fhir_speedups import (
    LIBRARY_ELEMENT_VALIDATOR,
    LIBRARY_NULL_CHECK,
    build,
    complex_list_fields,
    installed_in,
    reject_null_complex_elements,
    validate_element,
)
from records.validation import InvalidResource, Validator
from tests.conftest import FHIR_DATA


def r4b_models() -> list[type[FHIRAbstractModel]]:
    """Every model class of fhir.resources.R4B (683 in 8.3.0)."""
    for module in pkgutil.iter_modules(r4b.__path__):
        if not module.name.startswith("fhirtypes"):
            importlib.import_module(f"{r4b.__name__}.{module.name}")

    def below(cls: type) -> Iterator[type]:
        sub: type
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
            assert mine == outcome(LIBRARY_NULL_CHECK, cls, data), (cls.__name__, data)
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


def test_the_models_ingress_validation_builds_use_both() -> None:
    assert FhirBase.__dict__["fhir_model_validator"].__func__ is validate_element
    assert installed_in(get_fhir_model_class("Patient"))
    assert installed_in(get_fhir_model_class("Bundle"))
    with pytest.raises(InvalidResource, match=r"Patient\.name: .*None is not allowed"):
        Validator().validate({"resourceType": "Patient", "name": [None]})
    Validator().validate({"resourceType": "Patient", "name": [{"family": "Li"}]})


@contextmanager
def library_elements() -> Iterator[None]:
    """Nested elements validated by the library's own validator meanwhile."""
    FhirBase.fhir_model_validator = classmethod(LIBRARY_ELEMENT_VALIDATOR)  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        FhirBase.fhir_model_validator = classmethod(validate_element)  # type: ignore[assignment,method-assign]


def library_build(model: type[FHIRAbstractModel], data: dict[str, Any]) -> Any:
    return model.model_validate(data)


def validated(resource: dict[str, Any], build_with: Any = build) -> Any:
    """The model as JSON, the errors (without their documentation links; the exceptions in
    their context as text: two exceptions are never equal), or how the library failed."""
    try:
        model = build_with(get_fhir_model_class(resource["resourceType"]), resource)
    except ValidationError as exc:
        return ("invalid", exc.title, [{k: repr(v) if k == "ctx" else v
                                        for k, v in e.items() if k != "url"}
                                       for e in exc.errors()])
    except Exception as exc:  # the library's own failures (a resourceType that is no text)
        return ("failed", type(exc).__name__, str(exc))
    return ("valid", model.model_dump_json())


def nested_dicts(value: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if depth:
            yield value
        for v in value.values():
            yield from nested_dicts(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            yield from nested_dicts(v, depth + 1)


def broken_copies(resource: dict[str, Any], per_kind: int = 3) -> Iterator[dict[str, Any]]:
    """Copies of `resource` with one nested element broken: an unknown field, a wrong type
    where text goes, a null in a list, text where an element goes."""
    count = sum(1 for _ in nested_dicts(resource))
    for i in range(0, count, max(1, count // per_kind)):
        for kind in range(4):
            broken = copy.deepcopy(resource)
            element = next(e for n, e in enumerate(nested_dicts(broken)) if n == i)
            key = next(iter(element))
            if kind == 0:
                element["notAFhirField"] = 1
            elif kind == 1:
                element[key] = {"not": "text"} if isinstance(element[key], str) else [7]
            elif kind == 2:
                element[key] = [*element[key], None] if isinstance(element[key], list) else [None]
            else:
                element.clear()
                element["reference"] = ["x"]
            yield broken


def units(path: Path) -> list[dict[str, Any]]:
    """The file's resource and, for a Bundle, its first resource of each type."""
    resource = orjson.loads(path.read_bytes())
    found = [resource]
    kinds: set[str | None] = set()
    for entry in resource.get("entry", []):
        inner = entry.get("resource") or {}
        if inner.get("resourceType") not in kinds:
            kinds.add(inner.get("resourceType"))
            found.append(inner)
    return found


FILES = sorted(FHIR_DATA.glob("*/*.json"))


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_elements_are_validated_as_the_library_does_on_fhir_written_by_others(path: Path):
    whole, *parts = units(path)
    assert validated(whole)[0] == "valid"
    cases = [whole] + [b for unit in (parts or [whole])[:12] for b in broken_copies(unit)]
    outcomes = [validated(c) for c in cases]
    with library_elements():
        assert [validated(c, library_build) for c in cases] == outcomes
    assert sum(o[0] == "invalid" for o in outcomes) >= len(cases) // 2  # mostly refused
