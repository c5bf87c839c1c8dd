"""`--policy FILE`: the provinces' policy parameters (settlement/parameters.py) read from YAML."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from settlement.parameters import ParameterError, as_data, parse_parameters
from simulators.regions import PROVINCES

#: A whole number as people write one (YAML 1.1 also reads 010 as 8, 0x10 as 16, 1:30 as 90).
_DECIMAL = re.compile(r"[-+]?(0|[1-9][0-9_]*)")


class AmbiguousYaml(yaml.MarkedYAMLError):
    """YAML that parses, but not as its writer meant: a key given twice (YAML keeps the last
    one silently) or a number in another base. A policy sets money, so it is refused."""


class PolicyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses what `AmbiguousYaml` names."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()  # 310000 and "310000" are one province
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *shared`, which keys given
                continue                                # here override, as YAML means
            key = str(self.construct_object(key_node, deep=True))
            if key in seen:
                raise AmbiguousYaml(problem=f"{key} is given twice in one mapping",
                                    problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_decimal_int(self, node: yaml.ScalarNode) -> int:
        if not _DECIMAL.fullmatch(node.value):
            raise AmbiguousYaml(problem=f"write {node.value} as a decimal number (YAML reads it "
                                        f"as {self.construct_yaml_int(node)})",
                                problem_mark=node.start_mark)
        return int(node.value.replace("_", ""))

    def construct_checked_timestamp(self, node: yaml.ScalarNode) -> Any:
        """A date or time, or refused where it is written (YAML's own error has no line)."""
        try:
            return self.construct_yaml_timestamp(node)
        except ValueError as exc:
            raise AmbiguousYaml(problem=f"{node.value} is not a day ({exc})",
                                problem_mark=node.start_mark) from None


PolicyLoader.add_constructor("tag:yaml.org,2002:int", PolicyLoader.construct_decimal_int)
PolicyLoader.add_constructor("tag:yaml.org,2002:timestamp",
                             PolicyLoader.construct_checked_timestamp)


def read_policy_file(path: Path) -> dict[str, Any] | None:
    """The checked parameters of `path`, as a world's spec keeps them (None: none given).
    ParameterError names the file and what is wrong; OSError is left to the caller."""
    try:
        data = yaml.load(path.read_bytes(), Loader=PolicyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
        where = f"line {mark.line + 1}: {problem}" if mark is not None else ""
        if isinstance(exc, AmbiguousYaml):
            raise ParameterError(f"{path}: {where}") from None
        raise ParameterError(f"{path}: not YAML{f' ({where})' if where else ''}") from None
    try:
        return as_data(parse_parameters(data, PROVINCES))
    except ParameterError as exc:
        raise ParameterError(f"{path}: {exc}") from None
