"""`--policy FILE`: the provinces' policy parameters (settlement/parameters.py) read from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from settlement.parameters import ParameterError, as_data, parse_parameters
from simulators.regions import PROVINCES


def read_policy_file(path: Path) -> dict[str, Any] | None:
    """The checked parameters of `path`, as a world's spec keeps them (None: none given).
    ParameterError names the file and what is wrong; OSError is left to the caller."""
    try:
        data = yaml.safe_load(path.read_bytes())
    except yaml.YAMLError as exc:
        mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
        where = f" (line {mark.line + 1}: {problem})" if mark is not None else ""
        raise ParameterError(f"{path}: not YAML{where}") from None
    try:
        return as_data(parse_parameters(data, PROVINCES))
    except ParameterError as exc:
        raise ParameterError(f"{path}: {exc}") from None
