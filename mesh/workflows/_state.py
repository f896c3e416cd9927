"""The folded state of one workflow: what ``evolve`` builds and what a snapshot stores.

Task statuses (``pending`` → ``ready`` → ``assigned`` → ``running`` → a final status)::

    pending    not scheduled: waiting for dependencies, its trigger, a free slot or a resume
    ready      an attempt was scheduled (TaskReady sent); no agent has it yet
    assigned   an agent was given the attempt
    running    the agent started the attempt
    retrying   an attempt failed or timed out; the next one is due at ``retry_at``
    succeeded  final: completed, ``output`` holds its result
    failed     final: failed for good (policy spent, not retriable, or its trigger never came)
    timed_out  final: the last allowed attempt exceeded the task's timeout
    cancelled  final: the workflow was cancelled or failed fast
    skipped    final: a task it depends on failed for good (``continue`` policy)

``cancelled`` and ``skipped`` are final only for as long as the failure that caused them stands:
a ``RetryTask`` of that failure reopens them (see ``mesh.workflows._transitions``).

Besides the facts, the state keeps a few indexes (``runnable``, ``in_flight``, ``unfinished``,
``timers`` and each task's ``deps_pending``) so that deciding and folding touch only the tasks an
event concerns; a 10,000-task workflow must not cost O(tasks) Python work per event. They are
derived from the facts and are checked against them by the tests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

import pydantic_core
from pydantic import AwareDatetime, BaseModel, ConfigDict, JsonValue, ValidationError

from mesh.errors import DecisionError
from mesh.events import ExecutionPlan
from mesh.workflows._table import TaskTable

STATE_VERSION: int = 1
"""Version of the shape of :meth:`WorkflowState.to_snapshot_state`; bump it with an upcaster."""

TaskStatus = Literal[
    "pending",
    "ready",
    "assigned",
    "running",
    "succeeded",
    "failed",
    "retrying",
    "timed_out",
    "cancelled",
    "skipped",
]
"""Where one task stands (see the module docstring)."""

WorkflowStatus = Literal["pending", "running", "paused", "completed", "failed", "cancelled"]
"""Where a workflow stands. ``pending`` is reserved: a state exists only once it started."""

FINAL_TASK_STATUSES: frozenset[TaskStatus] = frozenset(
    {"succeeded", "failed", "timed_out", "cancelled", "skipped"}
)
"""Task statuses after which nothing more happens to the task (unless a RetryTask reopens it)."""

IN_FLIGHT_STATUSES: frozenset[TaskStatus] = frozenset({"ready", "assigned", "running"})
"""Task statuses that hold an attempt and count against ``max_parallelism``."""

FAILED_STATUSES: frozenset[TaskStatus] = frozenset({"failed", "timed_out"})
"""Task statuses meaning "failed for good"; only these can be retried by a RetryTask."""

FINAL_WORKFLOW_STATUSES: frozenset[WorkflowStatus] = frozenset({"completed", "failed", "cancelled"})


def wait_key(kind: str, placed_elsewhere: bool, reason: str) -> str:
    """What makes two TaskWaiting notes about one attempt the same note (see ``waits``)."""
    return f"{kind}|{'placed' if placed_elsewhere else 'waits'}|{reason}"


_M = TypeVar("_M", bound=BaseModel)


def constructed(cls: type[_M], fields: dict[str, Any], fields_set: set[str]) -> _M:
    """``cls.model_construct(**fields)`` for values that are already valid, a few times cheaper:
    folding builds a task per event and a state per decision, and pydantic's generic construct
    (defaults, aliases, extras) costs more than the decision's own work."""
    new = object.__new__(cls)
    object.__setattr__(new, "__dict__", fields)
    object.__setattr__(new, "__pydantic_fields_set__", fields_set)
    object.__setattr__(new, "__pydantic_extra__", None)
    object.__setattr__(new, "__pydantic_private__", None)
    return new


