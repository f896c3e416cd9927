"""The records the Workflow Manager reads and writes: which inputs it takes from which topic,
what it reads of a fetched record, and what it hands to the producer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mesh.events import (
    CancelTask,
    CancelWorkflow,
    Event,
    ExternalEvent,
    PauseWorkflow,
    PlanCreated,
    PlanRejected,
    ResumeWorkflow,
    RetryTask,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskReady,
    TaskReassigned,
    TaskStarted,
    TaskWaiting,
    channels_of,
)
from mesh.kafka import ConsumedRecord

COMPONENT = "workflow-manager"
"""The component name in produced events and dead letters (the catalog's name for it)."""

COMMANDS = (PauseWorkflow, ResumeWorkflow, CancelWorkflow, RetryTask, ExternalEvent)
INPUTS: Mapping[str, tuple[type[Event], ...]] = {
    "plans": (PlanCreated,),
    "commands": COMMANDS,
    # TaskAssigned comes from the Agent Manager (recorded in order with the attempt's results) and
    # TaskReassigned and TaskWaiting (why an attempt waits) from the Agent Manager; all are
    # decider inputs on this topic.
    "tasks.results": (
        TaskAssigned,
        TaskStarted,
        TaskProgress,
        TaskCompleted,
        TaskFailed,
        TaskReassigned,
        TaskWaiting,
    ),
}
"""Input channel → the event types the manager handles from it."""
IGNORED: Mapping[str, tuple[type[Event], ...]] = {"plans": (PlanRejected,)}
"""Events that belong on an input channel but concern other components."""

_DISPATCH_CHANNEL: Mapping[type[Event], str] = {
    TaskReady: "tasks.ready",
    CancelTask: "tasks.assigned",
}


InputRecord = ConsumedRecord
"""What the work reads of a fetched record: the same shape ``dead_letter`` reads."""


@dataclass
class Counts:
    """What a unit of work did, for logs."""

    inputs: int = 0
    events: int = 0
    dead_letters: int = 0
    snapshots: int = 0
    tombstones: int = 0


def channel_of(message: Event) -> str:
    """The channel a dispatch goes to (TaskReady → tasks.ready, CancelTask → tasks.assigned)."""
    channel = _DISPATCH_CHANNEL.get(type(message))
    return channel if channel is not None else channels_of(message)[0]
