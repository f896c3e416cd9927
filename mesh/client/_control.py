"""Control commands for a running workflow: pause, resume, cancel, retry a task, external events.

Commands are requests on the ``commands`` topic, keyed by workflow id so they reach the replica
that owns the workflow, in order with its other inputs; the Workflow Manager decides whether they
apply and records the outcome in the history.
"""

from __future__ import annotations

from typing import Any

from mesh.events import (
    CancelWorkflow,
    ExternalEvent,
    PauseWorkflow,
    ResumeWorkflow,
    RetryTask,
    WorkflowEvent,
    meta,
    uuid7,
)
from mesh.settings import Settings

from ._api import Client
from ._submit import cli_producer, publish


def _command(kind: str, workflow_id: str, reason: str, task_id: str | None) -> WorkflowEvent:
    # A fresh correlation id per command: the Workflow Manager's reply carries it.
    envelope = meta(cli_producer(), correlation_id=f"cmd-{kind}-{uuid7().hex[:20]}")
    if kind == "pause":
        return PauseWorkflow(**envelope, workflow_id=workflow_id, reason=reason)
    if kind == "resume":
        return ResumeWorkflow(**envelope, workflow_id=workflow_id, reason=reason)
    if kind == "cancel":
        return CancelWorkflow(**envelope, workflow_id=workflow_id, reason=reason)
    if kind == "retry" and task_id is not None:
        return RetryTask(**envelope, workflow_id=workflow_id, task_id=task_id, reason=reason)
    raise ValueError(f"unknown command {kind!r} (retry needs a task id)")


async def send_command(
    settings: Settings, kind: str, workflow_id: str, *, reason: str = "", task_id: str | None = None
) -> WorkflowEvent:
    """Publish pause/resume/cancel/retry for ``workflow_id``; returns the command event."""
    event = _command(kind, workflow_id, reason, task_id)
    await publish(settings, event, topic=settings.topic("commands"))
    return event


async def command_and_wait(
    settings: Settings,
    kind: str,
    workflow_id: str,
    *,
    reason: str = "",
    task_id: str | None = None,
    within: float = 30.0,
) -> dict[str, Any]:
    """Publish pause/resume/cancel/retry and return the Workflow Manager's answer
    (``{workflow_id, status, recorded}``); ``CallFailed`` if it refused, ``NoAnswer`` if none."""
    event = _command(kind, workflow_id, reason, task_id)
    async with Client(settings, timeout=within) as client:
        result = await client.request(event, "commands", who="workflow-manager")
    return dict(result) if isinstance(result, dict) else {"workflow_id": workflow_id}


async def send_external_event(
    settings: Settings, workflow_id: str, name: str, payload: dict[str, Any] | None = None
) -> ExternalEvent:
    """Publish a named external event that event-driven tasks of ``workflow_id`` wait for."""
    event = ExternalEvent(
        **meta(cli_producer(), correlation_id=f"evt-{workflow_id}"),
        workflow_id=workflow_id,
        name=name,
        payload=payload or {},
    )
    await publish(settings, event, topic=settings.topic("commands"))
    return event
