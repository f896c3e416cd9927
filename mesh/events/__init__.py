"""Typed events, the catalog of channels, and the one mapper to and from Kafka records.

Everything a component publishes or consumes is one of these frozen, strict pydantic models.
Make one with the envelope helper and encode it with the mapper::

    me = Producer(component="agent", instance="host-1")
    done = TaskCompleted(**meta(me, causation=assigned), workflow_id=..., task_id=..., ...)
    key, value, headers = Mapper(max_event_bytes=settings.max_event_bytes).encode(done)

This package is pure domain: it knows nothing of Kafka clients, FastStream or the CLI.
"""

from mesh.events._agents import (
    AgentHeartbeat,
    AgentKind,
    AgentRegistered,
    AgentStatus,
    AgentTerminated,
    AgentUpdated,
    Health,
)
from mesh.events._breakers import BreakerState, BreakerStateChanged
from mesh.events._catalog import (
    CHANNELS,
    COMPONENTS,
    DEFAULT_TOPIC_PREFIX,
    REGISTRY,
    Channel,
    Component,
    channels_of,
)
from mesh.events._commands import (
    CancelWorkflow,
    ExternalEvent,
    PauseWorkflow,
    ResumeWorkflow,
    RetryTask,
)
from mesh.events._dlq import DeadLetter
from mesh.events._envelope import Event, Frozen, Meta, Producer, TaskEvent, WorkflowEvent, meta
from mesh.events._ids import uuid7, uuid7_time
from mesh.events._mapper import (
    DEFAULT_MAX_EVENT_BYTES,
    HEADER_CORRELATION_ID,
    HEADER_EVENT_ID,
    HEADER_SCHEMA_VERSION,
    HEADER_TYPE,
    MESH_HEADERS,
    Encoded,
    Headers,
    Mapper,
)
from mesh.events._plans import (
    ExecutionPlan,
    FailurePolicy,
    PlanCreated,
    PlanRejected,
    TaskSpec,
    WorkflowType,
)
from mesh.events._registry import EventRegistry, Upcaster
from mesh.events._replies import Reply, ReplyError
from mesh.events._requests import Constraint, Requirement, TaskRequest
from mesh.events._resources import (
    PoolDeclared,
    QuotaSet,
    ResourceAllocated,
    ResourceDenied,
    ResourceQueued,
    ResourceReleased,
    ResourceRequested,
)
from mesh.events._tasks import (
    CancelTask,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskReady,
    TaskStarted,
)
from mesh.events._values import (
    Backoff,
    Capability,
    CapabilityRequirement,
    Priority,
    Resources,
    RetryPolicy,
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
    WorkflowStarted,
    WorkflowStatus,
)

__all__ = [
    "CHANNELS",
    "COMPONENTS",
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_TOPIC_PREFIX",
    "HEADER_CORRELATION_ID",
    "HEADER_EVENT_ID",
    "HEADER_SCHEMA_VERSION",
    "HEADER_TYPE",
    "MESH_HEADERS",
    "REGISTRY",
    "AgentHeartbeat",
    "AgentKind",
    "AgentRegistered",
    "AgentStatus",
    "AgentTerminated",
    "AgentUpdated",
    "Backoff",
    "BreakerState",
    "BreakerStateChanged",
    "CancelTask",
    "CancelWorkflow",
    "Capability",
    "CapabilityRequirement",
    "Channel",
    "Component",
    "Constraint",
    "DeadLetter",
    "Encoded",
    "Event",
    "EventRegistry",
    "ExecutionPlan",
    "ExternalEvent",
    "FailurePolicy",
    "Frozen",
    "Headers",
    "Health",
    "Mapper",
    "Meta",
    "PauseWorkflow",
    "PlanCreated",
    "PlanRejected",
    "PoolDeclared",
    "Priority",
    "Producer",
    "QuotaSet",
    "Reply",
    "ReplyError",
    "Requirement",
    "ResourceAllocated",
    "ResourceDenied",
    "ResourceQueued",
    "ResourceReleased",
    "ResourceRequested",
    "Resources",
    "ResumeWorkflow",
    "RetryPolicy",
    "RetryTask",
    "TaskAssigned",
    "TaskCancelled",
    "TaskCompleted",
    "TaskEvent",
    "TaskFailed",
    "TaskProgress",
    "TaskReady",
    "TaskReassigned",
    "TaskRequest",
    "TaskRetryScheduled",
    "TaskScheduled",
    "TaskSkipped",
    "TaskSpec",
    "TaskStarted",
    "TaskTimedOut",
    "Upcaster",
    "WorkflowCancelled",
    "WorkflowCompleted",
    "WorkflowEvent",
    "WorkflowFailed",
    "WorkflowPaused",
    "WorkflowResumed",
    "WorkflowSnapshot",
    "WorkflowStarted",
    "WorkflowStatus",
    "WorkflowType",
    "channels_of",
    "meta",
    "uuid7",
    "uuid7_time",
]
