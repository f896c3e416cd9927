"""Per-tenant quotas: most of each resource held at once, most allocations, most cost per hour.

Two verdicts, because they call for different answers:

- a request that could never fit its tenant's quota, even with nothing else held, is **denied**
  (``ResourceDenied``, code ``quota``) with a reason naming the tenant, the resource, the limit and
  the request, e.g. ``quota exceeded: tenant 'acme' may hold at most 4 CPU cores at once; the
  request asks for 8 CPU cores``;
- a request that fits the quota but not on top of what the tenant already holds **waits**
  (``ResourceQueued``, code ``quota``) until the tenant's own allocations are released.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mesh.events import Producer, QuotaSet, meta
from mesh.resources._policies import Policy
from mesh.resources._vectors import (
    DIMS,
    EPSILON,
    RESOURCES,
    Vector,
    amount,
    to_resources,
    to_vector,
)


@dataclass(frozen=True)
class Quota:
    """A tenant's limits as a vector (``inf`` = no limit) plus count and spending limits."""

    tenant: str
    limits: Vector = field(default_factory=lambda: np.full(DIMS, np.inf))
    max_allocations: int | None = None
    max_cost_per_hour: float | None = None
    policy: Policy | None = None

    @classmethod
    def from_event(cls, event: QuotaSet, *, default: Policy | None = None) -> Quota:
        """The quota a ``QuotaSet`` sets (zero limits mean "not limited")."""
        raw = to_vector(event.limits)
        policy = None
        if event.policy is not None:
            base = default or Policy()
            preempt = event.preempt if event.preempt is not None else base.preempt
            policy = Policy(event.policy, base.placement, preempt)
        return cls(
            tenant=event.tenant,
            limits=np.where(raw > 0, raw, np.inf),
            max_allocations=event.max_allocations,
            max_cost_per_hour=event.max_cost_per_hour,
            policy=policy,
        )

    def to_event(self, producer: Producer, *, correlation_id: str | None = None) -> QuotaSet:
        """The ``QuotaSet`` that sets this quota."""
        limits = np.where(np.isfinite(self.limits), self.limits, 0.0)
        return QuotaSet(
            **meta(producer, correlation_id=correlation_id or f"quota-{self.tenant}"),
            tenant=self.tenant,
            limits=to_resources(limits),
            max_allocations=self.max_allocations,
            max_cost_per_hour=self.max_cost_per_hour,
            policy=self.policy.kind if self.policy else None,
            preempt=self.policy.preempt if self.policy else None,
        )

    def cost_room(self, rate_held: float) -> float:
        """Most a new allocation may cost per hour without breaking the spending limit."""
        if self.max_cost_per_hour is None:
            return math.inf
        return max(self.max_cost_per_hour - rate_held, 0.0)


def never_fits(quota: Quota | None, need: Vector) -> str | None:
    """Why ``need`` can never be granted under ``quota`` (None if it can)."""
    if quota is None:
        return None
    if quota.max_allocations == 0:
        return f"quota exceeded: tenant {quota.tenant!r} may hold no allocations at all"
    over = np.flatnonzero(need > quota.limits + EPSILON)
    if over.size == 0:
        return None
    d = int(over[0])
    return (
        f"quota exceeded: tenant {quota.tenant!r} may hold at most "
        f"{amount(d, float(quota.limits[d]))} at once; the request asks for "
        f"{amount(d, float(need[d]))}"
    )


def must_wait(quota: Quota | None, held: Vector, count: int, need: Vector) -> str | None:
    """Why ``need`` cannot be granted on top of what the tenant holds now (None if it can)."""
    if quota is None:
        return None
    if quota.max_allocations is not None and count >= quota.max_allocations:
        return (
            f"tenant {quota.tenant!r} is at its quota: holds {count} of at most "
            f"{quota.max_allocations} allocations"
        )
    over = np.flatnonzero(held + need > quota.limits + EPSILON)
    if over.size == 0:
        return None
    d = int(over[0])
    return (
        f"tenant {quota.tenant!r} is at its quota: holds {amount(d, float(held[d]))} of at most "
        f"{amount(d, float(quota.limits[d]))}; the request needs {amount(d, float(need[d]))}"
    )


def too_costly(quota: Quota, cheapest_rate: float) -> str:
    """Why a request whose cheapest placement breaks the spending limit on its own is denied."""
    return (
        f"quota exceeded: tenant {quota.tenant!r} may spend at most "
        f"{quota.max_cost_per_hour:g} per hour; the cheapest placement costs "
        f"{cheapest_rate:g} per hour"
    )


def limit_names(quota: Quota) -> dict[str, float | None]:
    """The limits by resource field name (None = not limited), for display and JSON."""
    return {
        RESOURCES[d]: (float(quota.limits[d]) if np.isfinite(quota.limits[d]) else None)
        for d in range(DIMS)
    }


def describe_limits(quota: Quota) -> str:
    """The limits for humans, e.g. ``4 CPU cores, 8192 MiB memory`` (or ``none``)."""
    parts = [amount(d, float(quota.limits[d])) for d in range(DIMS) if np.isfinite(quota.limits[d])]
    return ", ".join(parts) or "none"
