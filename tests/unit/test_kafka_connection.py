"""How connection failures read (no broker here: the translations and the reasoning about a
probed listener; ``tests/kafka/test_security_kafka.py`` meets each case on a real broker)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)

from mesh.errors import AuthError, ConfigError
from mesh.kafka.connection import Listener, client_kwargs, kafka_errors, missing_permission
from mesh.kafka.connection import listener_mismatch as mismatch
from mesh.settings import Settings

SASL: dict[str, Any] = {"sasl_username": "svc", "sasl_password": "hunter2"}


def test_a_refused_login_says_login_refused_and_never_the_password() -> None:
    settings = Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", **SASL)
    error = SaslAuthenticationFailed("Authentication failed: invalid credentials")
    with pytest.raises(AuthError) as raised, kafka_errors(settings, "connect to Kafka"):
        raise error
    message = str(raised.value)
    assert message.startswith("could not connect to Kafka: login refused by 127.0.0.1:9092")
    assert "SASL user 'svc'" in message
    assert "invalid credentials" in message
    assert "hunter2" not in message


def test_an_unoffered_mechanism_is_named() -> None:
    settings = Settings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", **SASL)
    with (
        pytest.raises(AuthError, match="does not offer SASL mechanism PLAIN"),
        kafka_errors(settings),
    ):
        raise UnsupportedSaslMechanismError()


def test_an_untrusted_certificate_asks_for_the_ca() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "self-signed certificate in certificate chain"
    with pytest.raises(AuthError) as raised, kafka_errors(Settings(security_protocol="SSL")):
        raise error
    assert "is not trusted (self-signed certificate in certificate chain)" in str(raised.value)
    assert "MESH_SSL_CAFILE" in str(raised.value)


@pytest.mark.parametrize(
    ("configured", "listener", "words"),
    [
        (
            {"security_protocol": "PLAINTEXT"},
            Listener("SASL_PLAINTEXT", ("PLAIN", "SCRAM-SHA-512")),
            [
                "is the SASL_PLAINTEXT listener (SASL PLAIN, SCRAM-SHA-512)",
                "set MESH_SECURITY_PROTOCOL=SASL_PLAINTEXT and set MESH_SASL_MECHANISM",
            ],
        ),
        (
            {"security_protocol": "PLAINTEXT"},
            Listener("SSL"),
            ["is the SSL listener", "MESH_SECURITY_PROTOCOL=SSL and set MESH_SSL_CAFILE"],
        ),
        (
            {"security_protocol": "SSL"},
            Listener("PLAINTEXT"),
            ["is the PLAINTEXT listener", "MESH_SECURITY_PROTOCOL=PLAINTEXT"],
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", **SASL},
            Listener("SASL_SSL", ("SCRAM-SHA-256", "SCRAM-SHA-512")),
            ["does not offer SASL mechanism PLAIN (it offers SCRAM-SHA-256, SCRAM-SHA-512)"],
        ),
    ],
)
def test_a_listener_of_another_kind_is_named_with_what_to_set(
    configured: dict[str, Any], listener: Listener, words: list[str]
) -> None:
    found = mismatch(Settings(**configured), listener, "h:1")
    assert found is not None
    for word in words:
        assert word in found


def test_settings_that_fit_the_listener_are_no_mismatch() -> None:
    settings = Settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", **SASL)
    assert mismatch(settings, Listener("SASL_SSL", ("SCRAM-SHA-512",)), "h:1") is None


@pytest.mark.parametrize("content", [None, "not a certificate"])
def test_a_ca_file_that_cannot_be_used_is_a_config_error(
    tmp_path: Path, content: str | None
) -> None:
    cafile = tmp_path / "ca.pem"
    if content is not None:
        cafile.write_text(content)
    with pytest.raises(ConfigError, match=r"MESH_SSL_CAFILE .* is not a usable CA bundle"):
        client_kwargs(Settings(security_protocol="SSL", ssl_cafile=cafile))


def test_a_refused_read_names_the_principal_operation_and_topics() -> None:
    settings = Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", **SASL)
    with pytest.raises(AuthError) as raised, kafka_errors(settings, "consume tasks"):
        raise TopicAuthorizationFailedError({"mesh.b", "mesh.a"})
    message = str(raised.value)
    assert "User:svc may not READ topic 'mesh.a, mesh.b'" in message
    assert raised.value.fields == {
        "operation": "READ",
        "resource": "topic",
        "name": "mesh.a, mesh.b",
    }


def test_a_refused_write_group_or_transaction_names_what_is_missing() -> None:
    cases = [
        ("publish results", TopicAuthorizationFailedError("mesh.r"), ("WRITE", "topic", "mesh.r")),
        ("join the group", GroupAuthorizationFailedError("mesh.g"), ("READ", "group", "mesh.g")),
        (
            "publish results",
            TransactionalIdAuthorizationFailed(),
            ("WRITE", "transactional id", None),
        ),
        (
            "publish results",
            ClusterAuthorizationFailedError(),
            ("IDEMPOTENT_WRITE", "cluster", "kafka-cluster"),
        ),
        ("create topics", TopicAuthorizationFailedError("mesh.x"), ("CREATE", "topic", "mesh.x")),
    ]
    for action, error, expected in cases:
        assert missing_permission(error, action) == expected, action
    with (
        pytest.raises(
            AuthError, match=r"^could not .* User:ANONYMOUS may not WRITE the transactional id"
        ),
        kafka_errors(Settings(), "publish results"),
    ):
        raise TransactionalIdAuthorizationFailed()
