"""Reaching a secured Kafka cluster (SASL and/or TLS) from every component: the workers (Faust
and aiokafka), the topic setup and the hospitals (kafka-python; their requests and answers
librdkafka, which takes the same settings under its own names: simulators/librdkafka.py).

The password comes from HUIMIN_SASL_PASSWORD only, never from a command line or a config
that a worker's command line carries (`ps` would show it).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import asdict, dataclass
from typing import Any

from messages.signing import DEVELOPMENT_SECRET

PASSWORD_ENV = "HUIMIN_SASL_PASSWORD"
SECRET_ENV = "HUIMIN_SIGNING_SECRET"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: The SASL mechanisms of a user name and password (the only credentials huimin takes).
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class ClusterSecurity:
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None  # one of SASL_MECHANISMS; PLAIN if not given
    sasl_username: str | None = None
    ssl_cafile: str | None = None

    def __post_init__(self) -> None:
        if self.security_protocol not in PROTOCOLS:
            raise ValueError(f"security protocol {self.security_protocol!r}: one of "
                             f"{', '.join(PROTOCOLS)}")
        if self.sasl_mechanism is not None and self.sasl_mechanism not in SASL_MECHANISMS:
            raise ValueError(f"SASL mechanism {self.sasl_mechanism!r}: one of "
                             f"{', '.join(SASL_MECHANISMS)}")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    @property
    def tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def kafka_python(self) -> dict[str, Any]:
        """Settings for kafka-python clients (admin, producers, consumers)."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl:
            out.update(sasl_mechanism=self.sasl_mechanism or "PLAIN",
                       sasl_plain_username=self.sasl_username,
                       sasl_plain_password=os.environ.get(PASSWORD_ENV))
        if self.tls and self.ssl_cafile:
            out["ssl_cafile"] = self.ssl_cafile
        return out

    def faust_credentials(self) -> Any:
        """`broker_credentials` for the Faust app, or None on a plain cluster."""
        import faust

        context = ssl.create_default_context(cafile=self.ssl_cafile) if self.tls else None
        if self.sasl:
            return faust.SASLCredentials(username=self.sasl_username,
                                         password=os.environ.get(PASSWORD_ENV),
                                         mechanism=self.sasl_mechanism or "PLAIN",
                                         ssl_context=context)
        if self.tls:
            return faust.SSLCredentials(context)
        return None


def configured_secret() -> tuple[bytes, bool]:
    """The hospitals' request-signing secret (HUIMIN_SIGNING_SECRET), and whether it is the
    development one (messages/signing.py)."""
    value = os.environ.get(SECRET_ENV)
    return (value.encode(), False) if value else (DEVELOPMENT_SECRET, True)
