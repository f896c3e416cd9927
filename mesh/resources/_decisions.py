"""The events a round answers with: allocated, queued (with why) or denied (with why)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mesh.events import Producer, ResourceAllocated, ResourceDenied, ResourceQueued, meta
from mesh.resources._ledger import Waiting
from mesh.resources._vectors import describe

AgentLookup = Callable[[str, str], str | None]
"""(pool id, node id) → the agent placement chose, if the node is an agent's host."""


def no_room(waiting: Waiting) -> tuple[str, str]:
    pool = waiting.request.pool_id
    where = f" in pool {pool!r}" if pool else ""
    return f"no node{where} has {describe(waiting.need)} free", "capacity"


def _fields(waiting: Waiting) -> dict[str, object]:
    r = waiting.request
    return {
        "allocation_id": r.allocation_id,
        "workflow_id": r.workflow_id,
        "task_id": r.task_id,
        "attempt": r.attempt,
        "tenant": r.tenant,
        "resources": r.resources,
    }


def allocated(
    producer: Producer,
    now: datetime,
    waiting: Waiting,
    pool_id: str,
    node_id: str,
    rate: float,
    agent_of: AgentLookup,
) -> ResourceAllocated:
    r = waiting.request
    return ResourceAllocated(
        **meta(producer, causation=r, occurred_at=now),
        **_fields(waiting),  # type: ignore[arg-type]
        pool_id=pool_id,
        node_id=node_id,
        agent_id=agent_of(pool_id, node_id),
        task=r.task,
        cost_per_hour=max(rate, 0.0),
    )


def queued(
    producer: Producer, now: datetime, waiting: Waiting, position: int, reason: str, code: str
) -> ResourceQueued:
    r = waiting.request
    return ResourceQueued(
        **meta(producer, causation=r, occurred_at=now),
        **_fields(waiting),  # type: ignore[arg-type]
        priority=r.priority,
        deadline=r.deadline,
        estimated_duration_seconds=r.estimated_duration_seconds,
        pool_id=r.pool_id,
        task=r.task,
        position=position,
        requested_at=waiting.arrival[0],
        reason=reason,
        code=code,
    )


def denied(
    producer: Producer, now: datetime, waiting: Waiting, reason: str, code: str
) -> ResourceDenied:
    return ResourceDenied(
        **meta(producer, causation=waiting.request, occurred_at=now),
        **_fields(waiting),  # type: ignore[arg-type]
        reason=reason,
        code=code,
    )
