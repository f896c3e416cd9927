"""The ledger: pools, allocations, quotas and forecasts, folded from the ``resources`` topic.

It is pure state. :meth:`Ledger.apply` folds one record and :meth:`Ledger.forget` a tombstone, so
a new allocator rebuilds the same ledger by reading the topic from the beginning, compacted or not:

- idempotent by allocation id: an allocation only moves forward (requested → queued →
  allocated → released/denied); a record that would move it back, or repeat it, changes nothing.
  Reading a record twice, or an echo of a decision already applied, is harmless;
- every record is self-contained (a queue entry repeats the request, a release carries its
  cost), so the last record per key, which is all compaction keeps, rebuilds the same state.

A request that arrives after its allocation was decided (a client retrying) is ignored, but it is
now the last record of its key; compaction would drop the decision. Such keys are listed in
:attr:`Ledger.stale` so the allocator can re-publish the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from mesh.events import (
    Event,
    PoolDeclared,
    QuotaSet,
    ResourceAllocated,
    ResourceDenied,
    ResourceForecast,
    ResourceQueued,
    ResourceReleased,
    ResourceRequested,
)
from mesh.resources._vectors import DIMS, Vector, to_vector, zeros

Wanted = ResourceRequested | ResourceQueued
"""A request, as asked or as it waits in the queue (both carry the whole request)."""

Decision = ResourceAllocated | ResourceQueued | ResourceDenied
"""What the allocator answers to a request."""

AllocationRecord = ResourceRequested | Decision | ResourceReleased

_STAGE: dict[type[Event], int] = {
    ResourceRequested: 0,
    ResourceQueued: 1,
    ResourceAllocated: 2,
    ResourceReleased: 3,
    ResourceDenied: 3,
}


@dataclass(frozen=True)
class Held:
    """A live allocation and where its resources are counted."""

    event: ResourceAllocated
    need: Vector
    slot: int
    rate: float


@dataclass(frozen=True)
class Waiting:
    """A request not granted yet; ``arrival`` orders the queue the same way after a rebuild."""

    request: Wanted
    need: Vector
    arrival: tuple[datetime, str]

    @property
    def queued(self) -> bool:
        """A ``ResourceQueued`` was recorded for it (it waited through at least one round)."""
        return isinstance(self.request, ResourceQueued)


class Ledger:
    """Pools, quotas, forecasts, allocations and usage; see the module docstring."""

    def __init__(self) -> None:
        self.pools: dict[str, PoolDeclared] = {}
        self.quotas: dict[str, QuotaSet] = {}
        self.forecasts: dict[str, ResourceForecast] = {}
        self.records: dict[str, AllocationRecord] = {}
        self.held: dict[str, Held] = {}
        self.waiting: dict[str, Waiting] = {}
        self.stale: set[str] = set()
        self.tenant_used: dict[str, Vector] = {}
        self.tenant_count: dict[str, int] = {}
        self.tenant_rate: dict[str, float] = {}
        self.tenant_pool_used: dict[tuple[str, str], Vector] = {}
        self._tenant_pool_count: dict[tuple[str, str], int] = {}
        self.tasks: dict[tuple[str, str], set[str]] = {}
        self.version = 0
        """Bumped by every change that can let a waiting request through."""
        self.pools_version = 0
        self._slots: dict[tuple[str, str], int] = {}
        self.node_used = zeros(16)
        self.node_count = np.zeros(16, dtype=np.int64)
        self._rows: tuple[tuple[tuple[str, str], ...], slice | np.ndarray] | None = None

    # -- folding -----------------------------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Fold one record of ``resources``; True if the ledger changed."""
        if isinstance(event, PoolDeclared):
            self.pools[event.pool_id] = event
            self._bump(pools=True)
            return True
        if isinstance(event, QuotaSet):
            self.quotas[event.tenant] = event
            self._bump()
            return True
        if isinstance(event, ResourceForecast):
            self.forecasts[event.workflow_id] = event
            self._bump()
            return True
        if isinstance(event, ResourceRequested | ResourceQueued | ResourceAllocated):
            return self._allocation(event)
        if isinstance(event, ResourceReleased | ResourceDenied):
            return self._allocation(event)
        return False

    def forget(self, key: str) -> bool:
        """Fold a tombstone (a record with no value) for ``key``."""
        kind, _, name = key.partition(":")
        if kind == "pool":
            found = self.pools.pop(name, None) is not None
            if found:
                self._bump(pools=True)
            return found
        if kind == "quota":
            return self.quotas.pop(name, None) is not None and self._bump()
        if kind == "forecast":
            return self.forecasts.pop(name, None) is not None and self._bump()
        if kind == "allocation" and name in self.records:
            self._settle(name)
            self.stale.discard(name)
            self._index(self.records.pop(name), add=False)
            return True
        return False

    def _allocation(self, event: AllocationRecord) -> bool:
        allocation_id = event.allocation_id
        current = self.records.get(allocation_id)
        waiting = self.waiting.get(allocation_id)
        if current is not None:
            now, then = _STAGE[type(event)], _STAGE[type(current)]
            if current.event_id == event.event_id or now < then or (then >= 2 and now == then):
                if isinstance(event, ResourceRequested) and then >= 1:
                    self.stale.add(allocation_id)
                return False
            self._settle(allocation_id)
            self._index(current, add=False)
        self.stale.discard(allocation_id)
        self.records[allocation_id] = event
        self._index(event, add=True)
        if isinstance(event, ResourceRequested | ResourceQueued):
            asked_at = getattr(event, "requested_at", None) or event.occurred_at
            arrival = waiting.arrival if waiting else (asked_at, allocation_id)
            self.waiting[allocation_id] = Waiting(event, to_vector(event.resources), arrival)
        elif isinstance(event, ResourceAllocated):
            self._hold(event)
        else:
            self._bump()
        return True

    def _hold(self, event: ResourceAllocated) -> None:
        need = to_vector(event.resources)
        slot = self.slot(event.pool_id, event.node_id or event.pool_id)
        held = Held(event, need, slot, event.cost_per_hour or 0.0)
        self.held[event.allocation_id] = held
        self.node_used[slot] += need
        self.node_count[slot] += 1
        tenant, key = event.tenant, (event.tenant, event.pool_id)
        self.tenant_used[tenant] = self.tenant_used.get(tenant, zeros()) + need
        self.tenant_count[tenant] = self.tenant_count.get(tenant, 0) + 1
        self.tenant_rate[tenant] = self.tenant_rate.get(tenant, 0.0) + held.rate
        self.tenant_pool_used[key] = self.tenant_pool_used.get(key, zeros()) + need
        self._tenant_pool_count[key] = self._tenant_pool_count.get(key, 0) + 1

    def _settle(self, allocation_id: str) -> None:
        """Take an allocation out of the queue or give its resources back.

        Sums drop to exact zeros when their last allocation goes, whatever float rounding left
        behind, so that "usage returns to zero" holds exactly.
        """
        if self.waiting.pop(allocation_id, None) is not None:
            return
        held = self.held.pop(allocation_id, None)
        if held is None:
            return
        tenant, slot, key = held.event.tenant, held.slot, (held.event.tenant, held.event.pool_id)
        self.node_count[slot] -= 1
        left = self.node_used[slot] - held.need
        self.node_used[slot] = left if self.node_count[slot] else zeros()
        self.tenant_count[tenant] -= 1
        if self.tenant_count[tenant] == 0:
            del self.tenant_used[tenant], self.tenant_count[tenant], self.tenant_rate[tenant]
        else:
            self.tenant_used[tenant] = self.tenant_used[tenant] - held.need
            self.tenant_rate[tenant] -= held.rate
        self._tenant_pool_count[key] -= 1
        if self._tenant_pool_count[key] == 0:
            del self.tenant_pool_used[key], self._tenant_pool_count[key]
        else:
            self.tenant_pool_used[key] = self.tenant_pool_used[key] - held.need
        self._bump()

    def _index(self, event: AllocationRecord, *, add: bool) -> None:
        workflow_id, task_id = getattr(event, "workflow_id", None), getattr(event, "task_id", None)
        if workflow_id is None or task_id is None:
            return
        ids = self.tasks.setdefault((workflow_id, task_id), set())
        if add:
            ids.add(event.allocation_id)
        else:
            ids.discard(event.allocation_id)
            if not ids:
                del self.tasks[(workflow_id, task_id)]

    def _bump(self, *, pools: bool = False) -> bool:
        self.version += 1
        if pools:
            self.pools_version += 1
        return True

    # -- reading -----------------------------------------------------------------------------

    def slot(self, pool_id: str, node_id: str) -> int:
        """The usage row of a node (made on first use, so usage of unknown nodes still counts)."""
        key = (pool_id, node_id)
        found = self._slots.get(key)
        if found is not None:
            return found
        found = self._slots[key] = len(self._slots)
        if found >= len(self.node_used):
            grow = len(self.node_used)
            self.node_used = np.vstack([self.node_used, zeros(grow)])
            self.node_count = np.concatenate([self.node_count, np.zeros(grow, dtype=np.int64)])
        return found

    def used_on(self, keys: tuple[tuple[str, str], ...]) -> tuple[Vector, np.ndarray]:
        """Usage and allocation counts of the given nodes, one row each (read only: usually a
        view, since a table's nodes get consecutive usage rows when it is first seen)."""
        cached = self._rows
        if cached is None or cached[0] is not keys:  # the same table asks again and again
            slots = np.array([self.slot(p, n) for p, n in keys], dtype=np.int64)
            start = int(slots[0]) if slots.size else 0
            run = slots.size == 0 or bool(
                np.array_equal(slots, np.arange(start, start + slots.size))
            )
            cached = self._rows = (keys, slice(start, start + slots.size) if run else slots)
        rows = cached[1]
        return self.node_used[rows].reshape(-1, DIMS), self.node_count[rows]

    def allocations_of(
        self, workflow_id: str, task_id: str | None = None, attempt: int | None = None
    ) -> list[str]:
        """Held or waiting allocations of a workflow, a task, or one attempt (sorted ids)."""
        if task_id is not None:
            ids = self.tasks.get((workflow_id, task_id), set())
        else:
            ids = {i for (w, _), found in self.tasks.items() if w == workflow_id for i in found}
        return sorted(
            i
            for i in ids
            if (i in self.held or i in self.waiting)
            and (attempt is None or getattr(self.records[i], "attempt", None) in (None, attempt))
        )

    def decided(self, allocation_id: str) -> bool:
        """True once a request was answered (queued counts as not yet answered for good)."""
        record = self.records.get(allocation_id)
        return record is not None and _STAGE[type(record)] >= 2
