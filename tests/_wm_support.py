"""Helpers for the Workflow Manager tests: topics, plans, readers, and a scripted test agent.

The test agent plays the dispatcher and the agents at once: it reads ``tasks.ready`` and answers
each attempt on ``tasks.results`` as the test tells it to (by default: started, then completed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mesh.events import (
    Event,
    ExecutionPlan,
    Mapper,
    PlanCreated,
    Producer,
    RetryPolicy,
    TaskCompleted,
    TaskEvent,
    TaskReady,
    TaskSpec,
    TaskStarted,
    WorkflowType,
    meta,
)
from mesh.kafka.clients import stop_clients
from mesh.settings import Settings
from mesh.topics import apply_topics, load_topics
from mesh.workflows.runtime import WorkflowManager

ROOT = Path(__file__).resolve().parents[1]
WAIT = 60.0
AGENT = Producer(component="agent", instance="test-agent")
CLIENT = Producer(component="client", instance="wm-tests")
MAPPER = Mapper()


async def create_topics(settings: Settings, *, max_message_bytes: int | None = None) -> None:
    """Every declared topic under the test's prefix (co-partitioned ones with 6 partitions),
    with ``max.message.bytes`` raised on all of them when given."""
    declarations = load_topics(ROOT / "topics", prefix=settings.topic_prefix)
    topics = declarations.topics
    if max_message_bytes is not None:
        topics = tuple(
            t.model_copy(
                update={"config": {**t.config, "max.message.bytes": str(max_message_bytes)}}
            )
            for t in topics
        )
    await apply_topics(settings, topics)


def spec(
    task_id: str,
    *,
    depends_on: Sequence[str] = (),
    timeout_seconds: float | None = None,
    max_attempts: int = 3,
) -> TaskSpec:
    return TaskSpec(
        task_id=task_id,
        name=f"task {task_id}",
        depends_on=tuple(depends_on),
        timeout_seconds=timeout_seconds,
        retry=RetryPolicy(max_attempts=max_attempts, jitter=0.0),
    )


def plan(
    *tasks: TaskSpec,
    workflow_id: str | None = None,
    workflow_type: WorkflowType = "dag",
    max_parallelism: int | None = None,
) -> PlanCreated:
    """A PlanCreated for a new workflow made of ``tasks``."""
    wid = workflow_id or f"wf-{uuid.uuid4().hex[:12]}"
    return PlanCreated(
        **meta(CLIENT, correlation_id=f"req-{wid}"),
        workflow_id=wid,
        request_id=f"req-{wid}",
        plan=ExecutionPlan(
            plan_id=f"plan-{wid}",
            workflow_type=workflow_type,
            tasks=tasks,
            max_parallelism=max_parallelism,
        ),
    )


def diamond(workflow_id: str | None = None) -> PlanCreated:
    """a → (b, c) → d."""
    return plan(
        spec("a"),
        spec("b", depends_on=["a"]),
        spec("c", depends_on=["a"]),
        spec("d", depends_on=["b", "c"]),
        workflow_id=workflow_id,
    )


def started(ready: TaskEvent, agent_id: str = "agent-1") -> TaskStarted:
    return TaskStarted(
        **meta(AGENT, causation=ready),
        workflow_id=ready.workflow_id,
        task_id=ready.task_id,
        attempt=ready.attempt,
        agent_id=agent_id,
    )


def completed(ready: TaskEvent, agent_id: str = "agent-1") -> TaskCompleted:
    return TaskCompleted(
        **meta(AGENT, causation=ready),
        workflow_id=ready.workflow_id,
        task_id=ready.task_id,
        attempt=ready.attempt,
        agent_id=agent_id,
        output={"done": ready.task_id, "attempt": ready.attempt},
    )


@contextlib.asynccontextmanager
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        max_request_size=max(1_048_576, settings.max_event_bytes + 65_536),
    )
    try:
        await producer.start()
        yield Publisher(settings, producer)
    finally:
        await stop_clients(producer)


@dataclass
class Publisher:
    """Sends events (or raw bytes) to a logical channel and waits for the broker to have them."""

    settings: Settings
    producer: Any

    async def send(self, channel: str, *events: Event) -> None:
        for event in events:
            key, value, headers = MAPPER.encode(event)
            await self.producer.send_and_wait(
                self.settings.topic(channel), value, key=key, headers=headers
            )

    async def send_big(self, channel: str, event: Event) -> None:
        """Send an event over the default size limit (up to the settings' ``max_event_bytes``)."""
        key, value, headers = Mapper(max_event_bytes=self.settings.max_event_bytes).encode(event)
        await self.producer.send_and_wait(
            self.settings.topic(channel), value, key=key, headers=headers
        )

    async def raw(
        self, channel: str, value: bytes | None, *, key: bytes, partition: int | None = None
    ) -> None:
        await self.producer.send_and_wait(
            self.settings.topic(channel), value, key=key, partition=partition
        )


@dataclass
class Reader:
    """Everything on a topic (all partitions, read committed), decoded, as it arrives."""

    consumer: Any
    records: list[Any] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    async def poll(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=100)
        for records in batch.values():
            for record in records:
                self.records.append(record)
                if record.value is not None:
                    with contextlib.suppress(Exception):
                        self.events.append(MAPPER.decode(record.value, record.headers))

    async def until(
        self, condition: Callable[[list[Event]], bool], what: str, within: float = WAIT
    ) -> list[Event]:
        try:
            async with asyncio.timeout(within):
                while not condition(self.events):
                    await self.poll()
        except TimeoutError:
            types = [e.type for e in self.events][-20:]
            raise AssertionError(f"timed out waiting for {what}; last events: {types}") from None
        return self.events

    async def first(self, kind: type[Event]) -> Any:
        """The first event of ``kind`` on the topic (waiting for it)."""
        events = await self.until(lambda evs: bool(of_type(evs, kind)), f"a {kind.__name__}")
        return of_type(events, kind)[0]

    async def drain(self) -> list[Event]:
        """Read up to the current end of every partition (the larger of ListOffsets and the
        fetch's high watermark: the embedded broker's ListOffsets may stop short)."""
        consumer = self.consumer
        tps = sorted(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        async with asyncio.timeout(WAIT):
            await self.poll()
            for tp in tps:
                while consumer.highwater(tp) is None or await consumer.position(tp) < max(
                    ends[tp], consumer.highwater(tp)
                ):
                    await self.poll()
        return self.events


@contextlib.asynccontextmanager
async def reader(settings: Settings, channel: str) -> AsyncIterator[Reader]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    try:
        await consumer.start()
        topic = settings.topic(channel)
        partitions = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)
        assert partitions, f"topic {topic} has no partitions"

        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        yield Reader(consumer)
    finally:
        await stop_clients(consumer)


Behaviour = Callable[[TaskReady], Awaitable[list[Event]]]


async def complete_at_once(ready: TaskReady) -> list[Event]:
    return [started(ready), completed(ready)]


class Background:
    """Runs ``_run`` in a task for the duration of an ``async with`` block."""

    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        raise NotImplementedError


class TestAgent(Background):
    """Answers every TaskReady on ``tasks.ready`` with what ``behaviour`` returns."""

    __test__ = False  # not a pytest test class

    def __init__(self, settings: Settings, behaviour: Behaviour = complete_at_once) -> None:
        self.settings = settings
        self.behaviour = behaviour
        self.readies: list[TaskReady] = []
        self._seen = asyncio.Condition()

    async def _run(self) -> None:
        async with reader(self.settings, "tasks.ready") as ready, publisher(self.settings) as out:
            while True:
                before = len(ready.events)
                await ready.poll()
                for event in ready.events[before:]:
                    if isinstance(event, TaskReady):
                        self.readies.append(event)
                        async with self._seen:
                            self._seen.notify_all()
                        await out.send("tasks.results", *(await self.behaviour(event)))

    async def saw(self, count: int, within: float = WAIT) -> None:
        """Wait until ``count`` TaskReady have arrived."""
        async with asyncio.timeout(within), self._seen:
            await self._seen.wait_for(lambda: len(self.readies) >= count)


@contextlib.asynccontextmanager
async def running(manager: WorkflowManager) -> AsyncIterator[WorkflowManager]:
    """Run ``manager`` in a task until the block ends; fail fast if it dies before ready."""
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        async with asyncio.timeout(WAIT):
            ready = asyncio.ensure_future(manager.ready.wait())
            await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
        if task.done():
            task.result()  # raises what stopped it
            raise AssertionError("the manager stopped before it was ready")
        yield manager
    finally:
        stop.set()
        async with asyncio.timeout(WAIT):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def of_type(events: Sequence[Event], kind: type[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def of_workflow(events: Sequence[Event], workflow_id: str) -> list[Any]:
    return [e for e in events if getattr(e, "workflow_id", None) == workflow_id]


def ended(workflow_id: str) -> Callable[[list[Event]], bool]:
    """A condition for ``Reader.until``: the workflow's history holds its final event."""
    final = ("workflow.completed", "workflow.failed", "workflow.cancelled")
    return lambda events: any(e.type in final for e in of_workflow(events, workflow_id))


def unique_group() -> str:
    return f"wm-{uuid.uuid4().hex[:10]}"


@dataclass
class ManagerProcess:
    """``python -m mesh run workflows`` as a real process (to kill -9)."""

    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_ready(self, within: float = WAIT) -> None:
        async with asyncio.timeout(within):
            while "workflows ready" not in self.output():
                if self.process.poll() is not None:
                    raise AssertionError(f"manager exited early:\n{self.output()}")
                await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as a crash."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def freeze(self) -> None:
        """SIGSTOP: alive but silent, as a long GC pause or a partitioned host."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def start_manager_process(settings: Settings, group: str, log: Path, *args: str) -> ManagerProcess:
    """Start ``mesh run workflows`` for ``group``; its output goes to ``log``."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": settings.topic_prefix,
    }
    handle = log.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            *("-m", "mesh", "run", "workflows", "--group", group),
            *args,
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
        cwd=ROOT,
    )
    handle.close()
    return ManagerProcess(process, log)
