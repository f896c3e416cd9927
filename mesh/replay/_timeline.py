"""A workflow's history as a timeline: each event, when, which task, and what it changed.

Pure: it folds with the decider's own ``Folding`` (the mutable working copy ``fold`` uses), one
event at a time, so a 10,000-task history costs one pass instead of a state copy per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mesh.errors import DecisionError
from mesh.events import WorkflowEvent, WorkflowStarted
from mesh.times import to_millis
from mesh.workflows import Folding, Recorded, TaskState, WorkflowState, fold


@dataclass(frozen=True)
class Step:
    """One line of the timeline: an event and the state change it made."""

    index: int
    """1 for the first event replayed."""
    sequence: int | None
    offset: int | None
    time: datetime
    type: str
    task_id: str | None
    change: str
    workflow_status: str

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "index": self.index,
            "sequence": self.sequence,
            "offset": self.offset,
            "time": self.time.isoformat(),
            "type": self.type,
            "task_id": self.task_id,
            "change": self.change,
            "workflow_status": self.workflow_status,
        }


def cut(
    history: Sequence[Recorded],
    *,
    until_offset: int | None = None,
    until_event: int | None = None,
    until_sequence: int | None = None,
    until_ms: int | None = None,
) -> list[Recorded]:
    """The prefix of ``history`` that the ``--until*`` limits allow (all of them apply).

    ``until_offset`` and ``until_ms`` are inclusive (the event at that offset or time is kept);
    a record without an offset or timestamp is judged by what it has (its ``occurred_at``).
    """
    kept: list[Recorded] = []
    for item in history:
        if until_event is not None and len(kept) >= until_event:
            break
        if until_offset is not None and item.offset is not None and item.offset > until_offset:
            break
        if until_sequence is not None and (item.event.sequence or 0) > until_sequence:
            break
        if until_ms is not None and _millis(item) > until_ms:
            break
        kept.append(item)
    return kept


def _millis(item: Recorded) -> int:
    if item.timestamp_ms is not None:
        return item.timestamp_ms
    return to_millis(item.event.occurred_at)


def timeline(events: Sequence[WorkflowEvent]) -> list[Step]:
    """One :class:`Step` per event, describing the task and workflow changes it made."""
    return timeline_of([Recorded(e) for e in events])


def timeline_of(history: Sequence[Recorded]) -> list[Step]:
    """As :func:`timeline`, keeping each record's offset."""
    steps: list[Step] = []
    folding: Folding | None = None
    for index, item in enumerate(history, start=1):
        event = item.event
        task_id = getattr(event, "task_id", None)
        if folding is None:
            if not isinstance(event, WorkflowStarted):
                raise DecisionError(
                    f"{event.type} for workflow {event.workflow_id} comes before its "
                    "workflow.started"
                )
            folding = Folding.started(event)
            change = f"workflow: started ({len(folding.tasks)} tasks)"
        else:
            before_status = folding.status
            before = folding.tasks.get(task_id) if isinstance(task_id, str) else None
            folding.apply(event)
            after = folding.tasks.get(task_id) if isinstance(task_id, str) else None
            change = describe_change(before_status, folding.status, before, after)
        steps.append(
            Step(
                index=index,
                sequence=event.sequence,
                offset=item.offset,
                time=event.occurred_at,
                type=event.type,
                task_id=task_id if isinstance(task_id, str) else None,
                change=change,
                workflow_status=folding.status,
            )
        )
    return steps


def describe_change(
    before_status: str, after_status: str, before: TaskState | None, after: TaskState | None
) -> str:
    parts: list[str] = []
    if after is not None and (before is None or before != after):
        parts.append(f"task {after.task_id}: {_task_change(before, after)}")
    if before_status != after_status:
        parts.append(f"workflow: {before_status} → {after_status}")
    return "; ".join(parts) or "no change"


def _task_change(before: TaskState | None, after: TaskState) -> str:
    old = before.status if before is not None else "—"
    text = f"{old} → {after.status}" if old != after.status else after.status
    details: list[str] = []
    if before is None or before.attempt != after.attempt:
        details.append(f"attempt {after.attempt}")
    if after.agent_id and (before is None or before.agent_id != after.agent_id):
        details.append(f"agent {after.agent_id}")
    waiting = getattr(after, "waiting_reason", None)
    if waiting and getattr(before, "waiting_reason", None) != waiting:
        details.append(f"waiting: {waiting}")
    if after.error_kind and (before is None or before.error_kind != after.error_kind):
        details.append(f"error {after.error_kind}")
    return f"{text} ({', '.join(details)})" if details else text


def replayed_state(history: Sequence[Recorded]) -> WorkflowState | None:
    """The state after folding ``history`` (None for an empty one)."""
    return fold(item.event for item in history)
