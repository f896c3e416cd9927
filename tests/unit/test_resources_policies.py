"""Policies: who is served first when requests contend for the same capacity."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

import pytest

from mesh.events import (
    ExecutionPlan,
    ForecastItem,
    QuotaSet,
    ResourceAllocated,
    ResourceForecast,
    ResourceQueued,
    Resources,
    TaskSpec,
    meta,
)
from mesh.resources import Policy, forecast_for_plan
from tests._resources_support import GB, T0, TEST, allocator, node, pool, request, submit


def granted(events: Sequence[object]) -> Counter[str]:
    return Counter(e.tenant for e in events if isinstance(e, ResourceAllocated))


def test_drf_reproduces_the_nsdi_2011_example() -> None:
    """9 CPUs and 18 GB; A's tasks need <1 CPU, 4 GB>, B's <3 CPU, 1 GB>, both with more demand
    than fits: Dominant Resource Fairness gives A 3 tasks and B 2 (Ghodsi et al., section 4)."""
    alloc = allocator(pool("cluster", node("n", 9, 18 * GB)), policy=Policy("fair"))
    asks = [request("A", 1, 4 * GB) for _ in range(10)] + [
        request("B", 3, 1 * GB) for _ in range(10)
    ]
    decisions = submit(alloc, asks)
    assert granted(decisions) == {"A": 3, "B": 2}
    usage = {t.tenant: t for t in alloc.get_resource_usage().tenants}
    assert usage["A"].used == Resources(cpu=3, memory_mb=12 * GB)
    assert usage["B"].used == Resources(cpu=6, memory_mb=2 * GB)
    # Both dominant shares are 2/3: A's memory (12/18) and B's CPU (6/9).
    assert sum(isinstance(d, ResourceQueued) for d in decisions) == 15


def test_drf_holds_whichever_tenant_asks_first() -> None:
    """Arrival order does not matter when requests contend in the same round."""
    alloc = allocator(pool("cluster", node("n", 9, 18 * GB)), policy=Policy("fair"))
    asks = [request("B", 3, 1 * GB) for _ in range(10)] + [
        request("A", 1, 4 * GB) for _ in range(10)
    ]
    assert granted(submit(alloc, asks)) == {"A": 3, "B": 2}


def test_releases_converge_to_the_drf_shares() -> None:
    """When requests arrive one by one there is no contention to arbitrate: A gets 4 and B 1
    (so the DRF test above can fail). As tasks end and the queue is served in DRF order, the
    allocation converges to the paper's 3 + 2."""
    alloc = allocator(pool("cluster", node("n", 9, 18 * GB)), policy=Policy("fair"))
    for r in [request("A", 1, 4 * GB) for _ in range(6)] + [
        request("B", 3, 1 * GB) for _ in range(6)
    ]:
        alloc.allocate_resources(r)
    assert dict(alloc.ledger.tenant_count) == {"A": 4, "B": 1}
    a_task = next(i for i, h in alloc.ledger.held.items() if h.event.tenant == "A")
    alloc.release_resources(a_task)
    assert dict(alloc.ledger.tenant_count) == {"A": 3, "B": 2}


def test_demand_policy_weights_tenants_by_their_backlog() -> None:
    """12 CPUs; A queues 12 one-CPU tasks, B 4: fair shares would be 6 + 6, demand weights 3:1
    give A 9 and B 3."""
    fair = allocator(pool("p", node("n", 12, 12 * GB)), policy=Policy("fair"))
    demand = allocator(pool("p", node("n", 12, 12 * GB)), policy=Policy("demand"))
    for alloc in (fair, demand):
        asks = [request("A", 1, GB) for _ in range(12)] + [request("B", 1, GB) for _ in range(4)]
        submit(alloc, asks)
    assert dict(fair.ledger.tenant_count) == {"A": 8, "B": 4}  # B wants only 4: A fills the rest
    assert dict(demand.ledger.tenant_count) == {"A": 9, "B": 3}


def test_priority_serves_higher_priority_first_when_capacity_frees() -> None:
    alloc = allocator(pool("p", node("n", 4, 4 * GB)), policy=Policy("priority"))
    first = alloc.allocate_resources(request("x", 4, GB))
    low = alloc.allocate_resources(request("x", 4, GB, priority="low"))
    high = alloc.allocate_resources(request("y", 4, GB, priority="critical"))
    assert isinstance(low, ResourceQueued)
    assert isinstance(high, ResourceQueued)
    events = alloc.release_resources(first.allocation_id)
    assert [e.allocation_id for e in events if isinstance(e, ResourceAllocated)] == [
        high.allocation_id
    ]


@pytest.mark.parametrize(("preempt", "high_gets_in"), [(False, False), (True, True)])
def test_preemption_lets_higher_priority_overtake_queued_work(
    preempt: bool, high_gets_in: bool
) -> None:
    """8 CPUs, 4 in use; a low-priority request for 8 waits and holds the node. A high-priority
    request for 4 could fit: without preemption it queues behind the held node; with it, it
    overtakes the queued low-priority work."""
    alloc = allocator(pool("p", node("n", 8, 8 * GB)), policy=Policy("priority", preempt=preempt))
    alloc.allocate_resources(request("x", 4, GB))
    waiting = alloc.allocate_resources(request("x", 8, GB, priority="low"))
    assert isinstance(waiting, ResourceQueued)
    high = alloc.allocate_resources(request("y", 4, GB, priority="high"))
    assert isinstance(high, ResourceAllocated) is high_gets_in
    if not high_gets_in:
        assert isinstance(high, ResourceQueued)
        assert high.code == "held"


