"""The Resource Allocator's contract (tests/contract/resources.py) on real Apache Kafka, and two
replicas in one group, where only the lease holder decides (the embedded broker lets a group's
next member in only after a long wait, so this case runs here)."""

from __future__ import annotations

import asyncio

from mesh.resources.runtime import ResourceService
from mesh.settings import Settings
from tests._resources_support import (
    GB,
    create_topics,
    eventually,
    granted,
    publisher,
    request,
)
from tests.contract.brokers import OnKafka
from tests.contract.resources import POOLS, ResourceAllocatorContract


class TestResourcesOnKafka(OnKafka, ResourceAllocatorContract):
    """The Resource Allocator on Apache Kafka."""

    async def test_one_replica_decides_and_the_other_takes_over(self, settings: Settings) -> None:
        """Two replicas in one group: only the one holding the lease (``tasks.results`` partition 0)
        decides, so nothing is decided twice; when it stops, the other, whose ledger followed the
        topic all along, takes over."""
        await create_topics(settings)
        group = f"{settings.topic_prefix}resources"
        replicas = [
            ResourceService(settings, pools=POOLS, group_id=group, instance=f"r{i}")
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
            async with publisher(settings) as pub:
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
        assert await granted(settings) == sorted(r.allocation_id for r in asks), "granted once each"
