"""One settings object, read from ``MESH_*`` environment variables and overridden by flags.

It is built once at the edge (CLI, ``mesh dev``, a component's entry point) and passed into
everything that needs it; nothing deeper reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Settings(BaseSettings):
    """Connection and naming settings shared by every mesh process."""

    model_config = SettingsConfigDict(env_prefix="MESH_", frozen=True, extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers."
    )
    topic_prefix: str = Field(default="mesh.", description="Prefix of every topic mesh owns.")
    client_id: str = Field(default="mesh", description="Kafka client id reported to brokers.")
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(default=None, description="CA bundle that signs the brokers.")
    request_timeout_ms: int = Field(default=15_000, ge=1_000)
    max_event_bytes: int = Field(
        default=1_000_000, ge=1_024, description="Largest encoded event accepted or produced."
    )
    state_dir: Path = Field(
        default=Path.home() / ".mesh", description="Where pid files of local brokers are kept."
    )

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_topic_safe(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9._-]*", value):
            raise ValueError("topic prefix may hold only letters, digits, '.', '_' and '-'")
        return value

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``"workflow.events"``."""
        return f"{self.topic_prefix}{name}"

    def redacted(self) -> dict[str, object]:
        """Settings as a dict that is safe to print or log (secrets masked)."""
        data = self.model_dump(mode="json")
        if self.sasl_password is not None:
            data["sasl_password"] = "**********"  # noqa: S105 - the mask, not a password
        return data
