"""The Agent Manager's rounds without Kafka: what a round of one ``tasks.ready`` partition
writes, keeps waiting and commits, fed records by hand (the view is folded by hand too)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import TopicPartition

from mesh.agentmanager import Registry
from mesh.agentmanager.runtime._assign import Assigner, Owned
from mesh.agentmanager.runtime._view import View
from mesh.events import (
    AgentRegistered,
    Capability,
    Mapper,
    Producer,
    ResourceAllocated,
    Resources,
    meta,
)
from mesh.resources import allocation_id_for
from mesh.settings import Settings
from tests._agents_support import spec, task_ready

ME = Producer(component="test", instance="t")
MAPPER = Mapper()
SETTINGS = Settings(topic_prefix="t.")
TP = TopicPartition("t.tasks.ready", 0)


@dataclass
class Record:
    """A consumed record as aiokafka hands it over (the fields the rounds read)."""

    offset: int
    value: bytes | None
    key: bytes | None = b"wf-1"
    topic: str = "t.tasks.ready"
    partition: int = 0
    timestamp: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def ready_record(offset: int, task_id: str) -> Record:
    encoded = MAPPER.encode(task_ready(spec(task_id, "shell")))
    return Record(offset, encoded.value, headers=encoded.headers)


def assigner(*, gate: bool) -> Assigner:
    view = View(SETTINGS, MAPPER, Registry(), gate=gate)
    view.registry.on_registry(
        "shell-1",
        AgentRegistered(
            **meta(ME, correlation_id="shell-1"),
            agent_id="shell-1",
            kind="command",
            capabilities=[Capability(name="shell")],
        ),
    )
    return Assigner(
        SETTINGS,
        view,
        mapper=MAPPER,
        me=ME,
        strategy="least_loaded",
        rng=random.Random(1),  # noqa: S311 - a seeded choice, not cryptography
    )


def channels(work: object) -> list[str]:
    return [r.channel for r in work.records]  # type: ignore[attr-defined]


def test_an_attempt_waiting_for_its_resources_is_kept_though_the_round_writes_nothing() -> None:
    """A TaskReady read while its allocation is not granted yet writes nothing and leaves the
    offset at its own: the round must still be applied, or the attempt is lost."""
    am = assigner(gate=True)
    owned = Owned(TP, committed=3, next_offset=3)
    am.owned[TP.partition] = owned  # as the Agent Manager keeps the partitions it owns
    now = datetime.now(UTC)
    work = am.decide(owned, [ready_record(3, "D")], 1, now)
    assert work is not None
    assert work.records == []
    assert work.watermark == 3
    work.applied()
    assert [p.ready.task_id for p in owned.pending.values()] == ["D"]

    granted = ResourceAllocated(
        **meta(ME, correlation_id="r"),
        allocation_id=allocation_id_for("wf-1", "D", 1),
        pool_id="local",
        resources=Resources(),
        workflow_id="wf-1",
        task_id="D",
        attempt=1,
    )
    assert am.view.gate is not None
    am.view.gate.fold(granted)
    placed = am.decide(owned, [], 1, now)
    assert placed is not None
    assert channels(placed) == ["tasks.assigned", "tasks.results"]
    assert placed.watermark == 4  # past D: nothing waits any more
    placed.applied()
    assert not owned.pending
    assert owned.committed == 4


def test_a_round_with_nothing_read_and_nothing_to_say_is_none() -> None:
    am = assigner(gate=False)
    owned = Owned(TP, committed=7, next_offset=7)
    am.owned[TP.partition] = owned  # as the Agent Manager keeps the partitions it owns
    owned.seen = am.view.registry.version
    assert am.decide(owned, [], 1, datetime.now(UTC)) is None


def test_garbage_is_dead_lettered_and_the_offset_moves_past_it() -> None:
    am = assigner(gate=False)
    owned = Owned(TP, committed=None, next_offset=None)
    am.owned[TP.partition] = owned  # as the Agent Manager keeps the partitions it owns
    work = am.decide(owned, [Record(0, b"\xff"), ready_record(1, "A")], 1, datetime.now(UTC))
    assert work is not None
    assert channels(work) == ["dlq", "tasks.assigned", "tasks.results"]
    assert work.watermark == 2


def test_a_discarded_round_leaves_the_partition_as_it_was() -> None:
    am = assigner(gate=True)
    owned = Owned(TP, committed=0, next_offset=0)
    am.owned[TP.partition] = owned  # as the Agent Manager keeps the partitions it owns
    work = am.decide(owned, [ready_record(0, "A")], 1, datetime.now(UTC))
    assert work is not None
    work.discarded()
    assert not owned.pending
    assert (owned.committed, owned.next_offset) == (0, 0)


def granted(task_id: str) -> ResourceAllocated:
    return ResourceAllocated(
        **meta(ME, correlation_id="r"),
        allocation_id=allocation_id_for("wf-1", task_id, 1),
        pool_id="local",
        resources=Resources(),
        workflow_id="wf-1",
        task_id=task_id,
        attempt=1,
    )


def test_a_round_looks_only_at_the_attempts_whose_allocation_moved() -> None:
    """With hundreds waiting for the allocator, an answer about one of them costs a look at
    that one, not at every waiting attempt (a pass per answer over all of them starved the
    Agent Manager under a sustained rate); every attempt is looked at again once a second."""
    am = assigner(gate=True)
    owned = Owned(TP, committed=0, next_offset=0)
    am.owned[TP.partition] = owned
    now = datetime.now(UTC)
    first = am.decide(owned, [ready_record(i, f"T{i}") for i in range(300)], 1, now)
    assert first is not None
    assert len(first.gated) == 300
    first.applied()
    assert owned.awaiting  # the loop looks again within milliseconds
    assert am.decide(owned, [], 1, now) is None  # nothing moved: nothing looked at

    assert am.view.gate is not None
    am.view.gate.fold(granted("T7"))
    placed = am.decide(owned, [], 1, now)
    assert placed is not None
    assert [a.task_id for _, a in placed.placed] == ["T7"]
    assert placed.gated == []  # the 299 others were not looked at
    assert placed.watermark == 0  # T0 still waits
    placed.applied()
    assert len(owned.pending) == 299

    am.view.gate.fold(granted("T0"))
    am.view.gate.drain()  # an answer the incremental rounds miss (none should; the safety net)
    assert am.decide(owned, [], 1, now) is None
    owned.last_round -= 2  # a second later: a full round looks at every attempt again
    full = am.decide(owned, [], 1, now)
    assert full is not None
    assert [a.task_id for _, a in full.placed] == ["T0"]
    assert len(full.gated) == 298
    assert full.watermark == 1