class _StateModel(BaseModel):
    # Not strict, unlike events: a snapshot comes back as JSON text, whose datetimes are strings.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class TaskState(_StateModel):
    """One task of a workflow: its current attempt and what became of it."""

    task_id: str
    status: TaskStatus = "pending"
    attempt: int = 0
    """Number of the latest attempt scheduled (0 before the first)."""
    failures: int = 0
    """Attempts that failed or timed out; the retry policy's ``max_attempts`` bounds this."""
    deps_pending: int = 0
    """Dependencies that have not succeeded yet (index: readiness without scanning them)."""
    agent_id: str | None = None
    """Agent of the current attempt, once assigned; kept after it ends (for CancelTask)."""
    output: dict[str, JsonValue] = {}
    failed_outputs: dict[str, dict[str, JsonValue]] = {}
    """What each failed attempt printed, by attempt number (its ``TaskFailed`` output, capped
    by the agent); attempts that printed nothing are left out."""
    error_kind: str | None = None
    error_message: str | None = None
    scheduled_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    retry_at: AwareDatetime | None = None
    """When the next attempt of a ``retrying`` task becomes due."""
    deadline: AwareDatetime | None = None
    """When the assigned or running attempt times out (assignment or start + timeout)."""
    wait_deadline: AwareDatetime | None = None
    """When an event-driven task stops waiting for its trigger and fails (``trigger_timeout``)."""
    trigger_payload: dict[str, JsonValue] | None = None
    """Payload of the external event that triggered the task; None until it came."""
    waiting_kind: str | None = None
    """Machine-readable reason the current attempt waits (a TaskWaiting's ``reason_kind``, e.g.
    ``resources`` or ``no_capable_agent``); None once it is placed, or if nothing said why."""
    waiting_reason: str | None = None
    """Why the current attempt waits, for humans (status views show it)."""
    waits: tuple[str, ...] = ()
    """The TaskWaiting notes recorded for the current attempt (``kind|placed|reason``), so a
    repeated or redelivered note is not recorded twice."""

    @property
    def is_final(self) -> bool:
        """Whether nothing more will happen to this task (barring a RetryTask)."""
        return self.status in FINAL_TASK_STATUSES


class WorkflowState(_StateModel):
    """A workflow folded from its history up to ``sequence``."""

    workflow_id: str
    request_id: str
    correlation_id: str
    status: WorkflowStatus
    plan: ExecutionPlan
    tasks: TaskTable
    """Task id → task, in plan order (a dict is accepted and kept as a table)."""
    sequence: int
    """``sequence`` of the last history event folded in."""
    started_at: AwareDatetime
    ended_at: AwareDatetime | None = None
    reason: str = ""
    """Why the workflow last paused or ended."""
    failed_task_ids: tuple[str, ...] = ()
    """Tasks whose failure ended the workflow (set by WorkflowFailed)."""
    runnable: tuple[str, ...] = ()
    """Pending tasks free to start (dependencies done, trigger in), waiting for a slot or a
    resume; in plan order, which is the order they are scheduled in."""
    in_flight: int = 0
    """Tasks that are ready, assigned or running (what ``max_parallelism`` caps)."""
    unfinished: int = 0
    """Tasks not in a final status; the workflow ends when it reaches 0."""
    timers: dict[str, AwareDatetime] = {}
    """Task id → the instant its timer fires (retry_at, deadline or wait_deadline)."""

    @property
    def is_final(self) -> bool:
        """Whether the workflow completed, failed or was cancelled."""
        return self.status in FINAL_WORKFLOW_STATUSES

    @property
    def free_slots(self) -> int | None:
        """How many more attempts may be in flight now (None = no limit)."""
        cap = self.plan.max_parallelism
        return None if cap is None else max(0, cap - self.in_flight)

    def next_timer(self) -> datetime | None:
        """The earliest instant at which a ``Tick`` could produce events, or None.

        Deadlines and trigger waits always count (they fire even while paused); a retry counts
        only while the workflow could schedule it (running, with a free slot), so a paused or
        saturated workflow does not ask to be woken for nothing. The instant may be in the past:
        the timer is overdue and the runtime should tick at once.
        """
        if self.is_final:
            return None
        can_schedule = self.status == "running" and self.free_slots != 0
        earliest: datetime | None = None
        for task_id, at in self.timers.items():
            if earliest is not None and at >= earliest:
                continue
            if not can_schedule and self.tasks[task_id].status == "retrying":
                continue
            earliest = at
        return earliest

    def counts(self) -> dict[TaskStatus, int]:
        """How many tasks are in each status (for status reports)."""
        result: dict[TaskStatus, int] = {}
        for task in self.tasks.values():
            result[task.status] = result.get(task.status, 0) + 1
        return result

    def to_snapshot_state(self) -> dict[str, Any]:
        """The state as a JSON-able dict (``WorkflowSnapshot.state``), shape ``STATE_VERSION``."""
        return self.model_dump(mode="json")

    @classmethod
    def from_snapshot_state(
        cls, data: dict[str, Any], *, version: int = STATE_VERSION
    ) -> WorkflowState:
        """The state a snapshot holds; DecisionError if its shape is unknown or it is invalid.

        Validated from JSON text because that is the form the snapshot travelled in (datetimes as
        strings); the result equals the state that was snapshotted.
        """
        if version != STATE_VERSION:
            raise DecisionError(
                f"snapshot state version {version} is not supported (expected {STATE_VERSION})"
            )
        try:
            return cls.model_validate_json(pydantic_core.to_json(data))
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "(state)"
            raise DecisionError(f"invalid snapshot state: {where}: {first['msg']}") from exc
