"""Every component reaches a secured cluster the same way; the SASL password comes from the
environment only and never travels in a worker's configuration (its command line)."""

from __future__ import annotations

import os
from pathlib import Path

import faust
import orjson
import pytest

from huimin.cli_options import security_settings
from streams.config import WorkerConfig
from streams.security import PASSWORD_ENV, ClusterSecurity
from tests.conftest import run_huimin


def test_a_plain_cluster_needs_no_settings():
    plain = ClusterSecurity()
    assert plain.kafka_python() == {} and plain.faust_credentials() is None


def test_sasl_over_tls_reaches_kafka_python_and_faust_with_the_password_from_the_environment(
        monkeypatch, tmp_path):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    security = ClusterSecurity("SASL_SSL", "SCRAM-SHA-512", "huimin", None)
    assert security.kafka_python() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "huimin", "sasl_plain_password": "s3cret"}
    credentials = security.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "huimin" and credentials.password == "s3cret"
    assert credentials.ssl_context is not None  # TLS under SASL
    cfg = WorkerConfig(bootstrap="broker:9093", security=security)
    text = orjson.dumps(cfg.to_dict()).decode()
    assert "s3cret" not in text  # what a worker's command line carries
    assert WorkerConfig.from_dict(orjson.loads(text)).security == security


def test_tls_alone_gives_faust_an_ssl_context():
    assert isinstance(ClusterSecurity("SSL").faust_credentials(), faust.SSLCredentials)


def test_an_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="one of"):
        ClusterSecurity("SASL")


def test_replay_takes_the_same_security_options_and_no_password_on_its_command_line(tmp_path):
    log = tmp_path / "visits.jsonl"
    assert run_huimin(["generate", "-o", str(log), "--persons", "50", "--visits", "3"],
                      timeout=120).returncode == 0
    bogus = run_huimin(["replay", str(log), "--rate", "1", "--bootstrap", "127.0.0.1:1",
                        "--security-protocol", "SASL"], timeout=120)
    assert bogus.returncode == 2 and "one of PLAINTEXT" in said(bogus.stderr)
    password = run_huimin(["replay", str(log), "--rate", "1", "--bootstrap", "127.0.0.1:1",
                           "--sasl-password", "s3cret"], timeout=120)
    assert password.returncode == 2 and "No such option" in said(password.stderr)


def test_a_missing_ca_file_user_name_or_password_or_a_wrong_sasl_setting_is_named_at_once(
        tmp_path: Path):
    """Without these checks each showed, after 30 s, as 'cannot reach the cluster (is it
    up?)' (a mechanism no client knows, a review found), or was dropped without a word (a
    user name on a plain cluster). The bootstrap is an address nothing is asked of."""
    env = {**os.environ, PASSWORD_ENV: ""}
    cases = [
        (["--security-protocol", "SSL", "--ssl-cafile", str(tmp_path / "ca.pem")],
         f"{tmp_path / 'ca.pem'}: no such file"),
        (["--security-protocol", "SASL_PLAINTEXT"], "SASL_PLAINTEXT needs the user name"),
        (["--security-protocol", "SASL_SSL", "--sasl-username", "huimin"],
         f"SASL_SSL needs the password in {PASSWORD_ENV}, which is not set"),
        (["--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "BOGUS",
          "--sasl-username", "huimin"],
         "SASL mechanism 'BOGUS': one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
        (["--sasl-username", "huimin", "--sasl-mechanism", "SCRAM-SHA-512"],
         "PLAINTEXT takes no SASL user name or mechanism"),
        (["--security-protocol", "SSL", "--ssl-cafile", str(tmp_path)],
         f"{tmp_path}: a folder, not a file"),
        # a CA file without TLS was dropped, and a SASL password then went out in clear
        (["--ssl-cafile", str(tmp_path / "ca.pem")], "PLAINTEXT uses no TLS, so no CA file"),
        (["--security-protocol", "SASL_PLAINTEXT", "--sasl-username", "huimin",
          "--ssl-cafile", str(tmp_path / "ca.pem")],
         "SASL_PLAINTEXT uses no TLS, so no CA file: give SSL or SASL_SSL"),
    ]
    for options, message in cases:
        proc = run_huimin(["topics", "--bootstrap", "127.0.0.1:1", *options], timeout=60,
                          env=env)
        flat = said(proc.stderr).replace(" ", "")  # a long path is wrapped anywhere
        assert proc.returncode == 2 and message.replace(" ", "") in flat, proc.stderr
        assert "is it up" not in proc.stderr


def said(stderr: str) -> str:
    return " ".join(stderr.replace("│", " ").split())  # rich boxes and wraps errors


def test_a_mechanism_is_taken_in_any_case_and_an_empty_one_as_the_default(
        monkeypatch: pytest.MonkeyPatch):
    """`--sasl-mechanism scram-sha-512`, as brokers' docs often write it, and `"$MECH"` with
    MECH unset (PLAIN, as before the mechanism was checked)."""
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    assert security_settings("SASL_SSL", "scram-sha-512", "huimin", None).sasl_mechanism \
        == "SCRAM-SHA-512"
    assert security_settings("SASL_SSL", "", "huimin", None).kafka_python()[
        "sasl_mechanism"] == "PLAIN"
