"""Where the console listens and the token it asks for: ``MESH_UI_*`` and ``mesh ui`` flags.

Loopback by default. Any other address serves the mesh's controls to the network, so it
needs ``MESH_UI_TOKEN``; with a token set, every page and API call must carry it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mesh.errors import ConfigError

DEFAULT_PORT = 8484


class ConsoleSettings(BaseSettings):
    """The console's own settings (the Kafka ones are the mesh's ``Settings``)."""

    model_config = SettingsConfigDict(env_prefix="MESH_UI_", frozen=True, extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="Port (0: any free one).")
    token: SecretStr | None = Field(
        default=None, description="Required from every request when set; needed off loopback."
    )

    @field_validator("token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # An empty MESH_UI_TOKEN= would otherwise be a token everyone knows.
        if isinstance(value, str) and not value.strip():
            return None
        return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address


def check_bind(settings: ConsoleSettings) -> None:
    """ConfigError if the console would serve off loopback without a token."""
    if not is_loopback(settings.host) and settings.token is None:
        raise ConfigError(
            f"--host {settings.host or '(all addresses)'} is not a loopback address: set "
            "MESH_UI_TOKEN so that every request must carry the token (or listen on 127.0.0.1)"
        )
