"""Who is served first when requests contend for the same capacity.

A pool's policy arbitrates across tenants; a tenant's own policy (from its quota) orders its own
requests and may change its weight:

- ``fair``: Dominant Resource Fairness (Ghodsi et al., NSDI 2011): serve the tenant whose
  largest share of any resource of the pool is smallest. Progressive filling: a tenant whose
  request does not fit is passed over and the others keep filling.
- ``priority``: higher priority first; within a priority, the tenant with the smallest share,
  then arrival. A waiting request that does not fit *holds* the node it fits best, so smaller,
  lower-priority work cannot starve it. Without ``preempt``, a newcomer never jumps ahead of
  work queued before it arrived (and cannot take a held node); with ``preempt``, a
  higher-priority newcomer overtakes lower-priority queued work.
- ``demand``: weighted DRF whose weights are each tenant's queued demand, so a tenant with three
  times the backlog gets three times the share.
- ``predictive``: fair, and capacity forecast for other workflows' upcoming tasks (the planner's
  estimates, within a horizon) is kept free for them.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from mesh.events import PlacementName, PolicyName, Priority
from mesh.resources._vectors import Vector, dominant_share, zeros

PRIORITY_RANK: Mapping[Priority, int] = {"critical": 0, "high": 1, "normal": 2, "low": 3}
"""Lower rank is served first."""


@dataclass(frozen=True)
class Policy:
    """How a pool (or a tenant) shares contended capacity and picks nodes."""

    kind: PolicyName = "fair"
    placement: PlacementName = "best_fit"
    preempt: bool = False


@dataclass(frozen=True)
class AllocatorConfig:
    """Defaults of the allocator, usually read from the pools file."""

    default: Policy = field(default_factory=Policy)
    horizon_seconds: float = 300.0
    """The predictive policy reserves for forecast work expected within this many seconds."""
    discovery_pool: str = "agents"
    """Pool that holds the hosts agents report."""
    discovery: bool = True
    """Whether hosts reported by agents become nodes at all."""
    liveness_intervals: float = 3.0
    """An agent is dead after this many heartbeat intervals without a heartbeat."""


@dataclass(frozen=True)
class Contender:
    """What arbitration needs to know about one waiting request."""

    allocation_id: str
    tenant: str
    priority: Priority
    need: Vector
    arrival: tuple[datetime, str]
    queued_before: bool
    """It was already waiting when this round began (newcomers cannot overtake it without
    ``preempt``)."""


def request_rank(c: Contender, *, preempt: bool) -> tuple[int, int]:
    """Position among waiting work under ``priority``: queued work first unless preempting."""
    band = PRIORITY_RANK[c.priority]
    return (0, band) if preempt else (0 if c.queued_before else 1, band)


def _priority_key(c: Contender, *, preempt: bool) -> tuple[tuple[int, int], tuple[datetime, str]]:
    return request_rank(c, preempt=preempt), c.arrival


class Turns:
    """Serves one pool's contenders in its policy's order, one at a time.

    Call :meth:`next` for the contender whose turn it is, then :meth:`granted` or
    :meth:`passed` with it; shares move as grants are made, so the order is dynamic (DRF's
    progressive filling), not a sort done once.
    """

    def __init__(
        self,
        contenders: Sequence[Contender],
        *,
        policy: Policy,
        capacity: Vector,
        held: Mapping[str, Vector],
        tenant_policy: Callable[[str], Policy | None] = lambda _tenant: None,
    ) -> None:
        self.policy = policy
        self.capacity = capacity
        self._held = {t: v.copy() for t, v in held.items()}
        self._shares: dict[str, float] = {}
        self._queues: dict[str, list[Contender]] = {}
        for c in contenders:
            self._queues.setdefault(c.tenant, []).append(c)
        self._weights = self._weights_for(tenant_policy)
        for tenant, queue in self._queues.items():
            own = tenant_policy(tenant)
            by_priority = policy.kind == "priority" or (own is not None and own.kind == "priority")
            preempt = own.preempt if own is not None and own.kind == "priority" else policy.preempt
            if by_priority:
                queue.sort(key=functools.partial(_priority_key, preempt=preempt))
            else:
                queue.sort(key=lambda c: c.arrival)
        self._heap: list[tuple[tuple[object, ...], str]] = []
        for tenant in self._queues:
            self._push(tenant)

    def _weights_for(self, tenant_policy: Callable[[str], Policy | None]) -> dict[str, float]:
        """Weights of the demand policy (its tenants' queued demand over the mean); 1 for all
        others, whose weights need no demand summed (the common case: once per pool)."""
        if self.policy.kind != "demand" and not any(
            (own := tenant_policy(tenant)) is not None and own.kind == "demand"
            for tenant in self._queues
        ):
            return dict.fromkeys(self._queues, 1.0)
        demand = {
            tenant: dominant_share(np.sum([c.need for c in queue], axis=0), self.capacity)
            for tenant, queue in self._queues.items()
        }
        weights: dict[str, float] = {}
        positive = [d for d in demand.values() if d > 0]
        mean = float(np.mean(positive)) if positive else 1.0
        for tenant, wanted in demand.items():
            own = tenant_policy(tenant)
            by_demand = self.policy.kind == "demand" or (own is not None and own.kind == "demand")
            weights[tenant] = max(wanted / mean, 1e-6) if by_demand else 1.0
        return weights

    def share(self, tenant: str) -> float:
        """The tenant's (weighted) dominant share of the pool now."""
        found = self._shares.get(tenant)
        if found is None:
            held = self._held.get(tenant)
            used = held if held is not None else zeros()
            found = dominant_share(used, self.capacity) / self._weights.get(tenant, 1.0)
            self._shares[tenant] = found
        return found

    def _push(self, tenant: str) -> None:
        queue = self._queues[tenant]
        if not queue:
            return
        head = queue[0]
        key: tuple[object, ...]
        if self.policy.kind == "priority":
            key = (
                request_rank(head, preempt=self.policy.preempt),
                self.share(tenant),
                head.arrival,
            )
        else:
            key = (self.share(tenant), head.arrival)
        heapq.heappush(self._heap, (key, tenant))

    def next(self) -> Contender | None:
        """The contender whose turn it is, or None when everyone has had theirs."""
        if not self._heap:
            return None
        _, tenant = heapq.heappop(self._heap)
        return self._queues[tenant][0]

    def granted(self, contender: Contender) -> None:
        """The contender got its resources: its tenant's share grows."""
        self._queues[contender.tenant].pop(0)
        held = self._held.setdefault(contender.tenant, zeros())
        held += contender.need
        self._shares.pop(contender.tenant, None)
        self._push(contender.tenant)

    def passed(self, contender: Contender) -> None:
        """The contender could not be placed this round; its tenant's next request gets a turn."""
        self._queues[contender.tenant].pop(0)
        self._push(contender.tenant)
