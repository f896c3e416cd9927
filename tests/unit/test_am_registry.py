"""The Agent Manager's registry: refused registrations, health at a moment, breaker states,
and which agents hold attempts that must be reassigned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mesh.agentmanager import FINISHED_KEPT, HealthPolicy, Registry, breaker_name
from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    BreakerStateChanged,
    Capability,
    TaskAssigned,
    TaskCompleted,
    TaskReassigned,
    TaskSpec,
    meta,
)
from mesh.events import Producer as P

ME = P(component="test", instance="t")
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def stamped(correlation_id: str, when: float) -> dict[str, Any]:
    """Envelope fields with a chosen ``occurred_at`` (the fold compares event times)."""
    fields: dict[str, Any] = dict(meta(ME, correlation_id=correlation_id))
    fields["occurred_at"] = at(when)
    return fields


def registered(agent_id: str, kind: str = "command", when: float = 0) -> AgentRegistered:
    return AgentRegistered(
        **stamped(agent_id, when),
        agent_id=agent_id,
        kind=kind,  # type: ignore[arg-type]
        capabilities=[Capability(name="x")],
        max_concurrency=2,
    )


def beat(agent_id: str, when: float, health: str = "healthy") -> AgentHeartbeat:
    return AgentHeartbeat(
        **stamped(agent_id, when),
        agent_id=agent_id,
        health=health,  # type: ignore[arg-type]
        running_tasks=0,
        load=0,
        interval_seconds=1.0,
    )


def assigned(agent_id: str, task_id: str, when: float) -> TaskAssigned:
    return TaskAssigned(
        **stamped("req", when),
        workflow_id="wf",
        task_id=task_id,
        attempt=1,
        agent_id=agent_id,
        task=TaskSpec(task_id=task_id, name=task_id),
    )


def test_a_known_id_with_another_kind_or_a_wrong_key_is_refused_and_not_folded() -> None:
    registry = Registry()
    registry.fold_registry((0, 0), "a", registered("a", "command"))
    registry.fold_registry((0, 1), "a", registered("a", "http"))
    registry.fold_registry((0, 2), "b", registered("c"))
    assert set(registry.refused) == {(0, 1), (0, 2)}
    assert "registered as a command agent" in registry.refused[(0, 1)].reason
    assert "describes agent 'c'" in registry.refused[(0, 2)].reason
    [only] = registry.agents(at(0))
    assert (only.agent_id, only.kind) == ("a", "command")
    # After a termination the id is free for any kind again.
    registry.fold_registry((0, 3), "a", None)
    registry.fold_registry((0, 4), "a", registered("a", "http", when=5))
    assert (0, 4) not in registry.refused
    assert [s.kind for s in registry.agents(at(5))] == ["http"]


def test_health_follows_heartbeats_and_silent_agents_with_work_are_presumed_dead() -> None:
    registry = Registry(HealthPolicy(degraded_after=1, unhealthy_after=2, offline_after=5))
    for name in ("a", "b"):
        registry.fold_registry((0, 0), name, registered(name))
        registry.on_heartbeat(beat(name, 1))
    registry.on_result(assigned("a", "t1", 1.5))
    registry.on_result(assigned("b", "t2", 1.5))
    registry.on_heartbeat(beat("b", 4))
    health = {s.agent_id: s.health for s in registry.agents(at(4.5))}
    assert health == {"a": "unhealthy", "b": "healthy"}
    assert registry.presumed_dead(at(4.5)) == ["a"]
    assert {s.agent_id: s.health for s in registry.agents(at(20))} == {
        "a": "offline",
        "b": "offline",
    }
    # Once reassigned, the attempt is no longer the dead agent's.
    [lost] = registry.open_attempts("a")
    registry.on_result(
        TaskReassigned(
            **meta(ME, causation=lost),
            workflow_id="wf",
            task_id="t1",
            attempt=1,
            from_agent_id="a",
        )
    )
    assert registry.open_attempts("a") == []
    assert registry.presumed_dead(at(4.5)) == []


def test_silence_while_its_heartbeats_cannot_be_read_is_not_the_agents() -> None:
    """A broker that leads the heartbeats' partition dies: the agent's beats stop reaching the
    Agent Manager, which must not take it for dead (its attempts would run twice). Silence
    counts only up to the last read of the partition, and from when it became readable again."""
    registry = Registry(HealthPolicy(degraded_after=1, unhealthy_after=2, offline_after=5))
    registry.fold_registry((0, 0), "a", registered("a"))
    registry.on_heartbeat(beat("a", 1))
    registry.on_result(assigned("a", "t1", 1.5))
    readable: dict[str, tuple[datetime | None, datetime | None]] = {"a": (at(0), at(1.2))}
    registry.heard = lambda agent_id: readable[agent_id]
    assert registry.presumed_dead(at(9)) == []  # not read since 1.2 s: nothing to judge by
    readable["a"] = (at(9), at(9.5))  # readable again from 9 s, with no beat of a's yet
    assert registry.presumed_dead(at(9.5)) == []
    [state] = registry.agents(at(9.5))
    assert state.health == "healthy"
    readable["a"] = (at(9), at(12.5))  # read for 3.5 s: still silent, now it is a's silence
    assert registry.presumed_dead(at(12.5)) == ["a"]


def test_an_agent_that_says_it_is_unhealthy_keeps_its_work() -> None:
    registry = Registry()
    registry.fold_registry((0, 0), "a", registered("a"))
    registry.on_heartbeat(beat("a", 1, health="unhealthy"))
    registry.on_result(assigned("a", "t1", 1.5))
    [state] = registry.agents(at(1.2))
    assert state.health == "unhealthy"
    assert state.unavailable() == "agent is unhealthy"
    assert registry.presumed_dead(at(1.2)) == []


def test_breaker_states_are_folded_latest_first_and_tombstones_forget() -> None:
    registry = Registry()
    registry.fold_registry((0, 0), "a", registered("a"))
    name = breaker_name("a")

    def change(new: str, when: float) -> BreakerStateChanged:
        return BreakerStateChanged(
            **stamped(name, when),
            name=name,
            old_state="closed",
            new_state=new,  # type: ignore[arg-type]
            failure_count=3,
        )

    registry.on_breaker(name, change("open", 2))
    registry.on_breaker(name, change("closed", 1))  # older: ignored
    assert registry.breaker("a") == "open"
    assert registry.agents(at(2))[0].unavailable() == "circuit breaker open"
    registry.on_breaker(name, None)
    assert registry.breaker("a") == "closed"


def test_terminated_agents_leave_the_registry() -> None:
    registry = Registry()
    registry.fold_registry((0, 0), "a", registered("a"))
    registry.fold_registry(
        (0, 1),
        "a",
        AgentTerminated(**meta(ME, correlation_id="a"), agent_id="a", reason="stopped"),
    )
    assert registry.agents(at(0)) == []
    assert registry.refused == {}


def completed(task: TaskAssigned) -> TaskCompleted:
    return TaskCompleted(
        **stamped("req", 2),
        workflow_id=task.workflow_id,
        task_id=task.task_id,
        attempt=task.attempt,
        agent_id=task.agent_id,
    )


def test_finished_attempts_are_dropped_beyond_a_bound_and_not_opened_again() -> None:
    """Finished attempts leave the registry's memory, oldest first, past ``FINISHED_KEPT``;
    a recent one stays assigned and a late copy of its assignment does not open it again."""
    registry = Registry()
    registry.on_registry("a1", registered("a1"))
    total = FINISHED_KEPT + 50
    for i in range(total):
        task = assigned("a1", f"t{i}", 1)
        registry.on_result(task)
        registry.on_result(completed(task))
    assert registry.outstanding("a1") == 0
    assert registry.attempts_held() == FINISHED_KEPT
    last = assigned("a1", f"t{total - 1}", 1)
    assert registry.is_assigned(("wf", last.task_id, 1))
    registry.on_result(last)  # a late copy of the assignment
    assert registry.outstanding("a1") == 0
    assert not registry.is_assigned(("wf", "t0", 1))  # dropped: the oldest
