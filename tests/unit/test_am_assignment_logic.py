"""The Agent Manager's assignment logic without Kafka: capability matching, the choice of agent,
the one agent model folded from events; the agent's safe commit offsets; and the partition an
agent id lands in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from mesh.agentmanager import AgentState, Registry, Requirements, choose, match_capabilities
from mesh.agents._offsets import OffsetTracker
from mesh.events import (
    AgentHeartbeat,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    Capability,
    CapabilityRequirement,
    Producer,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskSpec,
    covers,
    meta,
)
from mesh.kafka.partitions import partition_for

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ME = Producer(component="test", instance="t")


def cap(name: str, level: int | None = None, *tags: str) -> Capability:
    return Capability(name=name, level=level, tags=tags)


def need(name: str, min_level: int | None = None, *tags: str) -> CapabilityRequirement:
    return CapabilityRequirement(name=name, min_level=min_level, tags=tags)


def view(agent_id: str, *caps: Capability, **fields: Any) -> AgentState:
    values: dict[str, Any] = {
        "agent_id": agent_id,
        "kind": "command",
        "capabilities": caps,
        "max_concurrency": 1,
        "outstanding": 0,
        "health": "healthy",
        "missed_heartbeats": 0.0,
        "last_seen": NOW,
    }
    values.update(fields)
    return AgentState(**values)


def choose_agent(
    requirements: list[CapabilityRequirement], agents: list[AgentState]
) -> AgentState | None:
    """The Agent Manager's choice with the default strategy."""
    chosen = choose(
        match_capabilities(Requirements(required=tuple(requirements)), agents), "least_loaded"
    )
    return chosen.agent if chosen is not None else None


# -- matching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requirements", "capabilities", "expected"),
    [
        ([], [], True),
        ([need("python")], [cap("python")], True),
        ([need("python")], [cap("rust")], False),
        ([need("python"), need("review")], [cap("python"), cap("review")], True),
        ([need("python"), need("review")], [cap("python")], False),
        ([need("python", 5)], [cap("python", 5)], True),
        ([need("python", 5)], [cap("python", 4)], False),
        ([need("python", 5)], [cap("python")], False),
        ([need("python", None, "gpu")], [cap("python", None, "gpu", "eu")], True),
        ([need("python", None, "gpu", "us")], [cap("python", None, "gpu", "eu")], False),
    ],
)
def test_covers(
    requirements: list[CapabilityRequirement], capabilities: list[Capability], expected: bool
) -> None:
    assert covers(requirements, capabilities) is expected


def test_choice_is_the_capable_agent_with_least_load() -> None:
    agents = [
        view("a", cap("python"), outstanding=2, max_concurrency=4),  # load 0.5
        view("b", cap("python"), outstanding=1, max_concurrency=1),  # load 1.0
        view("c", cap("rust")),
        view("d", cap("python"), outstanding=1, max_concurrency=4),  # load 0.25
    ]
    chosen = choose_agent([need("python")], agents)
    assert chosen is not None
    assert chosen.agent_id == "d"


def test_ties_go_to_fewer_outstanding_then_agent_id() -> None:
    agents = [
        view("z", cap("x"), outstanding=3, max_concurrency=4),  # load after placing: 1.0
        view("y", cap("x"), outstanding=1, max_concurrency=2),  # load after placing: 1.0
        view("b", cap("x")),
        view("a", cap("x")),
    ]
    first = choose_agent([need("x")], agents[:2])
    assert first is not None
    assert first.agent_id == "y"
    second = choose_agent([need("x")], agents)
    assert second is not None
    assert second.agent_id == "a"


def test_dead_draining_or_incapable_agents_are_never_chosen() -> None:
    agents = [
        view("dead", cap("x"), health="unhealthy", missed_heartbeats=3.2),
        view("gone", cap("x"), health="offline", missed_heartbeats=9.0),
        view("draining", cap("x"), status="draining"),
        view("other", cap("y")),
    ]
    assert choose_agent([need("x")], agents) is None
    late = view("late", cap("x"), health="degraded", missed_heartbeats=1.5)
    assert choose_agent([need("x")], [*agents, late]) == late


def test_a_full_agent_is_still_chosen_when_it_is_the_only_capable_one() -> None:
    busy = view("busy", cap("x"), outstanding=5, max_concurrency=1)
    assert choose_agent([need("x")], [busy]) == busy


# -- the agent view ------------------------------------------------------------------------


def registered(agent_id: str, *caps: str, at: datetime = NOW, **fields: Any) -> AgentRegistered:
    return AgentRegistered(
        **meta(ME, correlation_id=agent_id, occurred_at=at),
        agent_id=agent_id,
        kind="command",
        capabilities=[cap(c) for c in caps],
        **fields,
    )


def assignment(agent_id: str, task_id: str, at: datetime = NOW) -> TaskAssigned:
    return TaskAssigned(
        **meta(ME, correlation_id="r", occurred_at=at),
        workflow_id="wf",
        task_id=task_id,
        attempt=1,
        agent_id=agent_id,
        task=TaskSpec(task_id=task_id, name=task_id),
    )


def completed(task_id: str) -> TaskCompleted:
    return TaskCompleted(
        **meta(ME, correlation_id="r"), workflow_id="wf", task_id=task_id, attempt=1, agent_id="a"
    )


