"""Every component reaches a secured cluster the same way; the SASL password comes from the
environment only and never travels in a worker's configuration (its command line)."""

from __future__ import annotations

import faust
import orjson
import pytest

from streams.config import WorkerConfig
from streams.security import PASSWORD_ENV, ClusterSecurity


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
