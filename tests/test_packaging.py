"""What `pip install .` gives (the Docker image installs just that) runs every command: each
module the installed packages import is the standard library's, the project's own, or
brought by `[project].dependencies` — not only by the `dev` extra, which `make` installs and
a user's image does not (PyYAML was once only there: every command failed on import)."""

from __future__ import annotations

import ast
import contextlib
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("huimin", "messages", "settlement", "records", "simulators", "streams", "benchmarks")


def _name(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def installed_with_the_project() -> set[str]:
    """The distributions `[project].dependencies` bring, with what they require in turn."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    todo = [Requirement(r) for r in declared]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if (name := _name(req.name)) in seen:
            continue
        seen.add(name)
        with contextlib.suppress(PackageNotFoundError):
            todo += [Requirement(r) for r in requires(req.name) or []]
    return seen


def imported_at_run_time() -> dict[str, str]:
    """Top-level module -> a file of the installed packages importing it (tests left out)."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name.startswith("test_") or path.name == "conftest.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module \
                    and node.level == 0 else []
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_module_the_commands_import_comes_with_pip_install_dot():
    brought = installed_with_the_project()
    providers = packages_distributions()
    missing = {module: where for module, where in imported_at_run_time().items()
               if module not in sys.stdlib_module_names and module not in PACKAGES
               and not {_name(d) for d in providers.get(module, [module])} & brought}
    assert not missing, f"imported, but only a dev extra or nothing installs them: {missing}"
