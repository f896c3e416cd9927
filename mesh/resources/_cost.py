"""What allocations cost, and what each workflow has spent.

An allocation's rate (cost per hour on its node) is fixed when it is granted and recorded in
``ResourceAllocated.cost_per_hour``; its cost is that rate times the time it was held, recorded in
``ResourceReleased.cost``. A workflow's cost is the sum over its allocations: released ones at
their recorded cost, live ones at what they have accrued so far. Because the records carry these
numbers, any replay of the ledger (the CLI, another replica) reports the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mesh.events import ResourceReleased
from mesh.resources._ledger import Ledger


def accrued(rate_per_hour: float, since: datetime, until: datetime) -> float:
    """Cost of holding something at ``rate_per_hour`` from ``since`` to ``until``."""
    hours = max((until - since).total_seconds(), 0.0) / 3600.0
    return rate_per_hour * hours


@dataclass(frozen=True)
class WorkflowCost:
    """Spending of one workflow."""

    workflow_id: str
    cost: float
    """Released allocations' cost plus what live ones have accrued."""
    rate_per_hour: float
    """What its live allocations cost per hour now."""
    allocations: int
    """Allocations counted (live and released)."""


def workflow_costs(ledger: Ledger, now: datetime) -> dict[str, WorkflowCost]:
    """Cost per workflow from the allocations the ledger still holds records of."""
    totals: dict[str, list[float]] = {}
    for record in ledger.records.values():
        if isinstance(record, ResourceReleased) and record.workflow_id is not None:
            entry = totals.setdefault(record.workflow_id, [0.0, 0.0, 0.0])
            entry[0] += record.cost or 0.0
            entry[2] += 1
    for held in ledger.held.values():
        workflow_id = held.event.workflow_id
        if workflow_id is None:
            continue
        entry = totals.setdefault(workflow_id, [0.0, 0.0, 0.0])
        entry[0] += accrued(held.rate, held.event.occurred_at, now)
        entry[1] += held.rate
        entry[2] += 1
    return {
        w: WorkflowCost(w, cost, rate, int(count))
        for w, (cost, rate, count) in sorted(totals.items())
    }
