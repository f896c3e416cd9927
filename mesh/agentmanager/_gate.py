"""The resource gate: a ready attempt is dispatched only once the Resource Allocator granted it.

With the gate on (``MESH_RESOURCE_GATE``), the Agent Manager folds ``resources`` into its view
alongside the agent topics, read from the beginning with no group like the rest of the view, so
any replica rebuilds it alone. For each ready attempt it
looks up the allocation the allocator keys by workflow, task and attempt
(:func:`mesh.resources.allocation_id_for`) and decides:

- allocated → place it (the assignment names the allocation, released when the attempt ends);
- requested, not answered yet → keep it waiting, uncommitted; if nothing at all was heard of
  it for ``UNANSWERED_SECONDS`` (no allocator reads ``tasks.ready``?), say so once;
- queued → keep it waiting and say why once (``TaskWaiting``, reason kind ``resources``);
- denied → never dispatch it: a ``TaskFailed`` (``resources_denied``; not retriable unless the
  request was withdrawn) names the allocator's reason, and the ``tasks.ready`` offset moves past
  it in the same transaction, so the workflow learns why exactly once;
- released before it was placed (the attempt ended, or its host was lost) → the same, with
  ``resources_released`` and retriable: the Workflow Manager ignores it if the attempt is over.

Denials and queue notes come from here, not from the allocator, because only the Agent Manager
knows whether it placed an attempt: failing it in the transaction that commits past its
``TaskReady`` means a denied attempt can never also be dispatched, and a crash in between
repeats the same notice (which the decider records once) rather than losing it.

This module is pure: it folds events and answers questions; the Agent Manager's runtime does
the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mesh.events import (
    Event,
    Producer,
    ResourceAllocated,
    ResourceDenied,
    ResourceQueued,
    ResourceReleased,
    ResourceRequested,
    TaskFailed,
    TaskReady,
    TaskWaiting,
    meta,
)
from mesh.resources import allocation_id_for

GateRecord = (
    ResourceRequested | ResourceQueued | ResourceAllocated | ResourceDenied | ResourceReleased
)
_STAGE: dict[type[Event], int] = {
    ResourceRequested: 0,
    ResourceQueued: 1,
    ResourceAllocated: 2,
    ResourceReleased: 3,
    ResourceDenied: 3,
}
_MAX_TEXT = 500
UNANSWERED_SECONDS = 15.0
"""How long an attempt may wait without any record from the allocator before it is noted."""

Verdict = Literal["allocated", "waiting", "queued", "ended"]


@dataclass(frozen=True)
class GateAnswer:
    """What the gate says about one attempt, with the record it rests on (None: nothing yet)."""

    verdict: Verdict
    record: GateRecord | None

    @property
    def allocation_id(self) -> str | None:
        return self.record.allocation_id if self.record is not None else None


class ResourceGate:
    """The latest record of every allocation, folded idempotently (it only moves forward)."""

    def __init__(self) -> None:
        self._records: dict[str, GateRecord] = {}
        self.version = 0
        """Bumped by every change, so the Agent Manager runs a round when an answer arrives."""
        self._changed: set[str] | None = None

    def track(self) -> None:
        """Remember which allocations changed, for :meth:`drain`: the Agent Manager looks again
        only at the attempts whose answer moved, not at every waiting attempt on every pass."""
        if self._changed is None:
            self._changed = set()

    def drain(self) -> set[str]:
        """The allocation ids changed since the last drain (empty unless :meth:`track`)."""
        changed = self._changed
        if not changed:
            return set()
        self._changed = set()
        return changed

    def __len__(self) -> int:
        return len(self._records)

    def fold(self, event: Event) -> None:
        """Fold a record of ``resources``; anything but an allocation's record is ignored."""
        if not isinstance(event, GateRecord):
            return
        current = self._records.get(event.allocation_id)
        if current is not None and _STAGE[type(event)] <= _STAGE[type(current)]:
            return  # a repeat, an echo, or a late duplicate request: the answer stands
        self._records[event.allocation_id] = event
        self.version += 1
        if self._changed is not None:
            self._changed.add(event.allocation_id)

    def forget(self, key: str) -> None:
        """Fold a tombstone of ``resources`` (``allocation:<id>``; other kinds are not ours)."""
        kind, _, allocation_id = key.partition(":")
        if kind == "allocation" and self._records.pop(allocation_id, None) is not None:
            self.version += 1
            if self._changed is not None:
                self._changed.add(allocation_id)

    def answer(self, ready: TaskReady, allocation_id: str | None = None) -> GateAnswer:
        """Whether the attempt may be placed now, must wait, or will never be placed
        (``allocation_id``: the attempt's, if the caller has it already)."""
        if allocation_id is None:
            allocation_id = allocation_id_for(ready.workflow_id, ready.task_id, ready.attempt)
        record = self._records.get(allocation_id)
        if record is None or isinstance(record, ResourceRequested):
            return GateAnswer("waiting", record)
        if isinstance(record, ResourceQueued):
            return GateAnswer("queued", record)
        if isinstance(record, ResourceAllocated):
            return GateAnswer("allocated", record)
        return GateAnswer("ended", record)


