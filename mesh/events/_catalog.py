"""The catalog: which events travel on which channel, who sends and who receives them.

Channel names are the logical topic names of DESIGN.md's topic table, without the configurable
prefix (``Settings.topic(name)`` adds it). The AsyncAPI generator, the topic declarations and the
components all read this one table, so a new event is added here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from mesh.events._agents import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    SpawnAgents,
    TerminateAgent,
)
from mesh.events._breakers import BreakerStateChanged
from mesh.events._commands import (
    CancelWorkflow,
    ExternalEvent,
    PauseWorkflow,
    ResumeWorkflow,
    RetryTask,
)
from mesh.events._dlq import DeadLetter
from mesh.events._envelope import Event
from mesh.events._payloads import PayloadChunk
from mesh.events._plans import PlanCreated, PlanRejected
from mesh.events._registry import EventRegistry
from mesh.events._replies import ApiCall, Reply
from mesh.events._requests import TaskRequest
from mesh.events._resources import (
    PoolDeclared,
    QuotaSet,
    ResourceAllocated,
    ResourceDenied,
    ResourceForecast,
    ResourceQueued,
    ResourceReleased,
    ResourceRequested,
)
from mesh.events._tasks import (
    CancelTask,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskOutput,
    TaskProgress,
    TaskReady,
    TaskStarted,
    TaskWaiting,
)
from mesh.events._workflow import (
    TaskCancelled,
    TaskReassigned,
    TaskRetryScheduled,
    TaskScheduled,
    TaskSkipped,
    TaskTimedOut,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowSnapshot,
    WorkflowSnapshotChunk,
    WorkflowStarted,
)

DEFAULT_TOPIC_PREFIX = "mesh."


@dataclass(frozen=True)
class Channel:
    """A logical topic: its key, cleanup policy and the events that travel on it."""

    name: str
    key: str
    cleanup: Literal["delete", "compact"]
    description: str
    events: tuple[type[Event], ...]

    def address(self, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
        """The Kafka topic name under ``prefix``."""
        return f"{prefix}{self.name}"

    @property
    def types(self) -> tuple[str, ...]:
        """The event types on this channel."""
        return tuple(cls.event_type() for cls in self.events)


@dataclass(frozen=True)
class Component:
    """A kind of process in the mesh and the channels it writes and reads."""

    name: str
    description: str
    sends: tuple[str, ...]
    receives: tuple[str, ...]


_HISTORY = (
    WorkflowStarted,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowCancelled,
    TaskScheduled,
    TaskStarted,
    TaskCompleted,
    TaskFailed,
    TaskRetryScheduled,
    TaskTimedOut,
    TaskCancelled,
    TaskSkipped,
    TaskReassigned,
    # Inputs the Workflow Manager records as they are (the history alone rebuilds a workflow).
    TaskAssigned,
    TaskWaiting,
    ExternalEvent,
    RetryTask,
)

_CHANNELS = (
    Channel("requests", "request id", "delete", "Work requested by clients.", (TaskRequest,)),
    Channel(
        "plans", "workflow id", "delete", "Plans made from requests.", (PlanCreated, PlanRejected)
    ),
    Channel(
        "commands",
        "workflow id",
        "delete",
        "Control of running workflows; each is answered on `replies`.",
        (PauseWorkflow, ResumeWorkflow, CancelWorkflow, RetryTask, ExternalEvent),
    ),
    Channel(
        "workflow.events",
        "workflow id",
        "delete",
        "The history: every workflow and task lifecycle event, with its `sequence` set.",
        _HISTORY,
    ),
    Channel(
        "workflow.state",
        "workflow id",
        "compact",
        "Latest snapshot per workflow and the history position it includes (a large one's "
        "state in chunks, written before it).",
        (WorkflowSnapshot, WorkflowSnapshotChunk),
    ),
    Channel(
        "tasks.ready",
        "workflow id",
        "delete",
        "Attempts that may run, with capability and resource needs.",
        (TaskReady,),
    ),
    Channel(
        "tasks.assigned",
        "agent id (the chosen agent instance)",
        "delete",
        "Work and cancellations addressed to exactly one agent instance.",
        (TaskAssigned, CancelTask),
    ),
    Channel(
        "tasks.results",
        "workflow id",
        "delete",
        "What agents report about their attempts, and what dispatch decided about them "
        "(assignments, reassignments, why a task waits), keyed by workflow id.",
        (
            TaskStarted,
            TaskProgress,
            TaskCompleted,
            TaskFailed,
            TaskWaiting,
            TaskAssigned,
            TaskReassigned,
        ),
    ),
    Channel(
        "agents",
        "agent id",
        "compact",
        "The agent registry (tombstone after termination).",
        (AgentRegistered, AgentUpdated, AgentTerminated),
    ),
    Channel(
        "agents.heartbeats",
        "agent id",
        "delete",
        "Liveness, load and health of agents.",
        (AgentHeartbeat,),
    ),
    Channel(
        "agents.commands",
        "template name or agent id",
        "delete",
        "Lifecycle requests to the Agent Manager (spawn, terminate); each is answered on "
        "`replies`.",
        (SpawnAgents, TerminateAgent),
    ),
    Channel(
        "resources",
        "`pool:<id>`, `allocation:<id>`, `quota:<tenant>` or `forecast:<workflow_id>`",
        "compact",
        "The allocator's ledger: pools, allocations, quotas and forecasts.",
        (
            PoolDeclared,
            ResourceRequested,
            ResourceAllocated,
            ResourceQueued,
            ResourceDenied,
            ResourceReleased,
            QuotaSet,
            ResourceForecast,
        ),
    ),
    Channel(
        "breakers", "breaker name", "compact", "Circuit breaker states.", (BreakerStateChanged,)
    ),
    Channel(
        "calls",
        "correlation id",
        "delete",
        "Calls of the client API to a component (its `component` field says which); each is "
        "answered on `replies`.",
        (ApiCall,),
    ),
    Channel(
        "tasks.output",
        "workflow id",
        "delete",
        "Output chunks of running attempts (stdout/stderr lines, yielded text, streamed "
        "bodies), for logs and watch; bounded, and never read by the Workflow Manager.",
        (TaskOutput,),
    ),
    Channel(
        "payloads",
        "payload id",
        "delete",
        "Chunks of outputs and plans too large for one event, referenced from the event by id, "
        "size and sha256 digest (`PayloadRef`).",
        (PayloadChunk,),
    ),
    Channel("replies", "correlation id", "delete", "Answers to request/reply calls.", (Reply,)),
    Channel(
        "dlq",
        "original key",
        "delete",
        "Records that could not be processed, with their origin and the error.",
        (DeadLetter,),
    ),
)

CHANNELS: Mapping[str, Channel] = MappingProxyType({c.name: c for c in _CHANNELS})
"""Logical channel name → :class:`Channel`, in the order of DESIGN.md's topic table."""

