"""docker-compose.yml (which cannot be started here: no Docker engine) is checked for what a
user would trip over: it parses, every service runs a huimin command with arguments the CLI
accepts, the workers load the world the simulator generates, and the image has every package."""

from __future__ import annotations

import shlex

import typer
import yaml

from huimin.cli import app
from tests.conftest import REPO

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
CLI = typer.main.get_command(app)


def parses_as_huimin(args: list[str]) -> dict:
    """The parameters click would run the subcommand with (raises on unknown options)."""
    command = CLI.get_command(None, args[0])  # type: ignore[arg-type]
    assert command is not None, f"huimin has no command {args[0]!r}"
    return command.make_context(args[0], list(args[1:])).params


def simulator_steps() -> list[list[str]]:
    script = " ".join(SERVICES["simulator"]["command"])
    return [shlex.split(part)[1:] for part in script.split("&&")]


def test_compose_runs_kafka_topics_workers_and_the_simulator():
    assert set(SERVICES) >= {"kafka", "topics", "worker", "simulator"}
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert SERVICES["worker"]["deploy"]["replicas"] >= 1


def test_every_service_command_is_a_huimin_command_the_cli_accepts(tmp_path):
    for name in ("topics", "worker"):
        params = parses_as_huimin(SERVICES[name]["command"])
        assert params["bootstrap"] == "kafka:9092"
    steps = simulator_steps()
    assert [s[0] for s in steps] == ["generate", "replay", "verify"]
    for step in steps:  # the container's files, here (the CLI checks that inputs exist)
        local = []
        for arg in step:
            if arg.startswith(("/tmp/", "/out/")):
                path = tmp_path / arg.strip("/").replace("/", "_")
                path.touch()
                arg = str(path)
            local.append(arg)
        parses_as_huimin(local)


def test_the_workers_load_the_world_the_simulator_generates():
    worker = parses_as_huimin(SERVICES["worker"]["command"])
    generate = parses_as_huimin(simulator_steps()[0])
    assert (worker["persons"], worker["seed"]) == (generate["persons"], generate["seed"])


def test_the_image_holds_every_package():
    dockerfile = (REPO / "Dockerfile").read_text()
    for package in ("huimin", "messages", "settlement", "records", "simulators", "streams",
                    "benchmarks"):
        assert f"COPY {package} ./{package}" in dockerfile
