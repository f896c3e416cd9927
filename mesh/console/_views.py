"""What the console's pages show, as plain JSON-able data (pure: no I/O).

A workflow becomes a row of the workflows page; its tasks become compact briefs (what a DAG
node needs to be coloured) or a full detail (the task panel); its history becomes steps with
their Kafka positions and one bar per attempt for the timeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from mesh.replay import Recorded, Step
from mesh.workflows import Folding, TaskState, WorkflowState

OUTPUT_PREVIEW_CHARS = 4_000
"""Longest text of one output field shown before "show all"."""


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def seconds(start: datetime | None, end: datetime | None, now: datetime) -> float | None:
    """Seconds from ``start`` to ``end`` (to ``now`` while it has no end)."""
    if start is None:
        return None
    return max(0.0, ((end or now) - start).total_seconds())


def workflow_row(
    state: WorkflowState | Folding, now: datetime, *, cost: float | None = None
) -> dict[str, Any]:
    """One row of the workflows page."""
    tasks = state.tasks.values()
    return {
        "workflow_id": state.workflow_id,
        "status": state.status,
        "reason": state.reason,
        "done": sum(1 for t in tasks if t.is_final),
        "total": len(state.tasks),
        "started_at": iso(state.started_at),
        "ended_at": iso(state.ended_at),
        "duration_seconds": seconds(state.started_at, state.ended_at, now),
        "tenant": state.plan.tenant,
        "workflow_type": state.plan.workflow_type,
        "cost": cost,
        "sequence": state.sequence,
    }


def task_brief(task: TaskState) -> dict[str, Any]:
    """What a DAG node shows: state, attempt, agent and whether (and why) it waits."""
    return {
        "status": task.status,
        "attempt": task.attempt,
        "agent": task.agent_id,
        "waiting": task.waiting_kind,
    }


def task_briefs(state: WorkflowState | Folding) -> dict[str, dict[str, Any]]:
    return {task_id: task_brief(task) for task_id, task in state.tasks.items()}


def truncated(value: Any, limit: int = OUTPUT_PREVIEW_CHARS) -> tuple[Any, bool]:
    """``value`` with every string longer than ``limit`` cut (and whether anything was)."""
    if isinstance(value, str):
        return (value[:limit], True) if len(value) > limit else (value, False)
    if isinstance(value, Mapping):
        cut_any = False
        kept: dict[str, Any] = {}
        for key, item in value.items():
            kept[key], cut = truncated(item, limit)
            cut_any = cut_any or cut
        return kept, cut_any
    if isinstance(value, list | tuple):
        items = [truncated(item, limit) for item in value]
        return [item for item, _ in items], any(cut for _, cut in items)
    return value, False


@dataclass
class Attempt:
    """One attempt of one task as the history tells it: queued, placed, ran, ended how."""

    task_id: str
    attempt: int
    queued_at: datetime | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str | None = None
    agent_id: str | None = None
    error_kind: str | None = None
    error: str | None = None
    waits: list[str] = field(default_factory=list)
    reassigned_from: list[str] = field(default_factory=list)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        data = asdict(self)
        for name in ("queued_at", "assigned_at", "started_at", "ended_at"):
            data[name] = iso(getattr(self, name))
        data["queued_seconds"] = seconds(self.queued_at, self.started_at or self.ended_at, now)
        data["run_seconds"] = seconds(self.started_at, self.ended_at, now)
        return data


_ENDINGS = {
    "task.completed": "succeeded",
    "task.failed": "failed",
    "task.timed_out": "timed_out",
    "task.cancelled": "cancelled",
}


def attempts_of(history: Iterable[Recorded]) -> list[Attempt]:
    """Every attempt in the order it was first seen, from the task events of a history."""
    found: dict[tuple[str, int], Attempt] = {}
    latest: dict[str, int] = {}
    for item in history:
        event = item.event
        task_id = getattr(event, "task_id", None)
        if not isinstance(task_id, str):
            continue
        number = getattr(event, "attempt", None) or latest.get(task_id)
        if number is None:
            continue  # e.g. a task cancelled before any attempt: nothing ran
        kind, at = event.type, event.occurred_at
        if kind == "task.retry_scheduled":
            continue  # announces the next attempt; it is queued when it is scheduled
        attempt = found.setdefault((task_id, number), Attempt(task_id, number))
        latest[task_id] = max(number, latest.get(task_id, 0))
        if kind == "task.scheduled":
            attempt.queued_at = attempt.queued_at or at
        elif kind == "task.assigned":
            attempt.assigned_at, attempt.agent_id = at, getattr(event, "agent_id", None)
        elif kind == "task.started":
            attempt.started_at, attempt.agent_id = at, getattr(event, "agent_id", None)
        elif kind == "task.waiting":
            attempt.waits.append(str(getattr(event, "reason", "")))
        elif kind == "task.reassigned":
            attempt.reassigned_from.append(str(getattr(event, "from_agent_id", "")))
            attempt.started_at = attempt.assigned_at = None
        elif kind in _ENDINGS:
            attempt.ended_at, attempt.outcome = at, _ENDINGS[kind]
            if kind == "task.failed":
                attempt.error_kind = getattr(event, "error_kind", None)
                attempt.error = getattr(event, "message", None)
            elif kind == "task.timed_out":
                attempt.error_kind = "timeout"
                attempt.error = f"exceeded {getattr(event, 'timeout_seconds', '?')} s"
            elif kind == "task.cancelled":
                attempt.error = getattr(event, "reason", None) or None
    return list(found.values())


def step_dict(step: Step, position: str | None) -> dict[str, Any]:
    """One line of the event history, with its Kafka position (``partition:offset``)."""
    return {**step.as_dict(), "position": position}


def task_detail(
    state: WorkflowState,
    task_id: str,
    attempts: Sequence[Attempt],
    now: datetime,
    *,
    full: bool = False,
) -> dict[str, Any]:
    """Everything the task panel shows; outputs cut to a preview unless ``full``."""
    task = state.tasks[task_id]
    spec = state.plan.task(task_id)
    output, cut = (task.output, False) if full else truncated(task.output)
    return {
        "task_id": task_id,
        "name": spec.name,
        **task_brief(task),
        "failures": task.failures,
        "waiting_reason": task.waiting_reason,
        "error_kind": task.error_kind,
        "error": task.error_message,
        "scheduled_at": iso(task.scheduled_at),
        "started_at": iso(task.started_at),
        "ended_at": iso(task.ended_at),
        "retry_at": iso(task.retry_at),
        "deadline": iso(task.deadline),
        "queued_seconds": seconds(task.scheduled_at, task.started_at, now)
        if task.scheduled_at
        else None,
        "run_seconds": seconds(task.started_at, task.ended_at, now),
        "depends_on": list(spec.depends_on),
        "spec": spec.model_dump(mode="json", exclude_defaults=True),
        "output": output,
        "output_truncated": cut,
        "attempts": [a.as_dict(now) for a in attempts if a.task_id == task_id],
    }
