"""One-call helpers for scripts: open a :class:`~mesh.Client`, do one thing, close it."""

from __future__ import annotations

from mesh.events import WorkflowEvent
from mesh.settings import Settings

from ._api import Client, CommandKind
from ._history import WorkflowRun
from ._planfile import PlanRequest


async def submit_plan(settings: Settings, request: PlanRequest) -> WorkflowRun:
    """Start the workflow of a plan file (:func:`~mesh.load_plan_file`) with the ids it chose
    (fresh ones otherwise): ``Client.start_workflow``."""
    async with Client(settings) as client:
        return await client.start_workflow(
            request.plan, workflow_id=request.workflow_id, request_id=request.request_id
        )


async def send_command(
    settings: Settings,
    kind: CommandKind,
    workflow_id: str,
    *,
    reason: str = "",
    task_id: str | None = None,
) -> WorkflowEvent:
    """Publish pause/resume/cancel/retry for ``workflow_id`` without waiting for the answer:
    ``Client.send_command``; the command published."""
    async with Client(settings) as client:
        return await client.send_command(kind, workflow_id, reason=reason, task_id=task_id)


__all__ = ["send_command", "submit_plan"]
