"""The Workflow Manager's history (``workflow.events``) and its snapshots (``workflow.state``).

These are the facts the workflow decider's ``evolve`` folds; with the task results the manager
records beside them they are enough to rebuild any workflow at any point (replay).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mesh.events._envelope import Event, TaskEvent, WorkflowEvent
from mesh.events._plans import WithPlan
from mesh.events._types import Id, JsonObject, Name, Seq, ShortText, UtcDatetime

WorkflowStatus = Literal["running", "paused", "completed", "failed", "cancelled"]
"""Where a workflow stands; the last three are final."""


class WorkflowStarted(WithPlan):
    """A workflow began; it carries its plan (or a reference to it) so that the history alone
    can rebuild it."""

    type: Literal["workflow.started"] = "workflow.started"
    schema_version: Literal[1] = 1

    request_id: Id = Field(description="The request the workflow serves.")


class WorkflowPaused(WorkflowEvent):
    """The workflow stopped scheduling new tasks."""

    type: Literal["workflow.paused"] = "workflow.paused"
    schema_version: Literal[1] = 1

    reason: ShortText = Field(default="", description="Why.")


class WorkflowResumed(WorkflowEvent):
    """A paused workflow schedules tasks again."""

    type: Literal["workflow.resumed"] = "workflow.resumed"
    schema_version: Literal[1] = 1

    reason: ShortText = Field(default="", description="Why.")


class WorkflowCompleted(WorkflowEvent):
    """Every task completed (a workflow with a task failed for good ends `workflow.failed`)."""

    type: Literal["workflow.completed"] = "workflow.completed"
    schema_version: Literal[1] = 1

    completed_tasks: int = Field(ge=0, description="Tasks that completed.")
    failed_tasks: int = Field(default=0, ge=0, description="Tasks that failed for good.")
    skipped_tasks: int = Field(default=0, ge=0, description="Tasks skipped after a failure.")


class WorkflowFailed(WorkflowEvent):
    """The workflow ended in failure (a task failed for good under `fail_fast`, or worse)."""

    type: Literal["workflow.failed"] = "workflow.failed"
    schema_version: Literal[1] = 1

    reason: ShortText = Field(min_length=1, description="Why, in one line.")
    failed_task_ids: Seq[Id] = Field(
        default=(), max_length=10_000, description="Tasks whose failure ended the workflow."
    )


class WorkflowCancelled(WorkflowEvent):
    """The workflow was cancelled on request."""

    type: Literal["workflow.cancelled"] = "workflow.cancelled"
    schema_version: Literal[1] = 1

    reason: ShortText = Field(default="", description="Why.")


class TaskScheduled(TaskEvent):
    """The manager decided a task attempt may run and dispatched a `task.ready` for it."""

    type: Literal["task.scheduled"] = "task.scheduled"
    schema_version: Literal[1] = 1


class TaskRetryScheduled(TaskEvent):
    """A failed attempt will be retried at `retry_at`; `attempt` is the attempt to come."""

    type: Literal["task.retry_scheduled"] = "task.retry_scheduled"
    schema_version: Literal[1] = 1

    retry_at: UtcDatetime = Field(description="When the next attempt becomes ready.")
    delay_seconds: float = Field(ge=0, description="Back-off chosen (after jitter).")
    last_error_kind: Name | None = Field(default=None, description="Kind of the failure retried.")


class TaskTimedOut(TaskEvent):
    """An attempt exceeded its timeout; the manager treats it as a retriable failure."""

    type: Literal["task.timed_out"] = "task.timed_out"
    schema_version: Literal[1] = 1

    timeout_seconds: float = Field(gt=0, description="The limit that was exceeded.")


class TaskCancelled(WorkflowEvent):
    """A task will not run (further): its workflow was cancelled or failed fast."""

    type: Literal["task.cancelled"] = "task.cancelled"
    schema_version: Literal[1] = 1

    task_id: Id = Field(description="The task.")
    attempt: int | None = Field(default=None, ge=1, description="Attempt running at the time.")
    reason: ShortText = Field(default="", description="Why.")


class TaskSkipped(WorkflowEvent):
    """A task will never run because a task it depends on failed (`continue` policy)."""

    type: Literal["task.skipped"] = "task.skipped"
    schema_version: Literal[1] = 1

    task_id: Id = Field(description="The task.")
    reason: ShortText = Field(default="", description="Why, e.g. which dependency failed.")


class TaskReassigned(TaskEvent):
    """An attempt's agent died or was removed; the task goes back to be placed elsewhere."""

    type: Literal["task.reassigned"] = "task.reassigned"
    schema_version: Literal[1] = 1

    from_agent_id: Id = Field(description="The agent that held the task.")
    reason: ShortText = Field(default="", description="Why, e.g. `heartbeat expired`.")


class WorkflowSnapshot(Event):
    """The folded state of a workflow up to a history position (compacted, keyed by workflow).

    A replica rebuilds a workflow from its latest snapshot plus the history events after
    `history_sequence`; `state` is the Workflow Manager's own state model, versioned by
    `state_version` so it can evolve without touching this envelope.
    """

    type: Literal["workflow.snapshot"] = "workflow.snapshot"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "workflow id"

    workflow_id: Id = Field(description="The workflow (the Kafka key).")
    status: WorkflowStatus = Field(description="Status at this position.")
    history_sequence: int = Field(ge=0, description="`sequence` of the last event folded in.")
    history_offset: int | None = Field(
        default=None,
        ge=0,
        description="Offset of that event in its `workflow.events` partition, if known.",
    )
    state_version: int = Field(ge=1, description="Version of the `state` document's shape.")
    state: JsonObject = Field(
        description="The Workflow Manager's state, as JSON (empty when `chunks` holds it)."
    )
    snapshot_id: Id | None = Field(
        default=None,
        description="Names the `workflow.snapshot_chunk` records that hold the state of a "
        "snapshot too large for one record.",
    )
    chunks: int = Field(
        default=0,
        ge=0,
        description="How many chunks hold the state (0: `state` holds it). Written after its "
        "chunks: a reader uses the snapshot only once it has all of them.",
    )

    @property
    def key(self) -> str:
        return self.workflow_id


CHUNK_KEY_SEPARATOR = " "
"""Separates a chunk key's parts; ids never contain whitespace, so no workflow id is a chunk
key."""


def chunk_key(workflow_id: str, snapshot_id: str, index: int) -> str:
    """The Kafka key of one chunk: its own key, so compaction keeps every chunk of a
    snapshot until the Workflow Manager tombstones them."""
    return CHUNK_KEY_SEPARATOR.join((workflow_id, snapshot_id, str(index)))


class WorkflowSnapshotChunk(Event):
    """One piece of the JSON text of a snapshot's state too large for one record.

    The pieces of snapshot `snapshot_id`, joined in `index` order, are the state document; the
    `workflow.snapshot` naming them is written after them.
    """

    type: Literal["workflow.snapshot_chunk"] = "workflow.snapshot_chunk"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "workflow id, snapshot id and index, space-separated"

    workflow_id: Id = Field(description="The workflow.")
    snapshot_id: Id = Field(description="The snapshot this chunk belongs to.")
    index: int = Field(ge=0, description="Position of the piece (from 0).")
    count: int = Field(ge=1, description="How many pieces the snapshot has.")
    data: str = Field(description="A piece of the state document's JSON text.")

    @property
    def key(self) -> str:
        return chunk_key(self.workflow_id, self.snapshot_id, self.index)
