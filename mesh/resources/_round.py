"""The working state of one allocation round, and the policy lookups it needs.

A round never touches the ledger: it copies what it changes (tenant usage, free capacity in the
placer) and remembers what it learnt (needs that found no node, routing choices, holds), so that
the decision function stays pure and one round costs about one placement per waiting request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from mesh.events import PoolDeclared
from mesh.resources._ledger import Ledger
from mesh.resources._placement import Ask, Choice, Mask, NodeTable, Placer
from mesh.resources._policies import AllocatorConfig, Policy
from mesh.resources._quotas import Quota
from mesh.resources._vectors import DIMS, EPSILON, Vector, to_vector, zeros


def pool_policy(config: AllocatorConfig, pool: PoolDeclared | None) -> Policy:
    """A pool's policy: its own settings over the allocator's defaults."""
    base = config.default
    if pool is None:
        return base
    return Policy(
        pool.policy or base.kind,
        pool.placement or base.placement,
        pool.preempt or (base.preempt and pool.policy is None),
    )


@dataclass
class Round:
    """The mutable working state of one round (copies; the ledger is never touched)."""

    ledger: Ledger
    table: NodeTable
    config: AllocatorConfig
    now: datetime
    placer: Placer
    quotas: dict[str, Quota]
    used: dict[str, Vector] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)
    rate: dict[str, float] = field(default_factory=dict)
    pool_used: dict[tuple[str, str], Vector] = field(default_factory=dict)
    held_nodes: Mask = field(default_factory=lambda: np.zeros(0, dtype=np.bool_))
    reserved: dict[tuple[str | None, str | None], Vector] = field(default_factory=dict)
    why: dict[str, tuple[str, str]] = field(default_factory=dict)
    failed: dict[str | None, tuple[Vector, int]] = field(default_factory=dict)
    """Needs that found no node, by pool (None = any), each with the spending room it had (rows
    of a buffer, and how many are used): a need at least as large with no more room cannot fit
    either, since a round only ever takes capacity (and holds only grow)."""
    denials: dict[tuple[bytes, str | None, str], tuple[str, str] | None] = field(
        default_factory=dict
    )
    routes: dict[str, tuple[Choice, Ask, int, int]] = field(default_factory=dict)
    """Routing's choice per request, with the grant and hold counts it was made at."""
    grants: int = 0
    held: set[int] = field(default_factory=set)

    def doomed(self, key: str | None, ask: Ask) -> bool:
        found = self.failed.get(key)
        if found is None or self.reserved:
            return False
        rows = found[0][: found[1]]
        bigger = np.all(rows[:, :DIMS] <= ask.need + EPSILON, axis=1)
        return bool(np.any(bigger & (rows[:, DIMS] >= ask.cost_room)))

    def no_fit(self, key: str | None, ask: Ask) -> None:
        if self.reserved:  # a reservation makes failure depend on the workflow too
            return
        rows, used = self.failed.get(key, (np.empty((8, DIMS + 1)), 0))
        if used == len(rows):
            rows = np.vstack([rows, np.empty_like(rows)])
        rows[used, :DIMS], rows[used, DIMS] = ask.need, ask.cost_room
        self.failed[key] = (rows, used + 1)

    def tenant(self, tenant: str) -> tuple[Vector, int, float]:
        if tenant not in self.used:
            self.used[tenant] = self.ledger.tenant_used.get(tenant, zeros()).copy()
            self.count[tenant] = self.ledger.tenant_count.get(tenant, 0)
            self.rate[tenant] = self.ledger.tenant_rate.get(tenant, 0.0)
        return self.used[tenant], self.count[tenant], self.rate[tenant]

    def pool_tenants(self, pool_id: str) -> dict[str, Vector]:
        held = {t: v for (t, p), v in self.ledger.tenant_pool_used.items() if p == pool_id}
        held.update({t: v for (t, p), v in self.pool_used.items() if p == pool_id})
        return held

    def grant(self, tenant: str, pool_id: str, need: Vector, rate: float) -> None:
        self.grants += 1
        used, count, spent = self.tenant(tenant)
        self.used[tenant], self.count[tenant], self.rate[tenant] = (
            used + need,
            count + 1,
            spent + rate,
        )
        key = (tenant, pool_id)
        base = self.pool_used.get(key)
        if base is None:
            base = self.ledger.tenant_pool_used.get(key, zeros())
        self.pool_used[key] = base + need


def reservations(
    ledger: Ledger, config: AllocatorConfig, quotas: Mapping[str, Quota], now: datetime
) -> dict[tuple[str | None, str | None], Vector]:
    """Forecast needs still expected within the horizon, by (pool, workflow) and (pool, None)."""
    horizon = timedelta(seconds=config.horizon_seconds)
    reserved: dict[tuple[str | None, str | None], Vector] = {}
    for forecast in ledger.forecasts.values():
        own = quotas.get(forecast.tenant)
        kind = (
            own.policy.kind
            if own is not None and own.policy is not None
            else pool_policy(config, ledger.pools.get(forecast.pool_id or "")).kind
        )
        if kind != "predictive":
            continue
        for item in forecast.items:
            if (forecast.workflow_id, item.task_id) in ledger.tasks:
                continue  # it asked already: its request holds or waits for its resources
            if not now - horizon <= item.expected_at <= now + horizon:
                continue
            need = to_vector(item.resources)
            for key in ((forecast.pool_id, forecast.workflow_id), (forecast.pool_id, None)):
                reserved[key] = reserved.get(key, zeros()) + need
    return reserved
