"""``get_resource_usage``: what every pool and tenant holds, and what workflows have spent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np

from mesh.events import Resources
from mesh.resources._cost import WorkflowCost, workflow_costs
from mesh.resources._ledger import Ledger
from mesh.resources._placement import NodeTable
from mesh.resources._policies import AllocatorConfig
from mesh.resources._quotas import Quota, limit_names
from mesh.resources._round import pool_policy
from mesh.resources._vectors import to_resources, zeros


@dataclass(frozen=True)
class PoolUsage:
    """One pool: its size, what is held and what is free."""

    pool_id: str
    policy: str
    placement: str
    nodes: int
    capacity: Resources
    used: Resources
    free: Resources
    allocations: int
    cost_per_hour: float
    """What its live allocations cost per hour."""


@dataclass(frozen=True)
class TenantUsage:
    """One tenant: what it holds, what waits, what it costs, and its quota."""

    tenant: str
    used: Resources
    allocations: int
    waiting: int
    cost_per_hour: float
    quota: Mapping[str, Any] | None


@dataclass(frozen=True)
class ResourceUsage:
    """A picture of the ledger at one moment."""

    at: datetime
    pools: tuple[PoolUsage, ...]
    tenants: tuple[TenantUsage, ...]
    workflows: tuple[WorkflowCost, ...]
    capacity: Resources
    used: Resources
    allocations: int
    waiting: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (``mesh resources usage --json``)."""
        data = asdict(self)
        data["at"] = self.at.isoformat()
        plain: dict[str, Any] = _plain(data)
        return plain


def _plain(value: Any) -> Any:
    if isinstance(value, Resources):
        return value.model_dump()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def quota_summary(quota: Quota) -> dict[str, Any]:
    """A quota as plain data: limits by resource (None = no limit) and the other limits."""
    return {
        "limits": limit_names(quota),
        "max_allocations": quota.max_allocations,
        "max_cost_per_hour": quota.max_cost_per_hour,
        "policy": quota.policy.kind if quota.policy else None,
        "preempt": quota.policy.preempt if quota.policy else None,
    }


def usage(
    ledger: Ledger, table: NodeTable, config: AllocatorConfig, now: datetime
) -> ResourceUsage:
    """The usage report of ``ledger`` over the nodes of ``table``."""
    used_rows, _ = ledger.used_on(table.keys)
    pools = []
    for pool_id in table.pools:
        rows = table.in_pool(pool_id)
        capacity, used = table.capacity[rows].sum(axis=0), used_rows[rows].sum(axis=0)
        held = [h for h in ledger.held.values() if h.event.pool_id == pool_id]
        policy = pool_policy(config, ledger.pools.get(pool_id))
        pools.append(
            PoolUsage(
                pool_id=pool_id,
                policy=policy.kind,
                placement=policy.placement,
                nodes=int(rows.sum()),
                capacity=to_resources(capacity),
                used=to_resources(used),
                free=to_resources(np.maximum(capacity - used, 0.0)),
                allocations=len(held),
                cost_per_hour=round(sum(h.rate for h in held), 9),
            )
        )
    tenants_seen = set(ledger.tenant_count) | set(ledger.quotas)
    waiting: dict[str, int] = {}
    for w in ledger.waiting.values():
        waiting[w.request.tenant] = waiting.get(w.request.tenant, 0) + 1
    tenants_seen |= set(waiting)
    tenants = []
    for tenant in sorted(tenants_seen):
        quota_event = ledger.quotas.get(tenant)
        quota = Quota.from_event(quota_event, default=config.default) if quota_event else None
        tenants.append(
            TenantUsage(
                tenant=tenant,
                used=to_resources(ledger.tenant_used.get(tenant, zeros())),
                allocations=ledger.tenant_count.get(tenant, 0),
                waiting=waiting.get(tenant, 0),
                cost_per_hour=round(ledger.tenant_rate.get(tenant, 0.0), 9),
                quota=quota_summary(quota) if quota else None,
            )
        )
    total_used = sum((h.need for h in ledger.held.values()), zeros())
    return ResourceUsage(
        at=now,
        pools=tuple(pools),
        tenants=tuple(tenants),
        workflows=tuple(workflow_costs(ledger, now).values()),
        capacity=to_resources(table.capacity.sum(axis=0) if len(table) else zeros()),
        used=to_resources(total_used),
        allocations=len(ledger.held),
        waiting=len(ledger.waiting),
    )