_DLQ_REPLIES = ("replies", "dlq")

COMPONENTS: Mapping[str, Component] = MappingProxyType(
    {
        c.name: c
        for c in (
            Component(
                "client",
                "The Python client API and the `mesh` command line.",
                sends=("requests", "commands", "agents.commands", "calls", "payloads"),
                receives=(
                    "plans",
                    "workflow.events",
                    "tasks.results",
                    "tasks.output",
                    "replies",
                    "payloads",
                ),
            ),
            Component(
                "task-planner",
                "Turns requests into validated, optimised plans.",
                sends=("plans", *_DLQ_REPLIES),
                receives=("requests", "workflow.events", "calls"),
            ),
            Component(
                "workflow-manager",
                "Runs plans as event-sourced workflows.",
                sends=(
                    "workflow.events",
                    "workflow.state",
                    "tasks.ready",
                    "tasks.assigned",
                    *_DLQ_REPLIES,
                ),
                receives=(
                    "plans",
                    "commands",
                    "calls",
                    "tasks.results",
                    "workflow.events",
                    "workflow.state",
                    "payloads",
                ),
            ),
            Component(
                "resource-allocator",
                "Grants resources from pools under quotas and policies.",
                sends=("resources", *_DLQ_REPLIES),
                receives=(
                    "tasks.ready",
                    "tasks.results",
                    "workflow.events",
                    "resources",
                    "agents",
                    "agents.heartbeats",
                    "calls",
                ),
            ),
            Component(
                "agent-manager",
                "Spawns, watches and assigns work to agents behind circuit breakers.",
                sends=("tasks.assigned", "tasks.results", "agents", "breakers", *_DLQ_REPLIES),
                receives=(
                    "resources",
                    "agents",
                    "agents.heartbeats",
                    "agents.commands",
                    "calls",
                    "breakers",
                    "tasks.results",
                    "tasks.ready",
                    "tasks.assigned",
                ),
            ),
            Component(
                "agent",
                "One agent instance (command, Python or HTTP) running assigned attempts.",
                sends=(
                    "tasks.results",
                    "tasks.output",
                    "agents",
                    "agents.heartbeats",
                    "payloads",
                    "dlq",
                ),
                receives=("tasks.assigned", "payloads"),
            ),
        )
    }
)
"""Component name → the channels it sends to and receives from (for the AsyncAPI document)."""


def _all_events() -> list[type[Event]]:
    seen: dict[type[Event], None] = {}
    for channel in _CHANNELS:
        for cls in channel.events:
            seen.setdefault(cls, None)
    return list(seen)


REGISTRY = EventRegistry(_all_events())
"""Every mesh event model, by ``(type, schema_version)``; the default for :class:`Mapper`."""


def channels_of(event: type[Event] | Event | str) -> tuple[str, ...]:
    """The channels an event type travels on (a history event is also on its source channel)."""
    event_type = event if isinstance(event, str) else event.event_type()
    return tuple(c.name for c in _CHANNELS if event_type in c.types)
