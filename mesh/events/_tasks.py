"""Task dispatch and results: ``tasks.ready``, ``tasks.assigned`` and ``tasks.results``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field

from mesh.errors import InvalidEvent
from mesh.events._envelope import TaskEvent
from mesh.events._plans import TaskSpec
from mesh.events._types import Id, JsonObject, Name, Seq, ShortText, Text, UtcDatetime
from mesh.events._values import CapabilityRequirement, Priority, Resources


class TaskReady(TaskEvent):
    """An attempt may run now: the Resource Allocator places it, the Agent Manager assigns it."""

    type: Literal["task.ready"] = "task.ready"
    schema_version: Literal[1] = 1

    task: TaskSpec = Field(description="The task, with its capability and resource needs.")
    priority: Priority = Field(default="normal", description="Priority of the workflow.")
    tenant: Name = Field(default="default", description="Quota the attempt counts against.")
    deadline: UtcDatetime | None = Field(
        default=None, description="When the request must be done, if it has a deadline."
    )

    @property
    def capabilities(self) -> Sequence[CapabilityRequirement]:
        """What the agent must be able to do."""
        return self.task.capabilities

    @property
    def resources(self) -> Resources:
        """What the attempt needs."""
        return self.task.resources


class _AddressedToAgent(TaskEvent):
    """A message for exactly one agent instance: keyed by its id on `tasks.assigned`."""

    key_doc: ClassVar[str] = "agent id (the chosen agent instance)"

    agent_id: Id = Field(description="The agent instance that must act (the Kafka key).")

    @property
    def key(self) -> str:
        return self.agent_id


class TaskAssigned(_AddressedToAgent):
    """The Agent Manager gives an attempt to one agent instance."""

    type: Literal["task.assigned"] = "task.assigned"
    schema_version: Literal[1] = 1

    task: TaskSpec | None = Field(
        default=None,
        description="What to run. Always set on `tasks.assigned`; left out when the Workflow "
        "Manager records the assignment in the history, where the plan already holds it.",
    )
    allocation_id: Id | None = Field(
        default=None, description="Resource allocation the attempt runs under; released after."
    )
    deadline: UtcDatetime | None = Field(
        default=None, description="When the agent must give up (start + the task's timeout)."
    )

    @property
    def spec(self) -> TaskSpec:
        """The task to run; an assignment read from ``tasks.assigned`` always carries it."""
        if self.task is None:
            raise InvalidEvent(
                f"the assignment of {self.workflow_id}/{self.task_id} attempt {self.attempt} "
                "has no task (only the history leaves it out)"
            )
        return self.task


class CancelTask(_AddressedToAgent):
    """Ask the agent running an attempt to stop it (workflow cancelled or task timed out)."""

    type: Literal["task.cancel"] = "task.cancel"
    schema_version: Literal[1] = 1

    reason: ShortText = Field(default="", description="Why.")


class TaskStarted(TaskEvent):
    """An agent began an attempt."""

    type: Literal["task.started"] = "task.started"
    schema_version: Literal[1] = 1

    agent_id: Id = Field(description="The agent running the attempt.")


class TaskProgress(TaskEvent):
    """An agent reports how far an attempt has got (informational; not folded into state)."""

    type: Literal["task.progress"] = "task.progress"
    schema_version: Literal[1] = 1

    agent_id: Id = Field(description="The agent running the attempt.")
    percent: float | None = Field(default=None, ge=0, le=100, description="Done so far, 0–100.")
    message: ShortText = Field(default="", description="What is happening, in one line.")
    details: JsonObject = Field(default_factory=dict, description="Agent-specific progress data.")


class TaskCompleted(TaskEvent):
    """An attempt succeeded; its output is available to the tasks that depend on it."""

    type: Literal["task.completed"] = "task.completed"
    schema_version: Literal[1] = 1

    agent_id: Id = Field(description="The agent that ran the attempt.")
    output: JsonObject = Field(default_factory=dict, description="The task's result.")
    duration_seconds: float | None = Field(default=None, ge=0, description="Time the attempt took.")
    cost: float | None = Field(default=None, ge=0, description="What the attempt cost, if known.")


class TaskFailed(TaskEvent):
    """An attempt failed; `retriable` tells the manager whether the retry policy applies."""

    type: Literal["task.failed"] = "task.failed"
    schema_version: Literal[1] = 1

    agent_id: Id | None = Field(
        default=None, description="The agent that ran the attempt (none if it never started)."
    )
    error_kind: Name = Field(
        description="Machine-readable kind, e.g. `timeout`, `exit_code`, `agent_lost`; matched "
        "against the retry policy's `non_retryable`."
    )
    message: Text = Field(description="What went wrong, for humans.")
    retriable: bool = Field(description="False when retrying cannot help.")
    duration_seconds: float | None = Field(default=None, ge=0, description="Time until failure.")
    output: JsonObject = Field(
        default_factory=dict,
        description="What the attempt printed before it failed, capped (command agents: "
        "`exit_code`, `stdout`, `stderr`, `truncated`); empty if nothing was kept.",
    )


OutputStream = Literal["stdout", "stderr", "text", "body"]
"""Where a chunk of output came from: a command's stdout or stderr, text a Python agent
yielded (``ctx.output``), or an HTTP agent's streamed response body."""


class TaskOutput(TaskEvent):
    """A chunk of what a running attempt prints, for `mesh logs` and `mesh watch`.

    Informational and bounded: the Workflow Manager never reads it (replay does not need it);
    an agent batches chunks, rate-limits them and stops at a cap per attempt, and the chunk that
    reaches the cap says `truncated`.
    """

    type: Literal["task.output"] = "task.output"
    schema_version: Literal[1] = 1

    agent_id: Id = Field(description="The agent running the attempt.")
    stream: OutputStream = Field(description="Where the text came from.")
    chunk: int = Field(ge=0, description="Number of this chunk in the attempt (0, 1, 2 …).")
    text: Text = Field(description="Whole lines as printed (a last partial line at the end).")
    truncated: bool = Field(
        default=False,
        description="True on the attempt's last chunk once its output cap was reached: "
        "anything printed after it was dropped.",
    )


WaitingReason = Literal["no_capable_agent", "no_healthy_agent", "breaker_open", "resources"]
"""Why dispatch could not place an attempt (where it wanted): no agent can run it, none is
healthy, the agent's breaker is open, or its resources are not allocated yet (queued by the
Resource Allocator)."""


class TaskWaiting(TaskEvent):
    """The Agent Manager could not place an attempt where it
    wanted, and says why; the Workflow Manager records it and shows the reason.

    ``placed_elsewhere`` false: the attempt cannot be placed now; it stays queued and is placed
    as soon as it can. True: it was placed, but not on an agent it would otherwise have gone
    to, whose circuit breaker is open (so the history records that the agent was avoided).
    """

    type: Literal["task.waiting"] = "task.waiting"
    schema_version: Literal[1] = 1

    reason_kind: WaitingReason = Field(description="Machine-readable reason.")
    reason: ShortText = Field(description="Why, for humans.")
    placed_elsewhere: bool = Field(
        default=False, description="True if placed despite the reason; false while it waits."
    )
    agent_ids: Seq[Id] = Field(
        default=(), max_length=1_000, description="Agents that were ruled out, if any."
    )
