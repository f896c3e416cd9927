"""mesh: an event mesh on Apache Kafka that plans, runs and replays workflows of agents.

The names here are the stable public surface; subpackages (``mesh.events``, ``mesh.topics``,
``mesh.workflows`` …) hold the rest.
"""

from mesh.agents import TaskContext, agent
from mesh.broker import EmbeddedBroker
from mesh.client import (
    Client,
    WorkflowRun,
    load_plan_file,
    send_command,
    submit_plan,
)
from mesh.errors import (
    AuthError,
    BrokerError,
    BrokerUnavailable,
    CallFailed,
    ConfigError,
    EmbeddedBrokerError,
    EventError,
    EventTooLarge,
    InvalidEvent,
    MeshError,
    NoAnswer,
    TaskError,
    TopicSpecError,
    UnknownEventType,
    UnsupportedByBroker,
)
from mesh.settings import Settings

__all__ = [
    "AuthError",
    "BrokerError",
    "BrokerUnavailable",
    "CallFailed",
    "Client",
    "ConfigError",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "EventError",
    "EventTooLarge",
    "InvalidEvent",
    "MeshError",
    "NoAnswer",
    "Settings",
    "TaskContext",
    "TaskError",
    "TopicSpecError",
    "UnknownEventType",
    "UnsupportedByBroker",
    "WorkflowRun",
    "agent",
    "load_plan_file",
    "send_command",
    "submit_plan",
]
