"""The one error tree of mesh.

Every error a user can meet is a ``MeshError`` carrying a one-line message and a ``retriable``
flag (so retries and circuit breakers count only what they should)::

    MeshError
    ├── ConfigError            settings or a declaration file is wrong (not retriable)
    │   └── TopicSpecError     topics/*.yaml is malformed or violates a rule
    ├── BrokerError            talking to Kafka failed
    │   ├── BrokerUnavailable  nothing answered at the bootstrap servers (retriable)
    │   ├── AuthError          SASL/TLS login refused (not retriable)
    │   └── UnsupportedByBroker  the broker lacks an API we need (e.g. the embedded broker)
    ├── EmbeddedBrokerError    the embedded broker cannot start or be found
    └── EventError             an event cannot be encoded or decoded
        ├── EventTooLarge
        ├── UnknownEventType
        └── InvalidEvent

Library errors are translated at the boundary (``raise BrokerUnavailable(...) from exc``) so that a
user sees what happened and what to do, never a raw aiokafka traceback.
"""

from __future__ import annotations

from typing import Any


class MeshError(Exception):
    """Base of every error mesh raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        if retriable is not None:
            self.retriable = retriable
        self.fields: dict[str, Any] = fields

    def __str__(self) -> str:
        return self.message


class ConfigError(MeshError):
    """Settings, flags or a declaration file are wrong."""


class TopicSpecError(ConfigError):
    """A topic declaration is malformed or breaks a validation rule."""


class BrokerError(MeshError):
    """Talking to the Kafka cluster failed."""


class BrokerUnavailable(BrokerError):
    """No broker answered at the configured bootstrap servers."""

    retriable = True


class AuthError(BrokerError):
    """The cluster refused our credentials or TLS handshake."""


class UnsupportedByBroker(BrokerError):
    """The broker does not implement an API that the operation needs."""


class EmbeddedBrokerError(MeshError):
    """The embedded Tansu broker cannot be started, found or stopped."""


class EventError(MeshError):
    """An event cannot be encoded or decoded."""


class EventTooLarge(EventError):
    """An event's encoded size exceeds the configured limit."""


class UnknownEventType(EventError):
    """The ``type``/``schema_version`` pair names no known event model."""


class InvalidEvent(EventError):
    """The bytes or fields do not form a valid event of the named type."""
