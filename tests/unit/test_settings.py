"""Settings come from MESH_* variables and flags, and never reveal secrets."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mesh.kafka.connection import client_kwargs
from mesh.settings import Settings
from tests.helpers import assert_one_line_error, run_mesh


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("MESH_TOPIC_PREFIX", "team-a.")
    monkeypatch.setenv("MESH_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("MESH_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("MESH_SASL_USERNAME", "svc")
    monkeypatch.setenv("MESH_SASL_PASSWORD", "hunter2")
    settings = Settings()
    assert settings.bootstrap_servers == "k1:9092,k2:9092"
    assert settings.topic("workflow.events") == "team-a.workflow.events"
    kwargs = client_kwargs(settings)
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_password"] == "hunter2"
    assert "ssl_context" in kwargs


def test_explicit_values_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_TOPIC_PREFIX", "env.")
    assert Settings(topic_prefix="flag.").topic_prefix == "flag."


def test_secrets_never_appear_in_repr_or_redacted_dump() -> None:
    settings = Settings(sasl_username="svc", sasl_password="hunter2")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.redacted())
    assert settings.redacted()["sasl_password"] == "**********"


def test_plaintext_has_no_sasl_or_tls_arguments() -> None:
    kwargs = client_kwargs(Settings())
    assert kwargs["security_protocol"] == "PLAINTEXT"
    assert not {"sasl_mechanism", "ssl_context"} & kwargs.keys()


@pytest.mark.parametrize("prefix", ["mesh/", "has space.", "ü."])
def test_unsafe_prefixes_are_rejected(prefix: str) -> None:
    with pytest.raises(ValidationError):
        Settings(topic_prefix=prefix)


def test_bad_setting_from_environment_is_one_cli_line() -> None:
    line = assert_one_line_error(
        run_mesh("broker", "status", env={"MESH_SECURITY_PROTOCOL": "CARRIER_PIGEON"})
    )
    assert "security_protocol" in line


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "svc"}, "MESH_SASL_PASSWORD"),
        ({"sasl_password": "hunter2"}, "MESH_SASL_USERNAME"),
    ],
)
def test_a_sasl_protocol_without_credentials_is_refused_naming_the_variable(
    given: dict[str, Any], missing: str
) -> None:
    with pytest.raises(ValidationError, match=f"{missing} is not set") as raised:
        Settings(security_protocol="SASL_SSL", **given)
    assert "hunter2" not in str(raised.value)


def test_a_missing_sasl_password_is_one_cli_line_not_a_traceback() -> None:
    """Today's 60-line aiokafka traceback, as one line naming the variable to set."""
    line = assert_one_line_error(
        run_mesh(
            "topics",
            "plan",
            env={
                "MESH_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "MESH_SASL_MECHANISM": "SCRAM-SHA-256",
                "MESH_SASL_USERNAME": "svc",
            },
        )
    )
    assert "MESH_SASL_PASSWORD is not set" in line
    assert "SCRAM-SHA-256" in line
