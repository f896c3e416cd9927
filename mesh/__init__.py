"""mesh: an event mesh on Apache Kafka that plans, runs and replays workflows of agents."""

from mesh.errors import (
    AuthError,
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    EmbeddedBrokerError,
    EventError,
    EventTooLarge,
    InvalidEvent,
    MeshError,
    TopicSpecError,
    UnknownEventType,
    UnsupportedByBroker,
)
from mesh.settings import Settings

__all__ = [
    "AuthError",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "EmbeddedBrokerError",
    "EventError",
    "EventTooLarge",
    "InvalidEvent",
    "MeshError",
    "Settings",
    "TopicSpecError",
    "UnknownEventType",
    "UnsupportedByBroker",
]
