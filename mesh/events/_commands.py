"""Control commands for a running workflow, on ``commands``.

Commands are requests, not facts: the Workflow Manager decides whether they apply and records
what happened (``WorkflowPaused`` …) in the history. Each is answered with a ``Reply`` keyed by
the command's ``correlation_id``, so a client can await the outcome.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mesh.events._envelope import WorkflowEvent
from mesh.events._types import Id, JsonObject, Name, ShortText


class PauseWorkflow(WorkflowEvent):
    """Stop scheduling new tasks of a workflow; running tasks finish."""

    type: Literal["workflow.pause"] = "workflow.pause"
    schema_version: Literal[1] = 1

    reason: ShortText = Field(default="", description="Why, for the history.")


class ResumeWorkflow(WorkflowEvent):
    """Schedule a paused workflow's ready tasks again."""

    type: Literal["workflow.resume"] = "workflow.resume"
    schema_version: Literal[1] = 1

    reason: ShortText = Field(default="", description="Why, for the history.")


class CancelWorkflow(WorkflowEvent):
    """End a workflow: cancel its running tasks and schedule nothing more."""

    type: Literal["workflow.cancel"] = "workflow.cancel"
    schema_version: Literal[1] = 1

    reason: ShortText = Field(default="", description="Why, for the history.")


class RetryTask(WorkflowEvent):
    """Run a failed (or timed-out) task again, even if its retry policy is spent."""

    type: Literal["task.retry"] = "task.retry"
    schema_version: Literal[1] = 1

    task_id: Id = Field(description="The task to run again.")
    reason: ShortText = Field(default="", description="Why, for the history.")


class ExternalEvent(WorkflowEvent):
    """A named event from outside the mesh; it makes event-driven tasks waiting on it ready."""

    type: Literal["workflow.external_event"] = "workflow.external_event"
    schema_version: Literal[1] = 1

    name: Name = Field(description="Event name, matched against a task's `trigger`.")
    payload: JsonObject = Field(
        default_factory=dict, description="Data handed to the triggered tasks as extra inputs."
    )
