"""The Resource Allocator on real Apache Kafka: restarting it mid-run rebuilds the same usage
from the ``resources`` topic and allocates nothing twice."""

from __future__ import annotations

import asyncio
import json

from mesh.events import Mapper, ResourceAllocated, Resources, TaskCompleted, meta
from mesh.resources.runtime import ResourceService
from mesh.settings import Settings
from tests._resources_support import (
    GB,
    TEST,
    create_topics,
    eventually,
    pools_config,
    publisher,
    records_of,
    replayed,
    request,
    running,
)
from tests.helpers import run_mesh

POOLS = pools_config(
    {"id": "small", "nodes": [{"id": "s", "count": 2, "cpu": 2, "memory_mb": 4096}]},
    {"id": "big", "nodes": [{"id": "b", "cpu": 8, "memory_mb": 16384, "cost_per_hour": 1.0}]},
    placement="cheapest",
)


def done(task: str) -> TaskCompleted:
    return TaskCompleted(
        **meta(TEST, correlation_id="c"), workflow_id="wf", task_id=task, attempt=1, agent_id="a"
    )


async def test_a_restart_mid_run_rebuilds_the_same_usage_and_allocates_nothing_twice(
    kafka_settings: Settings,
) -> None:
    await create_topics(kafka_settings)
    first_wave = [
        request("t", 2, GB, workflow_id="wf", task_id=f"t{i}", attempt=1) for i in range(8)
    ]
    async with running(kafka_settings, pools=POOLS) as first, publisher(kafka_settings) as pub:
        await pub.send("resources", *first_wave)
        ledger = first.allocator.ledger
        await eventually(lambda: len(ledger.held) + len(ledger.waiting) == 8, what="8 decided")
        await pub.send("tasks.results", done("t0"))
        await eventually(lambda: not ledger.allocations_of("wf", "t0"), what="t0 released")
        await eventually(lambda: len(ledger.held) == 6, what="the freed CPUs to be re-used")
        before = first.allocator.get_resource_usage()
        held_before, waiting_before = sorted(ledger.held), sorted(ledger.waiting)
    assert before.allocations == 6  # 2 + 2 on the small nodes, 8 on the big one: 6 x 2 CPUs
    rebuilt = await replayed(kafka_settings)
    assert sorted(rebuilt.ledger.held) == held_before
    async with running(kafka_settings, pools=POOLS) as second, publisher(kafka_settings) as pub:
        ledger = second.allocator.ledger
        after = second.allocator.get_resource_usage()
        assert sorted(ledger.held) == held_before
        assert sorted(ledger.waiting) == waiting_before
        assert (after.used, after.allocations, after.waiting) == (
            before.used,
            before.allocations,
            before.waiting,
        )
        assert [p.used for p in after.pools] == [p.used for p in before.pools]
        await pub.send("resources", *first_wave)  # every client retries
        ended = ("t1", "t2", "t3")
        for task in ended:
            await pub.send("tasks.results", done(task))
        # The queue drains as soon as the first release lets the last request in; the other
        # releases may still be on their way, so wait for each of them too.
        await eventually(
            lambda: not ledger.waiting and not any(ledger.allocations_of("wf", t) for t in ended),
            what="t1-t3 released and the queue drained",
        )
    final = sorted(ledger.held)  # the service has stopped: this is all it ever published
    assert len(final) == 4
    grants: dict[object, str] = {}
    for record in await records_of(kafka_settings, "resources"):
        event = Mapper().decode(record.value, record.headers) if record.value is not None else None
        if isinstance(event, ResourceAllocated):
            grants[event.event_id] = event.allocation_id
    assert sorted(grants.values()) == sorted(r.allocation_id for r in first_wave)
    env = {
        "MESH_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "MESH_RESOURCE_POOLS": "/dev/null",
    }
    usage = run_mesh("resources", "usage", "--json", env=env)
    assert usage.code == 0, usage.stderr
    data = json.loads(usage.stdout)
    assert data["allocations"] == len(final)
    assert data["used"] == Resources(cpu=2 * len(final), memory_mb=GB * len(final)).model_dump()


async def test_one_replica_decides_and_the_other_takes_over(kafka_settings: Settings) -> None:
    """Two replicas in one group: only the one holding the lease (``tasks.results`` partition 0)
    decides, so nothing is decided twice; when it stops, the other, whose ledger followed the
    topic all along, takes over."""
    await create_topics(kafka_settings)
    group = f"{kafka_settings.topic_prefix}resources"
    replicas = [
        ResourceService(kafka_settings, pools=POOLS, group_id=group, instance=f"r{i}")
        for i in range(2)
    ]
    stops = [asyncio.Event() for _ in replicas]
    tasks = [asyncio.create_task(r.run(s)) for r, s in zip(replicas, stops, strict=True)]
    asks = [request("t", 1, GB) for _ in range(4)]
    try:
        await eventually(
            lambda: all(r.assigned for r in replicas) and sum(r.leader for r in replicas) == 1,
            what="both replicas in the group and exactly one leader",
        )
        leader = next(i for i, r in enumerate(replicas) if r.leader)
        other = replicas[1 - leader]
        async with publisher(kafka_settings) as pub:
            await pub.send("resources", *asks[:2])
            await eventually(lambda: len(other.allocator.ledger.held) == 2, what="2 held")
            assert sorted(replicas[leader].allocator.ledger.held) == sorted(
                other.allocator.ledger.held
            )
            stops[leader].set()
            await tasks[leader]
            await eventually(lambda: other.leader, what="the other replica to take the lease")
            await pub.send("resources", *asks[2:])
            await eventually(lambda: len(other.allocator.ledger.held) == 4, what="4 held")
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    grants: dict[object, str] = {}
    for record in await records_of(kafka_settings, "resources"):
        event = Mapper().decode(record.value, record.headers) if record.value is not None else None
        if isinstance(event, ResourceAllocated):
            grants[event.event_id] = event.allocation_id
    assert sorted(grants.values()) == sorted(r.allocation_id for r in asks), "granted once each"