def test_a_tenant_policy_orders_its_own_requests_by_priority() -> None:
    """The pool is fair across tenants; tenant t asked for priority inside its own queue."""
    alloc = allocator(pool("p", node("n", 2, 2 * GB)), policy=Policy("fair"))
    alloc.set_quotas(
        [
            QuotaSet(
                **meta(TEST, correlation_id="q"), tenant="t", limits=Resources(), policy="priority"
            )
        ]
    )
    asks = [request("t", 2, GB, priority="low"), request("t", 2, GB, priority="high")]
    decisions = submit(alloc, asks)
    [won] = [d for d in decisions if isinstance(d, ResourceAllocated)]
    assert won.allocation_id == asks[1].allocation_id


def _forecast(
    workflow: str, cpu: float, *, tenant: str = "f", minutes: float = 1
) -> ResourceForecast:
    return ResourceForecast(
        **meta(TEST, correlation_id=workflow),
        workflow_id=workflow,
        tenant=tenant,
        items=[
            ForecastItem(
                task_id="next",
                resources=Resources(cpu=cpu),
                expected_at=T0 + timedelta(minutes=minutes),
            )
        ],
    )


def test_predictive_reserves_capacity_for_forecast_work() -> None:
    """8 CPUs with 6 forecast for workflow w1's next task: others may use only 2 of them; w1's
    own task, when it asks, gets the reserved capacity."""
    alloc = allocator(pool("p", node("n", 8, 8 * GB)), policy=Policy("predictive"))
    alloc.apply(_forecast("w1", 6))
    other = alloc.allocate_resources(request("o", 4, GB, workflow_id="w2", task_id="t"))
    assert isinstance(other, ResourceQueued)
    assert other.code == "reserved"
    small = alloc.allocate_resources(request("o", 2, GB, workflow_id="w2", task_id="u"))
    assert isinstance(small, ResourceAllocated)
    mine = alloc.allocate_resources(request("f", 6, GB, workflow_id="w1", task_id="next"))
    assert isinstance(mine, ResourceAllocated)


def test_forecasts_outside_the_horizon_or_under_fair_reserve_nothing() -> None:
    far = allocator(
        pool("p", node("n", 8, 8 * GB)), policy=Policy("predictive"), horizon_seconds=60
    )
    far.apply(_forecast("w1", 6, minutes=30))
    fair = allocator(pool("p", node("n", 8, 8 * GB)), policy=Policy("fair"))
    fair.apply(_forecast("w1", 6))
    for alloc in (far, fair):
        assert isinstance(alloc.allocate_resources(request("o", 8, GB)), ResourceAllocated)


def test_pool_policies_are_independent() -> None:
    """A request pinned to a priority pool is ordered by priority there; the fair pool beside it
    is unaffected."""
    alloc = allocator(
        pool("fair", node("f", 1, GB)),
        pool("prio", node("p", 1, GB), policy="priority"),
        policy=Policy("fair"),
    )
    asks = [
        request("a", 1, 0, pool_id="prio", priority="low"),
        request("b", 1, 0, pool_id="prio", priority="critical"),
        request("a", 1, 0, pool_id="fair"),
    ]
    decisions = {d.allocation_id: d for d in submit(alloc, asks)}
    assert isinstance(decisions[asks[1].allocation_id], ResourceAllocated)
    assert isinstance(decisions[asks[0].allocation_id], ResourceQueued)
    assert isinstance(decisions[asks[2].allocation_id], ResourceAllocated)


def test_a_plan_becomes_a_forecast_of_when_each_task_will_ask() -> None:
    """Expected times follow the plan's critical path of estimated durations; the predictive
    policy then keeps the capacity for the task expected soon."""
    specs = [
        TaskSpec(task_id="a", name="a", resources=Resources(cpu=1), estimated_duration_seconds=60),
        TaskSpec(task_id="b", name="b", depends_on=["a"], resources=Resources(cpu=6)),
        TaskSpec(
            task_id="c",
            name="c",
            depends_on=["a", "b"],
            resources=Resources(cpu=2),
            estimated_duration_seconds=10,
        ),
    ]
    plan = ExecutionPlan(plan_id="p", workflow_type="dag", tasks=specs, tenant="f")
    forecast = forecast_for_plan(plan, "w1", TEST, started_at=T0)
    assert [(i.task_id, i.expected_at - T0) for i in forecast.items] == [
        ("a", timedelta(0)),
        ("b", timedelta(seconds=60)),
        ("c", timedelta(seconds=60)),
    ]
    alloc = allocator(pool("p", node("n", 8, 8 * GB)), policy=Policy("predictive"))
    alloc.apply(forecast)
    other = alloc.allocate_resources(request("o", 2, GB, workflow_id="w2", task_id="x"))
    assert isinstance(other, ResourceQueued)  # 1 + 6 + 2 of the 8 CPUs are expected soon
