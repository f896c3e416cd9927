"""The ledger: folded from ``resources``, idempotent by allocation id, rebuildable."""

from __future__ import annotations

from mesh.events import (
    ResourceAllocated,
    ResourceDenied,
    ResourceQueued,
    ResourceReleased,
    Resources,
    meta,
)
from mesh.resources import Ledger
from tests._resources_support import GB, TEST, Clock, allocator, node, pool, request


def test_an_allocation_only_moves_forward() -> None:
    """A record that would move an allocation back (a late queue entry, a repeated request)
    changes nothing; the same record twice changes nothing."""
    alloc = allocator(pool("p", node("n", 4, 4 * GB)))
    asked = request("t", 2, GB)
    granted = alloc.allocate_resources(asked)
    assert isinstance(granted, ResourceAllocated)
    before = alloc.ledger.tenant_used["t"].copy()
    queued = ResourceQueued(
        **meta(TEST, causation=asked), allocation_id=asked.allocation_id, resources=asked.resources
    )
    for late in (asked, granted, queued):
        assert alloc.ledger.apply(late) is False
    assert (alloc.ledger.tenant_used["t"] == before).all()
    assert len(alloc.ledger.held) == 1


def test_asking_again_gives_the_same_answer_and_allocates_nothing_twice() -> None:
    alloc = allocator(pool("p", node("n", 4, 4 * GB)))
    asked = request("t", 2, GB)
    first = alloc.allocate_resources(asked)
    again = alloc.allocate_resources(asked)
    assert again == first
    assert alloc.ledger.tenant_count == {"t": 1}


def test_a_late_duplicate_request_is_reasserted_so_compaction_keeps_the_decision() -> None:
    alloc = allocator(pool("p", node("n", 4, 4 * GB)))
    asked = request("t", 2, GB)
    granted = alloc.allocate_resources(asked)
    alloc.apply(asked)  # a client retried: the request is now the last record of its key
    assert alloc.ledger.stale == {asked.allocation_id}
    assert alloc.reassert() == [granted]
    assert not alloc.ledger.stale


def test_release_returns_exactly_what_was_held_and_records_the_cost() -> None:
    clock = Clock()
    alloc = allocator(pool("p", node("n", 4, 4 * GB, cost=2.0)), clock=clock)
    granted = alloc.allocate_resources(request("t", 2, 2 * GB, workflow_id="w", task_id="x"))
    assert isinstance(granted, ResourceAllocated)
    assert granted.cost_per_hour == 1.0
    clock.advance(minutes=90)
    [released] = alloc.release(granted.allocation_id, reason="task completed")
    assert isinstance(released, ResourceReleased)
    assert released.cost == 1.5
    assert released.workflow_id == "w"
    assert released.reason == "task completed"
    assert not alloc.ledger.held
    assert not alloc.ledger.tenant_used
    assert alloc.release(granted.allocation_id) == []  # nothing left to release


def test_withdrawing_a_waiting_request_is_a_denial_with_code_withdrawn() -> None:
    alloc = allocator(pool("p", node("n", 1, GB)))
    alloc.allocate_resources(request("t", 1, GB))
    waiting = alloc.allocate_resources(request("t", 1, GB))
    [withdrawn] = alloc.release(waiting.allocation_id, reason="task cancelled")
    assert isinstance(withdrawn, ResourceDenied)
    assert (withdrawn.code, withdrawn.reason) == ("withdrawn", "withdrawn: task cancelled")
    assert not alloc.ledger.waiting


def test_tombstones_forget_records() -> None:
    alloc = allocator(pool("p", node("n", 1, GB)))
    granted = alloc.allocate_resources(request("t", 1, GB))
    alloc.release(granted.allocation_id)
    assert alloc.ledger.forget(f"allocation:{granted.allocation_id}")
    assert granted.allocation_id not in alloc.ledger.records
    assert alloc.ledger.forget("pool:p")
    assert "p" not in alloc.ledger.pools
    assert not alloc.ledger.forget("pool:p")


def test_queue_order_survives_a_rebuild() -> None:
    """A queued request keeps its arrival time, so a rebuilt ledger serves the queue in the same
    order even though the queue entries were written later than the requests."""
    alloc = allocator(pool("p", node("n", 1, GB)))
    alloc.allocate_resources(request("t", 1, GB))
    queued = [alloc.allocate_resources(request("t", 1, GB)) for _ in range(3)]
    rebuilt = Ledger()
    for event in reversed(queued):
        rebuilt.apply(event)
    order = sorted(rebuilt.waiting.values(), key=lambda w: w.arrival)
    assert [w.request.allocation_id for w in order] == [q.allocation_id for q in queued]


def test_usage_of_unknown_nodes_still_counts() -> None:
    """An allocation on a node the pools no longer list (the pool shrank) is still held."""
    ledger = Ledger()
    alloc = allocator(pool("p", node("gone", 4, 4 * GB)))
    granted = alloc.allocate_resources(request("t", 2, GB))
    ledger.apply(granted)
    assert ledger.tenant_count == {"t": 1}
    assert ledger.held[granted.allocation_id].event.resources == Resources(cpu=2, memory_mb=GB)
