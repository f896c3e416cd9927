"""One settings object, read from ``MESH_*`` environment variables and overridden by flags.

It is built once at the edge (CLI, ``mesh dev``, a component's entry point) and passed into
everything that needs it; nothing deeper reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_serializer, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    sasl_mechanism: SaslMechanism | None = Field(
        default=None, description="SASL mechanism of a SASL_* protocol [default: PLAIN]."
    )
    # validate_default: a SASL protocol without a user or password fails here, in one line,
    # instead of deep inside aiokafka at the first connection.
    sasl_username: str | None = Field(default=None, validate_default=True)
    sasl_password: SecretStr | None = Field(default=None, validate_default=True)
    ssl_cafile: Path | None = Field(default=None, description="CA bundle that signs the brokers.")
    request_timeout_ms: int = Field(default=15_000, ge=1_000)
    fetch_max_wait_ms: int = Field(
        default=500,
        ge=0,
        le=30_000,
        description="How long a consumer on the task path lets the broker hold a fetch that has "
        "nothing yet. Apache Kafka answers as soon as a record arrives, so the default costs no "
        "latency there; the embedded broker waits the whole time, so mesh dev sets 10.",
    )
    max_batch_bytes: int = Field(
        default=524_288,
        ge=16_384,
        description="Bytes a producer on the task path puts in one record batch (aiokafka's "
        "16 KiB default made an assignment round of 640 records take ~32 requests).",
    )
    max_event_bytes: int = Field(
        default=1_000_000, ge=1_024, description="Largest encoded event accepted or produced."
    )
    output_cap_bytes: int = Field(
        default=1_048_576,
        ge=1_024,
        description="Bytes of output (TaskOutput chunks) an agent publishes per attempt; the "
        "chunk that reaches the cap is marked truncated and the rest is dropped.",
    )
    output_interval_seconds: float = Field(
        default=0.25,
        ge=0.01,
        le=10,
        description="How often an agent publishes a running attempt's new output: lines are "
        "batched over this interval, so a chatty program costs a few events a second.",
    )
    payload_threshold_bytes: int = Field(
        default=262_144,
        ge=1_024,
        description="An output larger than this (as JSON) goes by reference: stored in chunks "
        "on the `payloads` topic, the event carrying its id, size and sha256 digest.",
    )
    payload_chunk_bytes: int = Field(
        default=524_288,
        ge=1_024,
        description="Bytes of payload per chunk record (base64 in the record: keep it under "
        "3/4 of max_event_bytes; a smaller max_event_bytes makes chunks smaller).",
    )
    state_dir: Path = Field(
        default=Path.home() / ".mesh", description="Where pid files of local brokers are kept."
    )
    # NoDecode + the validators below: these travel through the environment as plain text
    # (``MESH_PLANNER_TEMPLATES=/a:/b``, ``MESH_PLANNER_CAPABILITY_MAP=design=shell,*=shell``),
    # and serialise back to that text, so ``to_env`` hands them to child processes unchanged.
    planner_templates: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(),
        description="Extra Task Planner template directories (os.pathsep-separated in the "
        "environment); later ones override earlier ones and the built-ins.",
    )
    planner_capability_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Rename template capabilities for the agents at hand, e.g. "
        "`design=shell,code=shell` or `*=shell` (everything runs on command agents).",
    )
    resource_pools: Path | None = Field(
        default=None,
        description="YAML file of the Resource Allocator's pools; none = ./resources/pools.yaml "
        "if it exists.",
    )

    resource_gate: bool = Field(
        default=False,
        description="Dispatch a ready task only once the Resource Allocator has granted its "
        "resources (and fail it if they are denied); the allocator then also reads tasks.ready. "
        "Turn on wherever the allocator runs (mesh dev does).",
    )

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_topic_safe(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"[A-Za-z0-9._-]*", value):
            raise ValueError("topic prefix may hold only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("sasl_username", "sasl_password")
    @classmethod
    def _sasl_needs_credentials(
        cls, value: str | SecretStr | None, info: ValidationInfo
    ) -> str | SecretStr | None:
        protocol = info.data.get("security_protocol")
        if value is None and isinstance(protocol, str) and protocol.startswith("SASL"):
            variable = f"MESH_{(info.field_name or '').upper()}"
            mechanism = info.data.get("sasl_mechanism") or "PLAIN"
            raise PydanticCustomError(
                "sasl_credentials",
                "{variable} is not set, but MESH_SECURITY_PROTOCOL={protocol} logs in with SASL "
                "({mechanism}) and needs it",
                {"variable": variable, "protocol": protocol, "mechanism": mechanism},
            )
        return value

    @field_validator("planner_templates", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(part) for part in value.split(os.pathsep) if part.strip())
        return value

    @field_validator("planner_capability_map", mode="before")
    @classmethod
    def _split_pairs(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            name, sep, target = item.partition("=")
            if not sep or not name.strip() or not target.strip():
                raise ValueError(f"expected name=capability pairs separated by ',', got {item!r}")
            pairs[name.strip()] = target.strip()
        return pairs

    @field_serializer("planner_templates")
    def _join_paths(self, value: tuple[Path, ...]) -> str:
        return os.pathsep.join(str(path) for path in value)

    @field_serializer("planner_capability_map")
    def _join_pairs(self, value: dict[str, str]) -> str:
        return ",".join(f"{name}={target}" for name, target in value.items())

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``"workflow.events"``."""
        return f"{self.topic_prefix}{name}"

    def group(self, name: str) -> str:
        """Consumer group (and transactional id) base for a component: namespaced by the topic
        prefix, so two meshes (or two tests) on one cluster never share a group."""
        return f"{self.topic_prefix}{name}"

    def redacted(self) -> dict[str, object]:
        """Settings as a dict that is safe to print or log (secrets masked)."""
        data = self.model_dump(mode="json")
        if self.sasl_password is not None:
            data["sasl_password"] = "**********"  # noqa: S105 - the mask, not a password
        return data

    def to_env(self) -> dict[str, str]:
        """The settings as ``MESH_*`` variables, for child processes (secrets travel in the
        environment, never on a command line where ``ps`` would show them)."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"MESH_{name.upper()}"] = str(value)
        return env
