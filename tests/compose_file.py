"""docker-compose.yml as the tests read it: its services, `${NAME:-default}` as Compose
interpolates it, and a service's command as the huimin CLI would parse it."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

import typer
import yaml

from huimin.cli import app
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
CLI = typer.main.get_command(app)


VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def with_compose_defaults(text: str, env: Mapping[str, str] | None = None) -> str:
    """`${NAME:-default}` as Compose interpolates it: NAME's value if set and not empty,
    else the default; `$$` a `$` for the shell."""
    env = env or {}
    return VARIABLE.sub(lambda m: env.get(m[1]) or (m[2] or ""), text).replace("$$", "$")


def parses_as_huimin(args: list[str], env: Mapping[str, str] | None = None) -> dict:
    """The parameters click would run the subcommand with (raises on unknown options)."""
    args = [with_compose_defaults(arg, env) for arg in args]
    assert isinstance(CLI, typer.core.TyperGroup)  # huimin's commands are its subcommands
    command = CLI.get_command(None, args[0])  # type: ignore[arg-type]
    assert command is not None, f"huimin has no command {args[0]!r}"
    return command.make_context(args[0], list(args[1:])).params


def simulator_script(env: Mapping[str, str] | None = None) -> str:
    """The shell script the simulator's container runs (`sh -c`)."""
    return with_compose_defaults(" ".join(SERVICES["simulator"]["command"]), env)


def simulator_steps(env: Mapping[str, str] | None = None) -> list[list[str]]:
    """The huimin commands of the simulator's script, each without `huimin`."""
    parts = (shlex.split(part) for part in re.split(r"&&|;|[{}]", simulator_script(env)))
    return [words[1:] for words in parts if words and words[0] == "huimin"]
