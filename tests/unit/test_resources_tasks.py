"""The task path: ready tasks become requests; endings, cancellations and agent deaths release."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    Capability,
    Event,
    ResourceAllocated,
    ResourceDenied,
    ResourceQueued,
    ResourceReleased,
    Resources,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskReady,
    TaskReassigned,
    TaskSkipped,
    TaskSpec,
    TaskTimedOut,
    WorkflowCancelled,
    WorkflowCompleted,
    meta,
)
from mesh.resources import allocation_id_for, release_target, request_for_ready
from tests._resources_support import GB, T0, TEST, Clock, allocator, node, pool, request


def ready(task: str = "t1", attempt: int = 1, cpu: float = 2) -> TaskReady:
    return TaskReady(
        **meta(TEST, correlation_id="req-1", occurred_at=T0),
        workflow_id="wf",
        task_id=task,
        attempt=attempt,
        task=TaskSpec(
            task_id=task,
            name=task,
            resources=Resources(cpu=cpu, memory_mb=GB),
            estimated_duration_seconds=60,
        ),
        priority="high",
        tenant="acme",
        deadline=T0 + timedelta(hours=1),
    )


def test_a_ready_task_asks_for_its_resources_under_a_stable_id() -> None:
    event = ready()
    asked = request_for_ready(event, TEST)
    assert asked.allocation_id == "wf/t1/1"
    assert request_for_ready(event, TEST).allocation_id == asked.allocation_id
    assert (asked.tenant, asked.priority, asked.deadline) == ("acme", "high", event.deadline)
    assert asked.resources == event.task.resources
    assert asked.estimated_duration_seconds == 60
    assert asked.task == event.task
    assert asked.correlation_id == "req-1"
    assert asked.causation_id == event.event_id
    assert request_for_ready(event, TEST, resources=Resources(cpu=8)).resources.cpu == 8


def test_long_ids_become_a_digest_within_the_id_limit() -> None:
    long = allocation_id_for("w" * 150, "t" * 150, 3)
    assert len(long) <= 200
    assert long != allocation_id_for("w" * 150, "t" * 150, 4)


def test_the_allocation_carries_the_task_for_the_agent_manager() -> None:
    alloc = allocator(pool("p", node("n", 4, 4 * GB)))
    granted = alloc.allocate_resources(request_for_ready(ready(), TEST))
    assert isinstance(granted, ResourceAllocated)
    assert (granted.workflow_id, granted.task_id, granted.attempt) == ("wf", "t1", 1)
    assert granted.task is not None
    assert granted.task.task_id == "t1"


def _ending(kind: str, task: str = "t1", attempt: int = 1) -> Event:
    base = meta(TEST, correlation_id="req-1", occurred_at=T0)
    if kind == "completed":
        return TaskCompleted(**base, workflow_id="wf", task_id=task, attempt=attempt, agent_id="a1")
    if kind == "failed":
        return TaskFailed(
            **base,
            workflow_id="wf",
            task_id=task,
            attempt=attempt,
            error_kind="exit_code",
            message="boom",
            retriable=True,
        )
    if kind == "timed_out":
        return TaskTimedOut(
            **base, workflow_id="wf", task_id=task, attempt=attempt, timeout_seconds=5
        )
    if kind == "reassigned":
        return TaskReassigned(
            **base,
            workflow_id="wf",
            task_id=task,
            attempt=attempt,
            from_agent_id="a1",
            reason="heartbeat expired",
        )
    if kind == "cancelled":
        return TaskCancelled(**base, workflow_id="wf", task_id=task, attempt=None)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("completed", "task completed"),
        ("failed", "task failed (exit_code)"),
        ("timed_out", "task timed out"),
        ("reassigned", "agent a1 lost: heartbeat expired"),
        ("cancelled", "task cancelled"),
    ],
)
def test_an_ending_releases_its_attempts_allocation(kind: str, reason: str) -> None:
    alloc = allocator(pool("p", node("n", 4, 4 * GB)))
    alloc.allocate_resources(request_for_ready(ready("t1"), TEST))
    other = alloc.allocate_resources(request_for_ready(ready("t2"), TEST))
    [released] = alloc.observe(_ending(kind))
    assert isinstance(released, ResourceReleased)
    assert released.allocation_id == "wf/t1/1"
    assert released.reason == reason
    assert released.causation_id is not None
    assert list(alloc.ledger.held) == [other.allocation_id]
    assert alloc.observe(_ending(kind)) == []  # a redelivered ending releases nothing more


def test_an_ending_of_another_attempt_releases_nothing() -> None:
    alloc = allocator(pool("p", node("n", 4, 4 * GB)))
    alloc.allocate_resources(request_for_ready(ready("t1", attempt=2), TEST))
    assert alloc.observe(_ending("completed", attempt=1)) == []
    assert len(alloc.ledger.held) == 1


def test_a_finished_workflow_releases_everything_and_withdraws_what_waits() -> None:
    alloc = allocator(pool("p", node("n", 2, 4 * GB)))
    held = alloc.allocate_resources(request_for_ready(ready("t1"), TEST))
    waiting = alloc.allocate_resources(request_for_ready(ready("t2"), TEST))
    assert isinstance(waiting, ResourceQueued)
    cancelled = WorkflowCancelled(**meta(TEST, correlation_id="req-1"), workflow_id="wf")
    out = alloc.observe(cancelled)
    assert {(type(e).__name__, e.allocation_id) for e in out} == {  # type: ignore[attr-defined]
        ("ResourceReleased", held.allocation_id),
        ("ResourceDenied", waiting.allocation_id),
    }
    denied = next(e for e in out if isinstance(e, ResourceDenied))
    assert denied.reason == "withdrawn: workflow cancelled"
    assert not alloc.ledger.held
    assert not alloc.ledger.waiting


def test_endings_map_to_what_they_release() -> None:
    skipped = TaskSkipped(**meta(TEST, correlation_id="c"), workflow_id="wf", task_id="t9")
    done = WorkflowCompleted(**meta(TEST, correlation_id="c"), workflow_id="wf", completed_tasks=1)
    target = release_target(skipped)
    assert target is not None
    assert (target.task_id, target.attempt) == ("t9", None)
    target = release_target(done)
    assert target is not None
    assert (target.task_id, target.reason) == (None, "workflow completed")
    assert release_target(ready()) is None


def _registered(agent: str, host: str, cpu: float, at: object = T0) -> AgentRegistered:
    return AgentRegistered(
        **meta(TEST, correlation_id=agent, occurred_at=at),  # type: ignore[arg-type]
        agent_id=agent,
        kind="python",
        capabilities=[Capability(name="x")],
        host=host,
        resources=Resources(cpu=cpu, memory_mb=4 * GB),
    )


def test_hosts_agents_report_become_nodes_and_agent_death_releases_their_work() -> None:
    clock = Clock()
    alloc = allocator(clock=clock)
    alloc.apply(_registered("a1", "h1", 4))
    alloc.apply(_registered("a2", "h2", 8))
    assert alloc.node_table().keys == (("agents", "h1"), ("agents", "h2"))
    granted = alloc.allocate_resources(request("t", 3, GB))
    assert isinstance(granted, ResourceAllocated)
    assert (granted.pool_id, granted.node_id, granted.agent_id) == ("agents", "h1", "a1")
    gone = AgentTerminated(**meta(TEST, correlation_id="a1"), agent_id="a1")
    [released] = alloc.observe(gone)
    assert isinstance(released, ResourceReleased)
    assert released.reason == "agent a1 lost"
    assert alloc.node_table().keys == (("agents", "h2"),)


def test_an_agent_that_stops_heartbeating_is_dead() -> None:
    clock = Clock()
    alloc = allocator(clock=clock, liveness_intervals=3)
    alloc.apply(_registered("a1", "h1", 4))
    granted = alloc.allocate_resources(request("t", 1, GB))
    assert isinstance(granted, ResourceAllocated)
    for seconds in (5, 10):
        clock.advance(seconds=5)
        beat = AgentHeartbeat(
            **meta(TEST, correlation_id="a1", occurred_at=clock.now),
            agent_id="a1",
            health="healthy",
            running_tasks=1,
            load=0.5,
            interval_seconds=5,
        )
        alloc.apply(beat)
        assert alloc.reconcile() == [], f"alive after {seconds}s"
    clock.advance(seconds=16)
    [released] = alloc.reconcile()
    assert released.allocation_id == granted.allocation_id  # type: ignore[attr-defined]
    assert alloc.node_table().keys == ()


def test_cost_is_reported_per_workflow() -> None:
    clock = Clock()
    alloc = allocator(pool("p", node("n", 4, 4 * GB, cost=4.0)), clock=clock)
    first = alloc.allocate_resources(request("t", 2, GB, workflow_id="w1", task_id="a"))
    alloc.allocate_resources(request("t", 1, GB, workflow_id="w1", task_id="b"))
    alloc.allocate_resources(request("t", 1, GB, workflow_id="w2", task_id="a"))
    clock.advance(hours=1)
    alloc.release(first.allocation_id)  # 2 of 4 cores at 4/h for one hour: 2.0
    clock.advance(hours=1)
    costs = {w.workflow_id: w for w in alloc.get_resource_usage().workflows}
    assert costs["w1"].cost == pytest.approx(2.0 + 2 * 1.0)  # b: 1 core (1/h) for two hours
    assert costs["w1"].rate_per_hour == pytest.approx(1.0)
    assert costs["w2"].cost == pytest.approx(2.0)
    assert costs["w1"].allocations == 2
