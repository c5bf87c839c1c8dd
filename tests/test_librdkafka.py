"""What the hospitals' two librdkafka clients share (simulators/librdkafka.py): a secured
cluster's settings under librdkafka's names, and their log's repeats held back by what
failed."""

from __future__ import annotations

import logging

import pytest

from simulators.librdkafka import (
    client_config,
    client_log,
    librdkafka_settings,
    log_line_kind,
    not_a_retry_while_starting,
)
from streams.log_repeats import RepeatsHeldBack
from streams.security import PASSWORD_ENV, ClusterSecurity


def test_a_secured_clusters_settings_are_given_in_librdkafkas_names(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    security = ClusterSecurity("SASL_SSL", "SCRAM-SHA-256", "hospitals", "/etc/ca.pem")
    assert librdkafka_settings({**security.kafka_python(), "client_id": "h",
                                "fetch_max_wait_ms": 50}) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "hospitals", "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ca.pem", "client.id": "h", "fetch.wait.max.ms": 50}
    assert librdkafka_settings(ClusterSecurity().kafka_python()) == {}


def test_a_setting_with_no_librdkafka_name_is_refused_not_dropped():
    with pytest.raises(ValueError, match="no librdkafka setting for ssl_certfile"):
        librdkafka_settings({"security_protocol": "SSL", "ssl_certfile": "/etc/me.pem"})


def test_tls_without_a_ca_file_trusts_the_systems_certificates_as_kafka_python_does():
    assert client_config("b:9093", {"security_protocol": "SSL"})["ssl.ca.location"] == "probe"
    given = client_config("b:9093", {"security_protocol": "SASL_SSL", "ssl_cafile": "/ca.pem"})
    assert given["ssl.ca.location"] == "/ca.pem"
    assert "ssl.ca.location" not in client_config("b:9092", {})


def test_requests_go_out_at_once_as_kafka_pythons_do_not_held_for_nagle():
    assert client_config("b:9092", {})["socket.nagle.disable"] is True


def test_repeats_are_told_apart_by_what_failed_not_by_port_or_time():
    """A refused connection retried is one kind; a failed TLS handshake behind it is another,
    and shows. A lone dict argument (logging's `%(name)s` form) does not break the filter."""
    def line(text: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("huimin.hospitals.answers", logging.ERROR, __file__, 1, text,
                                 args, None)

    held = RepeatsHeldBack(kind=log_line_kind)
    refused = "[thrd:127.0.0.1:{0}/bootstrap]: Connect to ipv4#127.0.0.1:{0} failed (after {1}ms)"
    template = "%s [%s] %s"
    assert held.filter(line(template, "FAIL", "c#consumer-1", refused.format(9092, 0)))
    assert not held.filter(line(template, "FAIL", "c#consumer-1", refused.format(9092, 12)))
    assert held.filter(line(template, "FAIL", "c#consumer-1",
                            "[thrd:b:9093/bootstrap]: SSL handshake failed"))
    assert held.filter(line("%(what)s", {"what": "a dict argument"}))


def test_a_fresh_kafkas_coordinator_still_loading_is_not_shown_other_failures_are():
    """Every bench and run on a fresh Apache Kafka printed librdkafka's `GETPID … Failed to
    acquire idempotence PID …: retrying` among huimin's own lines (a new user's review)."""
    def line(text: str) -> logging.LogRecord:
        return logging.LogRecord("huimin.hospitals.requests", logging.WARNING, __file__, 1,
                                 "%s [%s] %s", ("GETPID", "huimin-hospitals-requests#producer-2",
                                                text), None)

    starting = line("[thrd:main]: Failed to acquire idempotence PID from broker "
                    "127.0.0.1:48885/1: Broker: Coordinator load in progress: retrying")
    refused = line("[thrd:main]: Failed to acquire idempotence PID from broker "
                   "127.0.0.1:48885/1: Broker: Cluster authorization failed")
    assert not not_a_retry_while_starting(starting)
    assert not_a_retry_while_starting(refused)
    log = client_log("huimin.hospitals.requests")
    assert not log.filter(starting) and log.filter(refused)
