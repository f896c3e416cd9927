"""The allocator under a long queue. Its pace: a round costs in proportion to what waits, so
after a round over a queue the next one waits a multiple of its cost (the loop comes back for
it) instead of running after every input batch; a cheap round is due again at once."""

from __future__ import annotations

import time

from mesh.events import (
    QuotaSet,
    ResourceAllocated,
    ResourceQueued,
    ResourceReleased,
    Resources,
    meta,
)
from mesh.resources import Allocator, AllocatorConfig, Ask, NumpyPlacer, Policy
from mesh.resources._placement import Choice, Mask
from mesh.resources.runtime._app import ResourceService
from mesh.settings import Settings
from tests._resources_support import GB, TEST, node, pool, pools_config, request, submit


def service() -> ResourceService:
    pools = pools_config(
        {"id": "small", "nodes": [{"id": "n", "count": 1, "cpu": 1, "memory_mb": 1024}]},
        discovery={"enabled": False},
    )
    return ResourceService(Settings(topic_prefix="t."), pools=pools)


def test_a_round_over_a_queue_puts_the_next_one_off_and_the_loop_owes_it() -> None:
    svc = service()
    svc.leader = True
    for declared in svc.pools.pools(svc.me):
        svc.allocator.apply(declared)
    for _ in range(300):  # one fits; 299 wait for it
        svc.allocator.apply(request(cpu=1))
        svc._new_requests = True
    svc._round(tick=False)
    assert len(svc.allocator.ledger.held) == 1
    assert len(svc.allocator.ledger.waiting) == 299
    assert svc._next_round > 0.0  # paced after what the round cost

    svc._next_round = time.monotonic() + 60  # as if that round had been slow
    late = request(cpu=1)
    svc.allocator.apply(late)
    svc._new_requests = True
    svc._round(tick=False)
    assert svc._round_owed  # put off, not dropped
    assert not svc.allocator.ledger.waiting[late.allocation_id].queued

    svc._next_round = 0.0  # due: the loop's next pass runs it
    svc._round(tick=False)
    assert not svc._round_owed
    assert svc.allocator.ledger.waiting[late.allocation_id].queued  # decided: it queues


class CountingPlacer(NumpyPlacer):
    """The numpy placer, counting how many requests it scores."""

    calls = 0

    def choose(self, ask: Ask, allowed: Mask | None = None) -> Choice | None:
        CountingPlacer.calls += 1
        return super().choose(ask, allowed)


def test_a_queue_behind_a_full_count_quota_costs_no_placement() -> None:
    """A tenant at its ``max_allocations`` can get nothing until one of its own allocations
    ends: its queued requests are not scored at all, and equal requests are scored once while
    they are routed (a round over a long queue scored every one of them, after every input
    batch: the gate collapsed under a sustained rate)."""
    alloc = Allocator(
        [pool("a", node("a1", 64, 64 * GB)), pool("b", node("b1", 64, 64 * GB))],
        config=AllocatorConfig(default=Policy()),
        producer=TEST,
        placer=CountingPlacer,
    )
    alloc.set_quotas(
        [
            QuotaSet(
                **meta(TEST, correlation_id="q"), tenant="t", limits=Resources(), max_allocations=64
            )
        ]
    )
    decisions = submit(alloc, [request("t") for _ in range(500)])
    granted = [d for d in decisions if isinstance(d, ResourceAllocated)]
    queued = [d for d in decisions if isinstance(d, ResourceQueued)]
    assert (len(granted), len(queued)) == (64, 436)
    assert "holds 64 of at most 64 allocations" in (queued[-1].reason or "")
    assert CountingPlacer.calls <= 64 + 2  # one routing score, then one per grant

    CountingPlacer.calls = 0
    assert submit(alloc, [request("t")])  # the newcomer queues
    assert CountingPlacer.calls == 0

    first = granted[0]
    for release in alloc.release(first.allocation_id):
        assert isinstance(release, ResourceReleased)
    after = list(alloc.decide())
    assert [type(d) for d in after] == [ResourceAllocated]  # the oldest waiting gets the room
    assert after[0].allocation_id == queued[0].allocation_id