def failed(task_id: str) -> TaskFailed:
    return TaskFailed(
        **meta(ME, correlation_id="r"),
        workflow_id="wf",
        task_id=task_id,
        attempt=1,
        error_kind="exit_code",
        message="m",
        retriable=True,
    )


def by_id(directory: Registry, now: datetime = NOW) -> dict[str, AgentState]:
    return {a.agent_id: a for a in directory.agents(now)}


def test_registry_last_record_wins_and_termination_or_tombstone_removes() -> None:
    directory = Registry()
    directory.on_registry("a", registered("a", "x"))
    directory.on_registry("b", registered("b", "x"))
    directory.on_registry(
        "a",
        AgentUpdated(
            **meta(ME, correlation_id="a"),
            agent_id="a",
            kind="command",
            capabilities=[cap("y")],
            status="draining",
        ),
    )
    views = by_id(directory)
    assert [c.name for c in views["a"].capabilities] == ["y"]
    assert views["a"].unavailable() == "agent is draining"
    directory.on_registry(
        "a", AgentTerminated(**meta(ME, correlation_id="a"), agent_id="a", reason="stopped")
    )
    directory.on_registry("b", None)
    assert directory.agents(NOW) == []


def test_heartbeats_set_liveness_interval_and_health_in_any_order() -> None:
    directory = Registry()

    def beat(at: datetime, health: str = "healthy") -> AgentHeartbeat:
        return AgentHeartbeat(
            **meta(ME, correlation_id="a", occurred_at=at),
            agent_id="a",
            health=health,  # type: ignore[arg-type]
            running_tasks=0,
            load=0,
            interval_seconds=2.0,
        )

    directory.on_heartbeat(beat(NOW + timedelta(seconds=30)))  # heartbeats may come first
    directory.on_registry("a", registered("a", "x"))
    directory.on_heartbeat(beat(NOW + timedelta(seconds=10)))  # older: ignored
    later = NOW + timedelta(seconds=34)  # two 2-second intervals after the last beat
    seen = by_id(directory, later)["a"]
    assert seen.last_seen == NOW + timedelta(seconds=30)
    assert seen.missed_heartbeats == 1.0  # the second beat is one interval overdue
    directory.on_heartbeat(beat(NOW + timedelta(seconds=31), "unhealthy"))
    assert by_id(directory, later)["a"].unavailable() == "agent is unhealthy"


def test_outstanding_counts_assignments_until_their_results() -> None:
    directory = Registry()
    directory.on_registry("a", registered("a", "x", max_concurrency=2))
    for task_id in ("t1", "t2", "t3"):
        directory.on_result(assignment("a", task_id))
    directory.on_result(assignment("a", "t1"))  # the same assignment seen twice counts once
    assert by_id(directory)["a"].outstanding == 3
    directory.on_result(completed("t1"))
    directory.on_result(failed("t2"))
    assert by_id(directory)["a"].outstanding == 1
    assert directory.is_assigned(("wf", "t1", 1))
    assert not directory.is_assigned(("wf", "t9", 1))


def test_a_result_read_before_its_assignment_leaves_nothing_outstanding() -> None:
    directory = Registry()
    directory.on_registry("a", registered("a", "x"))
    directory.on_result(completed("t1"))
    directory.on_result(assignment("a", "t1"))
    assert by_id(directory)["a"].outstanding == 0
    assert directory.is_assigned(("wf", "t1", 1))


def test_re_registration_forgets_what_the_previous_process_held() -> None:
    directory = Registry()
    directory.on_result(assignment("a", "old", at=NOW - timedelta(minutes=5)))
    directory.on_registry("a", registered("a", "x"))
    directory.on_result(assignment("a", "older", at=NOW - timedelta(minutes=1)))
    directory.on_result(assignment("a", "new", at=NOW + timedelta(seconds=1)))
    assert by_id(directory)["a"].outstanding == 1


def test_version_moves_on_every_change() -> None:
    directory = Registry()
    before = directory.version
    directory.on_registry("a", registered("a", "x"))
    assert directory.version > before


# -- offsets and partitions ----------------------------------------------------------------


def test_commit_offset_stays_below_the_oldest_unfinished_record() -> None:
    tracker = OffsetTracker(start=10)
    assert tracker.committable() is None
    for offset in (10, 11, 12):
        tracker.taken(offset)
    tracker.finished(12)
    tracker.finished(11)
    assert tracker.committable() is None  # 10 still runs
    tracker.finished(10)
    assert tracker.committable() == 13
    tracker.committed(13)
    assert tracker.committable() is None
    tracker.taken(14)  # 13 was never taken (e.g. a transaction marker)
    assert tracker.committable() == 14
    tracker.committed(14)
    tracker.finished(14)
    assert tracker.committable() == 15


@pytest.mark.parametrize("agent_id", ["agent-1", "demo-shell-2", "x", "ü-agent", "a" * 200])
@pytest.mark.parametrize("count", [1, 3, 6, 12])
def test_partition_for_matches_the_producers_partitioner(agent_id: str, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(agent_id.encode(), partitions, partitions)
    assert partition_for(agent_id, set(partitions)) == expected


def test_partition_for_is_spread_and_stable() -> None:
    seen = {partition_for(f"agent-{i}", range(6)) for i in range(100)}
    assert seen == set(range(6))
    assert partition_for("agent-1", range(6)) == partition_for("agent-1", [5, 4, 3, 2, 1, 0])
