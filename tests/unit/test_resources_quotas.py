"""Quotas: per tenant per resource, concurrent allocations and spending, with readable reasons."""

from __future__ import annotations

from mesh.events import (
    QuotaSet,
    ResourceAllocated,
    ResourceDenied,
    ResourceQueued,
    Resources,
    meta,
)
from mesh.resources import Quota
from tests._resources_support import GB, TEST, allocator, node, pool, request


def quota(tenant: str, **fields: object) -> QuotaSet:
    limits = fields.pop("limits", Resources())
    return QuotaSet(**meta(TEST, correlation_id="q"), tenant=tenant, limits=limits, **fields)  # type: ignore[arg-type]


def test_a_quota_breach_is_denied_with_tenant_resource_limit_and_request() -> None:
    alloc = allocator(pool("p", node("n", 64, 64 * GB)))
    alloc.set_quotas([quota("acme", limits=Resources(cpu=4))])
    denied = alloc.allocate_resources(request("acme", 8, GB))
    assert isinstance(denied, ResourceDenied)
    assert denied.code == "quota"
    assert denied.reason == (
        "quota exceeded: tenant 'acme' may hold at most 4 CPU cores at once; "
        "the request asks for 8 CPU cores"
    )
    assert alloc.ledger.tenant_count.get("acme") is None  # nothing was held


def test_other_resources_and_tenants_are_not_limited() -> None:
    """A zero in the limits means "no limit"; tenants without a quota are free."""
    alloc = allocator(pool("p", node("n", 64, 64 * GB)))
    alloc.set_quotas([quota("acme", limits=Resources(cpu=4))])
    assert isinstance(alloc.allocate_resources(request("acme", 4, 60 * GB)), ResourceAllocated)
    assert isinstance(alloc.allocate_resources(request("other", 32, GB)), ResourceAllocated)


def test_within_quota_but_over_it_with_what_is_held_waits_for_the_tenants_own_releases() -> None:
    alloc = allocator(pool("p", node("n", 64, 64 * GB)))
    alloc.set_quotas([quota("acme", limits=Resources(memory_mb=8 * GB))])
    first = alloc.allocate_resources(request("acme", 1, 6 * GB))
    waits = alloc.allocate_resources(request("acme", 1, 4 * GB))
    assert isinstance(first, ResourceAllocated)
    assert isinstance(waits, ResourceQueued)
    assert waits.code == "quota"
    assert waits.reason == (
        "tenant 'acme' is at its quota: holds 6144 MiB memory of at most 8192 MiB memory; "
        "the request needs 4096 MiB memory"
    )
    through = alloc.release_resources(first.allocation_id)
    assert [e.allocation_id for e in through if isinstance(e, ResourceAllocated)] == [
        waits.allocation_id
    ]


def test_max_allocations_caps_concurrent_allocations() -> None:
    alloc = allocator(pool("p", node("n", 64, 64 * GB)))
    alloc.set_quotas([quota("acme", max_allocations=2), quota("none", max_allocations=0)])
    results = [alloc.allocate_resources(request("acme", 1, GB)) for _ in range(3)]
    assert [type(r).__name__ for r in results] == [
        "ResourceAllocated",
        "ResourceAllocated",
        "ResourceQueued",
    ]
    assert "holds 2 of at most 2 allocations" in results[2].reason  # type: ignore[union-attr]
    never = alloc.allocate_resources(request("none", 1, GB))
    assert isinstance(never, ResourceDenied)
    assert never.reason == "quota exceeded: tenant 'none' may hold no allocations at all"


def test_spending_limit_denies_what_can_never_be_afforded_and_steers_placement() -> None:
    alloc = allocator(
        pool("p", node("cheap", 2, 2 * GB, cost=1.0), node("dear", 16, 16 * GB, cost=32.0))
    )
    alloc.set_quotas([quota("acme", max_cost_per_hour=1.5)])
    denied = alloc.allocate_resources(request("acme", 4, GB))
    assert isinstance(denied, ResourceDenied)
    assert denied.reason == (
        "quota exceeded: tenant 'acme' may spend at most 1.5 per hour; the cheapest placement "
        "costs 8 per hour"
    )
    fits = alloc.allocate_resources(request("acme", 2, GB))
    assert isinstance(fits, ResourceAllocated)
    assert fits.node_id == "cheap"
    assert fits.cost_per_hour == 1.0


def test_raising_a_quota_lets_queued_work_in_and_lowering_it_denies_what_no_longer_fits() -> None:
    alloc = allocator(pool("p", node("n", 64, 64 * GB)))
    alloc.set_quotas([quota("acme", limits=Resources(cpu=2))])
    held = alloc.allocate_resources(request("acme", 2, GB))
    waiting = alloc.allocate_resources(request("acme", 2, GB))
    assert isinstance(held, ResourceAllocated)
    assert isinstance(waiting, ResourceQueued)
    events = alloc.set_quotas({"acme": Quota("acme", limits=Quota("acme").limits.copy())})
    assert any(
        isinstance(e, ResourceAllocated) and e.allocation_id == waiting.allocation_id
        for e in events
    )
    queued = alloc.allocate_resources(request("acme", 8, GB))
    assert isinstance(queued, ResourceAllocated)
    later = alloc.allocate_resources(request("acme", 60, GB))
    assert isinstance(later, ResourceQueued)
    events = alloc.set_quotas([quota("acme", limits=Resources(cpu=16))])
    [denied] = [e for e in events if isinstance(e, ResourceDenied)]
    assert denied.allocation_id == later.allocation_id
    assert denied.code == "quota"


def test_quota_round_trips_through_its_event() -> None:
    event = quota(
        "acme",
        limits=Resources(cpu=4, gpu=1),
        max_allocations=3,
        max_cost_per_hour=2.0,
        policy="priority",
        preempt=True,
    )
    again = Quota.from_event(event).to_event(TEST)
    fields = ("tenant", "limits", "max_allocations", "max_cost_per_hour", "policy", "preempt")
    assert again.model_dump(include=set(fields)) == event.model_dump(include=set(fields))
