"""The Resource Allocator on a broker: its ledger is the ``resources`` topic, so a restart rebuilds
the same usage and allocates nothing twice."""

from __future__ import annotations

import json

from mesh.events import Resources, TaskCompleted, meta
from mesh.settings import Settings
from tests._resources_support import (
    GB,
    TEST,
    create_topics,
    eventually,
    granted,
    pools_config,
    publisher,
    replayed,
    request,
    running,
)
from tests.contract.brokers import Contract
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


class ResourceAllocatorContract(Contract):
    """The Resource Allocator decides, releases and rebuilds from Kafka alone."""

    async def test_a_restart_mid_run_rebuilds_the_same_usage_and_allocates_nothing_twice(
        self,
        settings: Settings,
    ) -> None:
        """Stop the allocator mid-run and start a new one: the ledger it rebuilds from the topic
        has the same allocations, queue and usage per pool, requests every client retries get no
        second allocation, the queue is still served as releases come, and ``mesh resources
        usage`` reads the same ledger."""
        await create_topics(settings)
        first_wave = [
            request("t", 2, GB, workflow_id="wf", task_id=f"t{i}", attempt=1) for i in range(8)
        ]
        async with running(settings, pools=POOLS) as first, publisher(settings) as pub:
            await pub.send("resources", *first_wave)
            ledger = first.allocator.ledger
            await eventually(lambda: len(ledger.held) + len(ledger.waiting) == 8, what="8 decided")
            await pub.send("tasks.results", done("t0"))
            await eventually(lambda: not ledger.allocations_of("wf", "t0"), what="t0 released")
            await eventually(lambda: len(ledger.held) == 6, what="the freed CPUs to be re-used")
            before = first.allocator.get_resource_usage()
            held_before, waiting_before = sorted(ledger.held), sorted(ledger.waiting)
        assert before.allocations == 6  # 2 + 2 on the small nodes, 8 on the big one: 6 x 2 CPUs
        rebuilt = await replayed(settings)
        assert sorted(rebuilt.ledger.held) == held_before
        async with running(settings, pools=POOLS) as second, publisher(settings) as pub:
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
                lambda: (
                    not ledger.waiting and not any(ledger.allocations_of("wf", t) for t in ended)
                ),
                what="t1-t3 released and the queue drained",
            )
        final = sorted(ledger.held)  # the service has stopped: this is all it ever published
        assert len(final) == 4
        assert await granted(settings) == sorted(r.allocation_id for r in first_wave)
        env = {
            "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "MESH_TOPIC_PREFIX": settings.topic_prefix,
            "MESH_RESOURCE_POOLS": "/dev/null",
        }
        usage = run_mesh("resources", "usage", "--json", env=env)
        assert usage.code == 0, usage.stderr
        data = json.loads(usage.stdout)
        assert data["allocations"] == len(final)
        assert data["used"] == Resources(cpu=2 * len(final), memory_mb=GB * len(final)).model_dump()