UNANSWERED_REASON = (
    "waiting for the Resource Allocator: no request recorded for this attempt yet (is "
    "'mesh run resources' running with MESH_RESOURCE_GATE on?)"
)


def queued_reason(queued: ResourceQueued) -> str:
    """What a queued attempt's ``TaskWaiting`` says: compared with the reason already noted
    before any event is built, since an attempt may be looked at on every pass while it waits."""
    code = f" ({queued.code})" if queued.code else ""
    return _cut(f"resources queued{code}: {queued.reason or 'no capacity yet'}")


def queued_notice(ready: TaskReady, queued: ResourceQueued, producer: Producer) -> TaskWaiting:
    """The ``TaskWaiting`` that says why an attempt waits for its resources."""
    return TaskWaiting(
        **meta(producer, causation=queued),
        workflow_id=ready.workflow_id,
        task_id=ready.task_id,
        attempt=ready.attempt,
        reason_kind="resources",
        reason=queued_reason(queued),
    )


def unanswered_notice(ready: TaskReady, producer: Producer) -> TaskWaiting:
    """The ``TaskWaiting`` for an attempt the allocator has not even recorded a request for:
    most likely no allocator consumes ``tasks.ready`` (it runs without the gate, or not at all)."""
    return TaskWaiting(
        **meta(producer, causation=ready),
        workflow_id=ready.workflow_id,
        task_id=ready.task_id,
        attempt=ready.attempt,
        reason_kind="resources",
        reason=UNANSWERED_REASON,
    )


def ended_notice(
    ready: TaskReady, record: ResourceDenied | ResourceReleased, producer: Producer
) -> TaskFailed:
    """The ``TaskFailed`` for an attempt whose resources were denied, or released before it was
    placed; it was never dispatched (no agent)."""
    if isinstance(record, ResourceDenied):
        code = record.code or "denied"
        kind, retriable = "resources_denied", code == "withdrawn"
        message = f"resources denied ({code}): {record.reason}"
    else:
        kind, retriable = "resources_released", True
        message = "resources released before the task was dispatched" + (
            f": {record.reason}" if record.reason else ""
        )
    return TaskFailed(
        **meta(producer, causation=record),
        workflow_id=ready.workflow_id,
        task_id=ready.task_id,
        attempt=ready.attempt,
        error_kind=kind,
        message=_cut(message, 2_000),
        retriable=retriable,
    )


def _cut(text: str, limit: int = _MAX_TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = [
    "UNANSWERED_REASON",
    "UNANSWERED_SECONDS",
    "GateAnswer",
    "ResourceGate",
    "ended_notice",
    "queued_notice",
    "queued_reason",
    "unanswered_notice",
]
