"""docker-compose.yml (which cannot be started here: no Docker engine) is checked for what a
user would trip over: it parses, every service runs a huimin command with arguments the CLI
accepts, the workers load the world the simulator generates, and the image has every package."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from streams.kafka_broker import KAFKA_VERSION
from tests.compose_file import (
    SERVICES,
    VARIABLE,
    parses_as_huimin,
    simulator_script,
    simulator_steps,
)
from tests.conftest import REPO


def test_compose_runs_kafka_topics_workers_and_the_simulator():
    assert set(SERVICES) >= {"kafka", "topics", "worker", "simulator"}
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert SERVICES["worker"]["deploy"]["replicas"] >= 1


def test_compose_runs_the_apache_kafka_version_the_kafka_tests_run():
    """The image `huimin broker --kind kafka` and the Kafka tests run from its jars, so that
    what compose starts is the broker the platform was tested on (the three brokers too)."""
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


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


@pytest.mark.parametrize("replay_exit, verify_exit, expected", [(0, 0, 0), (1, 0, 1), (1, 1, 1),
                                                                (0, 1, 1)])
def test_the_simulator_verifies_after_a_failed_replay_and_exits_with_its_status(
        tmp_path: Path, replay_exit: int, verify_exit: int, expected: int):
    """A replay that FAILs (visits given up while a worker restarted) ended the `&&` chain
    before verify, so ./out had no JUnit report naming them (a review). Run by sh, as the
    container does, with a stand-in `huimin` that notes its commands."""
    fake = tmp_path / "huimin"
    fake.write_text(f'#!/bin/sh\necho "$1" >> {tmp_path}/ran\n'
                    f'case "$1" in replay) exit {replay_exit};; verify) exit {verify_exit};; '
                    "esac\n")
    fake.chmod(0o755)
    (out := tmp_path / "out").mkdir()
    for earlier in ("results.jsonl", "report.xml"):
        (out / earlier).write_text("an earlier run's")
    done = subprocess.run(["sh", "-c", simulator_script().replace("/out/", f"{out}/")], env={
        **os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}, timeout=30)
    assert (tmp_path / "ran").read_text().split() == ["generate", "replay", "verify"]
    assert done.returncode == expected
    # an earlier run's results and report are gone before the replay: verify would pass them
    # again after a replay refused (a review)
    assert not (tmp_path / "out" / "results.jsonl").exists()
    assert not (tmp_path / "out" / "report.xml").exists()


def test_the_workers_load_the_world_the_simulator_generates():
    worker = parses_as_huimin(SERVICES["worker"]["command"])
    generate = parses_as_huimin(simulator_steps()[0])
    assert (worker["persons"], worker["seed"]) == (generate["persons"], generate["seed"])


def test_the_image_holds_every_package_and_every_file_its_install_reads():
    dockerfile = (REPO / "Dockerfile").read_text()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [p.removesuffix("*") for p in
                pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert "settlement" in packages  # the list the install reads
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile
    project = pyproject["project"]
    copied = {name for line in dockerfile.splitlines() if line.startswith("COPY ")
              for name in line.split()[1:-1]}
    assert {project["readme"], *project["license-files"], "pyproject.toml"} <= copied


def test_the_workers_run_as_the_images_own_user_in_folders_it_owns():
    """A worker serves HTTP and holds the platform's data: not as root. Only the simulator,
    which writes into a bind mount Docker may create as root, says otherwise."""
    lines = (REPO / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users == ["huimin"]
    assert lines.index("USER huimin") > max(i for i, line in enumerate(lines)
                                            if line.startswith(("RUN ", "COPY ")))
    owned = next(line for line in lines if "chown huimin:huimin" in line).split()
    data_dir = parses_as_huimin(SERVICES["worker"]["command"])["data_dir"]
    assert str(data_dir) in owned and "/out" in owned and "/app" in owned
    assert {name for name, service in SERVICES.items() if "user" in service} == {"simulator"}


THREE = {"KAFKA_BOOTSTRAP": "kafka1:9092,kafka2:9092,kafka3:9092", "REPLICATION": "3"}
BROKERS = ("kafka1", "kafka2", "kafka3")


def test_compose_variables_default_to_the_single_node_cluster():
    text = (REPO / "docker-compose.yml").read_text()
    used = {m[0]: m[1] for m in VARIABLE.findall(text)}
    assert used == {"KAFKA_BOOTSTRAP": "kafka:9092", "REPLICATION": "1",
                    "HUIMIN_SIGNING_SECRET": "",  # unset: the development secret
                    "HUIMIN_OPERATOR_TOKEN": ""}  # unset: the /fhir/ views serve loopback only
    assert parses_as_huimin(SERVICES["topics"]["command"])["replication"] == 1
    assert "profiles" not in SERVICES["kafka"]


def test_the_three_broker_profile_is_its_own_three_voter_quorum():
    envs = [SERVICES[name]["environment"] for name in BROKERS]
    for name, env in zip(BROKERS, envs, strict=True):
        assert SERVICES[name]["profiles"] == ["three-brokers"]
        assert SERVICES[name]["image"] == SERVICES["kafka"]["image"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        assert SERVICES[name]["healthcheck"]["test"] == SERVICES["kafka"]["healthcheck"]["test"]
    assert sorted(env["KAFKA_NODE_ID"] for env in envs) == [1, 2, 3]
    assert len({env["CLUSTER_ID"] for env in envs}) == 1
    voters = {f"{env['KAFKA_NODE_ID']}@{name}:9093"
              for name, env in zip(BROKERS, envs, strict=True)}
    for env in envs:
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters


def test_the_huimin_commands_switch_to_the_three_brokers():
    topics = parses_as_huimin(SERVICES["topics"]["command"], THREE)
    assert (topics["bootstrap"], topics["replication"]) == (THREE["KAFKA_BOOTSTRAP"], 3)
    assert parses_as_huimin(SERVICES["worker"]["command"], THREE)["bootstrap"] == \
        THREE["KAFKA_BOOTSTRAP"]
    replay = simulator_steps(THREE)[1]
    assert replay[replay.index("--bootstrap") + 1] == THREE["KAFKA_BOOTSTRAP"]
    advertised = {SERVICES[name]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
                  .removeprefix("PLAINTEXT://") for name in BROKERS}
    assert set(THREE["KAFKA_BOOTSTRAP"].split(",")) == advertised


def test_topics_waits_for_whichever_brokers_run():
    """Each broker is waited for when it runs and none is required, so that both the default
    project and `--profile three-brokers --scale kafka=0` are valid (Compose 2.23 refused a
    required dependency scaled to 0: docker/compose#11328)."""
    depends = SERVICES["topics"]["depends_on"]
    for name in ("kafka", *BROKERS):
        assert depends[name] == {"condition": "service_healthy", "required": False}


def test_workers_and_simulator_share_one_signing_secret():
    secret = {name: SERVICES[name]["environment"]["HUIMIN_SIGNING_SECRET"]
              for name in ("worker", "simulator")}
    assert secret["worker"] == secret["simulator"] == "${HUIMIN_SIGNING_SECRET:-}"
