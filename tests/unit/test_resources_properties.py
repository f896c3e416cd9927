"""Property tests: under any mix of concurrent requests and releases, the ledger never holds more
than capacity or quota, returns to zero when everything ends, and rebuilds from its records."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.events import (
    Event,
    PlacementName,
    PolicyName,
    QuotaSet,
    ResourceAllocated,
    Resources,
    meta,
)
from mesh.resources import Allocator, Ledger, Policy, Quota
from mesh.resources._vectors import EPSILON
from tests._resources_support import GB, T0, TEST, allocator, node, pool, request

TENANTS = ("a", "b", "c", "d")


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Allocator, list[Event], random.Random]:
    """Pools of random nodes, random quotas and a policy."""
    pools = []
    for p in range(draw(st.integers(1, 3))):
        nodes = [
            node(
                f"p{p}n{i}",
                draw(st.integers(1, 16)),
                draw(st.integers(1, 32)) * GB,
                gpu=draw(st.integers(0, 2)),
                cost=draw(st.sampled_from([0.0, 0.5, 2.0])),
            )
            for i in range(draw(st.integers(1, 8)))
        ]
        pools.append(
            pool(
                f"p{p}",
                *nodes,
                policy=draw(st.sampled_from([None, "fair", "priority", "demand"])),
                preempt=draw(st.booleans()),
                placement=draw(st.sampled_from([None, "cheapest", "best_fit"])),
            )
        )
    kinds: tuple[PolicyName, ...] = ("fair", "priority", "demand")
    placements: tuple[PlacementName, ...] = ("cheapest", "best_fit")
    policy = Policy(draw(st.sampled_from(kinds)), draw(st.sampled_from(placements)))
    alloc = allocator(*pools, policy=policy)
    log: list[Event] = list(pools)
    for tenant in TENANTS[: draw(st.integers(0, 4))]:
        event = QuotaSet(
            **meta(TEST, correlation_id="q"),
            tenant=tenant,
            limits=Resources(
                cpu=draw(st.integers(0, 24)),
                memory_mb=draw(st.integers(0, 48)) * GB,
                gpu=draw(st.integers(0, 2)),
            ),
            max_allocations=draw(st.one_of(st.none(), st.integers(1, 20))),
            max_cost_per_hour=draw(st.one_of(st.none(), st.sampled_from([1.0, 5.0]))),
            policy=draw(st.sampled_from([None, "priority", "demand"])),
        )
        log += alloc.set_quotas([event])
    return alloc, log, random.Random(draw(st.integers(0, 2**32)))  # noqa: S311 - not crypto


def check_bounds(alloc: Allocator) -> None:
    """Nothing holds more than its node's capacity or its tenant's quota."""
    table = alloc.node_table()
    used, _ = alloc.ledger.used_on(table.keys)
    assert np.all(used <= table.capacity + EPSILON)
    assert np.all(used >= -EPSILON)
    for tenant, event in alloc.ledger.quotas.items():
        quota = Quota.from_event(event)
        held = alloc.ledger.tenant_used.get(tenant)
        if held is not None:
            assert np.all(held <= quota.limits + EPSILON)
        if quota.max_allocations is not None:
            assert alloc.ledger.tenant_count.get(tenant, 0) <= quota.max_allocations
        if quota.max_cost_per_hour is not None:
            assert alloc.ledger.tenant_rate.get(tenant, 0.0) <= quota.max_cost_per_hour + 1e-6


def usage_of(ledger: Ledger) -> dict[str, object]:
    """Everything usage is made of, comparable across ledgers."""
    nodes = {
        key: tuple(np.round(ledger.node_used[slot], 6))
        for key, slot in ledger._slots.items()
        if ledger.node_count[slot]
    }
    return {
        "held": sorted(ledger.held),
        "waiting": sorted(ledger.waiting),
        "nodes": nodes,
        "tenants": {t: tuple(np.round(v, 6)) for t, v in sorted(ledger.tenant_used.items())},
        "counts": dict(sorted(ledger.tenant_count.items())),
    }


def fold(events: list[Event]) -> Ledger:
    ledger = Ledger()
    for event in events:
        ledger.apply(event)
    return ledger


def compacted(events: list[Event], rng: random.Random) -> list[Event]:
    """What compaction leaves (the last record per key), in an order only a key fixes."""
    last: dict[str, Event] = {}
    for event in events:
        last.pop(event.key, None)
        last[event.key] = event
    survivors = list(last.values())
    rng.shuffle(survivors)  # partitions interleave arbitrarily across keys
    return survivors


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds())
def test_1000_concurrent_requests_never_exceed_capacity_or_quota_and_end_at_zero(
    world: tuple[Allocator, list[Event], random.Random],
) -> None:
    alloc, log, rng = world
    requests = [
        request(
            rng.choice(TENANTS),
            rng.choice([0, 0.5, 1, 2, 4, 8]),
            rng.choice([0, 1, 2, 4, 8]) * GB,
            gpu=rng.choice([0, 0, 0, 1]),
            priority=rng.choice(["low", "normal", "high", "critical"]),
            pool_id=rng.choice([None, None, None, "p0"]),
            at=T0 + timedelta(microseconds=i),
        )
        for i in range(1000)
    ]
    pending = list(requests)
    while pending:  # requests arrive in concurrent batches, while earlier work ends at random
        size = rng.randint(1, 80)
        batch, pending = pending[:size], pending[size:]
        for r in batch:
            alloc.apply(r)
        log += batch
        log += alloc.decide()
        check_bounds(alloc)
        ending = rng.sample(sorted(alloc.ledger.held), k=len(alloc.ledger.held) // 3)
        for allocation_id in ending:  # tasks end together; the queue is served once after
            log += alloc.release(allocation_id, reason="task completed")
        log += alloc.decide()
        check_bounds(alloc)
    assert usage_of(fold(log)) == usage_of(alloc.ledger), "replaying the log rebuilds the ledger"
    assert usage_of(fold(compacted(log, rng))) == usage_of(alloc.ledger), "so does compaction"
    assert usage_of(fold(log + log)) == usage_of(alloc.ledger), "folding twice changes nothing"
    while alloc.ledger.held:  # every task ends; what waited gets in and ends too
        for allocation_id in sorted(alloc.ledger.held):
            log += alloc.release(allocation_id, reason="task completed")
        log += alloc.decide()
        check_bounds(alloc)
    assert not alloc.ledger.waiting, "whatever was not denied was eventually served"
    assert not alloc.ledger.tenant_used
    assert not alloc.ledger.tenant_count
    assert not np.any(alloc.ledger.node_used)
    usage = alloc.get_resource_usage()
    assert usage.used == Resources()
    assert usage.allocations == 0
    assert all(p.used == Resources() for p in usage.pools)
    granted = {e.allocation_id for e in log if isinstance(e, ResourceAllocated)}
    assert len(granted) == sum(isinstance(e, ResourceAllocated) for e in log), "none granted twice"
