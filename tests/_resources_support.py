"""Shared by the Resource Allocator tests: builders for pools and requests, and, for the broker
tiers, topics, a running service, a publisher and a ledger reader that wait with deadlines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

from mesh.events import (
    Event,
    Mapper,
    PoolDeclared,
    PoolNode,
    Priority,
    Producer,
    ResourceAllocated,
    ResourceRequested,
    Resources,
    UnitCosts,
    meta,
)
from mesh.kafka.clients import stop_clients
from mesh.resources import (
    Allocator,
    AllocatorConfig,
    Decision,
    Policy,
    PoolsConfig,
    parse_pools,
)
from mesh.resources.runtime import ResourceService, read_allocator
from mesh.resources.runtime._reader import TopicReader
from mesh.settings import Settings
from mesh.topics import apply_topics, load_topics

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ROOT / "topics"
WAIT = 60.0
"""Seconds any single condition may take before the test fails."""

TEST = Producer(component="test", instance="pytest")
T0 = datetime(2030, 1, 1, tzinfo=UTC)
GB = 1024

T = TypeVar("T")


def node(
    node_id: str,
    cpu: float = 0,
    memory_mb: int = 0,
    *,
    gpu: int = 0,
    cost: float = 0.0,
    unit_costs: UnitCosts | None = None,
    speed: float = 1.0,
    labels: dict[str, str] | None = None,
) -> PoolNode:
    """A node of a pool."""
    return PoolNode(
        node_id=node_id,
        capacity=Resources(cpu=cpu, memory_mb=memory_mb, gpu=gpu),
        cost_per_hour=cost,
        unit_costs=unit_costs or UnitCosts(),
        speed=speed,
        labels=labels or {},
    )


def pool(pool_id: str, *nodes: PoolNode, **fields: Any) -> PoolDeclared:
    """A pool of ``nodes`` (capacity is their sum)."""
    total = Resources(
        cpu=sum(n.capacity.cpu for n in nodes),
        memory_mb=sum(n.capacity.memory_mb for n in nodes),
        gpu=sum(n.capacity.gpu for n in nodes),
    )
    return PoolDeclared(
        **meta(TEST, correlation_id=f"pool-{pool_id}", occurred_at=T0),
        pool_id=pool_id,
        capacity=total,
        nodes=nodes,
        **fields,
    )


_counter = iter(range(1, 10**9))


def request(
    tenant: str = "default",
    cpu: float = 0,
    memory_mb: int = 0,
    *,
    gpu: int = 0,
    priority: Priority = "normal",
    allocation_id: str | None = None,
    at: datetime | None = None,
    **fields: Any,
) -> ResourceRequested:
    """A request; ``at`` orders arrival (default: one microsecond after the previous one)."""
    n = next(_counter)
    return ResourceRequested(
        **meta(TEST, correlation_id=f"c{n}", occurred_at=at or T0 + timedelta(microseconds=n)),
        allocation_id=allocation_id or f"a{n}",
        tenant=tenant,
        resources=Resources(cpu=cpu, memory_mb=memory_mb, gpu=gpu),
        priority=priority,
        **fields,
    )


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def allocator(
    *pools: PoolDeclared,
    policy: Policy | None = None,
    clock: Clock | None = None,
    **config: Any,
) -> Allocator:
    """An allocator over ``pools`` on a hand-moved clock (standing at ``T0`` by default)."""
    return Allocator(
        pools,
        config=AllocatorConfig(default=policy or Policy(), **config),
        producer=TEST,
        clock=clock or Clock(),
    )


def submit(alloc: Allocator, requests: Iterable[ResourceRequested]) -> list[Decision]:
    """Requests arriving together, then one round (how the component handles a batch)."""
    for r in requests:
        alloc.apply(r)
    return list(alloc.decide())


# -- broker tiers ---------------------------------------------------------------------------


async def eventually(
    check: Callable[[], T | None], *, what: str, within: float = WAIT, every: float = 0.05
) -> T:
    """Poll a condition until it gives a true value, or fail after ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                value = check()
                if value:
                    return value
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def create_topics(settings: Settings) -> None:
    """Every declared topic under the test's own prefix."""
    await apply_topics(settings, load_topics(TOPICS, prefix=settings.topic_prefix).topics)


class Publisher:
    """Publishes events (encoded by the mapper) or raw records, waiting for acknowledgements."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mapper = Mapper()
        self._producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, *events: Event) -> None:
        for event in events:
            key, value, headers = self.mapper.encode(event)
            await self._producer.send_and_wait(
                self.settings.topic(topic), value, key=key, headers=headers
            )

    async def raw(self, topic: str, value: bytes, key: bytes = b"junk") -> None:
        await self._producer.send_and_wait(self.settings.topic(topic), value, key=key)


@contextlib.asynccontextmanager
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    pub = Publisher(settings)
    try:
        await pub.start()
        yield pub
    finally:
        await stop_clients(pub)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, pools_file: Path | None = None, **options: Any
) -> AsyncIterator[ResourceService]:
    """A resource service running until the block ends, ready (ledger rebuilt) when entered."""
    options.setdefault("group_id", f"{settings.topic_prefix}resources")
    service = ResourceService(settings, pools_file=pools_file, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        async with asyncio.timeout(WAIT):
            ready = asyncio.create_task(service.ready.wait())
            await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
        await eventually(lambda: service.leader, what="the service to take the lead")
        yield service
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(WAIT):
                await task


async def replayed(settings: Settings) -> Allocator:
    """The ledger as a fresh reader rebuilds it from the topics."""
    return await read_allocator(settings, config=AllocatorConfig())


async def records_of(settings: Settings, topic: str) -> list[Any]:
    """Every record of a topic as it is now (read to its end with no group)."""
    reader = TopicReader(settings, [topic])
    found: list[Any] = []
    try:
        await reader.start()
        await reader.catch_up(found.append)
    finally:
        await stop_clients(reader)
    return found


async def granted(settings: Settings) -> list[str]:
    """The allocation id of every grant the ``resources`` topic holds, sorted: one per grant
    event, since a retried request makes the allocator publish the same event again (so that
    compaction keeps it) and a second grant would be a different event."""
    grants: dict[object, str] = {}
    mapper = Mapper()
    for record in await records_of(settings, "resources"):
        event = mapper.decode(record.value, record.headers) if record.value is not None else None
        if isinstance(event, ResourceAllocated):
            grants[event.event_id] = event.allocation_id
    return sorted(grants.values())


async def wait_for_records(
    settings: Settings, topic: str, check: Callable[[list[Any]], bool], *, what: str
) -> list[Any]:
    """Read ``topic`` again until ``check`` holds for its records, or fail after ``WAIT``."""
    try:
        async with asyncio.timeout(WAIT):
            while True:
                found = await records_of(settings, topic)
                if check(found):
                    return found
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def pools_config(*pools: dict[str, Any], **defaults: Any) -> PoolsConfig:
    """A pools configuration as the YAML file would give it."""
    return parse_pools({"pools": list(pools), **defaults})
