"""Shared by the agent tests of the embedded and real-Kafka tiers: topics, agent processes,
readers that wait on conditions with deadlines, and event factories."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mesh.agentmanager.runtime import AgentManager
from mesh.events import (
    CancelTask,
    CapabilityRequirement,
    Event,
    Mapper,
    Producer,
    TaskAssigned,
    TaskReady,
    TaskSpec,
    meta,
)
from mesh.kafka.clients import stop_clients
from mesh.settings import Settings
from mesh.topics import apply_topics, load_topics

TOPICS = Path(__file__).resolve().parents[1] / "topics"
WAIT = 60.0
"""Seconds any single condition may take before the test fails."""

TEST = Producer(component="test", instance="pytest")

T = TypeVar("T")


async def eventually(
    check: Callable[[], T | None], *, what: str, within: float = WAIT, every: float = 0.05
) -> T:
    """Poll a condition asyncio cannot wait on (a file, a pid) until it gives a true value."""
    try:
        async with asyncio.timeout(within):
            while True:
                value = check()
                if value:
                    return value
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def read_pid(path: Path) -> int | None:
    """The pid a child wrote to ``path``, once it has."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


def pid_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state == "Z"


async def create_topics(settings: Settings) -> None:
    """Every declared topic under the test's own prefix."""
    declarations = load_topics(TOPICS, prefix=settings.topic_prefix, replication_factor=1)
    await apply_topics(settings, declarations.topics)


def env_for(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": settings.topic_prefix,
    }


@dataclass
class AgentProcess:
    """A real ``mesh`` process (an agent, a dispatcher); its output goes to a file."""

    agent_id: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the graceful exit; SIGKILL if it does not come."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def exited(self, timeout: float = 30.0) -> int:
        """Wait for an exit already asked for (no second signal)."""
        return self.process.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def mesh_process(
    settings: Settings,
    name: str,
    args: Sequence[str],
    tmp_path: Path,
    env: dict[str, str] | None = None,
) -> Any:
    """Start ``mesh ARGS`` as a real process; always stopped (killed if need be)."""
    log = tmp_path / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mesh", *args],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**env_for(settings), **(env or {})},
            cwd=Path(__file__).resolve().parents[1],
        )
    running = AgentProcess(name, process, log)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextlib.contextmanager
def agent_process(settings: Settings, agent_id: str, args: Sequence[str], tmp_path: Path) -> Any:
    """Start ``mesh agent run --id agent_id ARGS``; always stopped (killed if need be)."""
    with mesh_process(settings, agent_id, ["agent", "run", "--id", agent_id, *args], tmp_path) as p:
        yield p


@contextlib.asynccontextmanager
async def running_manager(settings: Settings, **options: Any) -> AsyncIterator[AgentManager]:
    """The Agent Manager's assignment, in-process (transactional where the broker has
    transactions; no local agent lifecycle), stopped when the block ends."""
    manager = AgentManager(settings, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        yield manager
    finally:
        stop.set()
        async with asyncio.timeout(WAIT):
            await task


@dataclass
class Reader:
    """A groupless read_committed consumer of whole topics from the beginning."""

    consumer: AIOKafkaConsumer
    mapper: Mapper = field(default_factory=Mapper)
    seen: list[tuple[str, bytes | None, Event | None]] = field(default_factory=list)
    raw: list[Any] = field(default_factory=list)

    async def until(
        self,
        done: Callable[[list[Event]], bool],
        *,
        within: float = WAIT,
        what: str = "the expected events",
    ) -> list[Event]:
        """Read until ``done(events so far)``; fails the test after ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while not done(self.events()):
                    batch = await self.consumer.getmany(timeout_ms=200)
                    for records in batch.values():
                        for record in records:
                            self.raw.append(record)
                            event = None
                            if record.value is not None:
                                with contextlib.suppress(Exception):
                                    event = self.mapper.decode(record.value, record.headers)
                            self.seen.append((record.topic, record.key, event))
        except TimeoutError:
            kinds = [f"{type(e).__name__}" for e in self.events()]
            raise AssertionError(f"timed out waiting for {what}; saw {kinds}") from None
        return self.events()

    def events(self) -> list[Event]:
        return [event for _, _, event in self.seen if event is not None]


@contextlib.asynccontextmanager
async def reader(settings: Settings, *names: str) -> AsyncIterator[Reader]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    try:
        await consumer.start()
        async with producer(settings) as lookup:  # waits for metadata of just-created topics
            partitions = [
                TopicPartition(settings.topic(name), p)
                for name in names
                for p in sorted(await lookup.partitions_for(settings.topic(name)))
            ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        yield Reader(consumer)
    finally:
        await stop_clients(consumer)


@contextlib.asynccontextmanager
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    try:
        await client.start()
        yield client
    finally:
        await stop_clients(client)


async def publish(
    client: AIOKafkaProducer, settings: Settings, channel: str, event: Event, key: str | None = None
) -> None:
    encoded = Mapper().encode(event)
    await client.send_and_wait(
        settings.topic(channel),
        encoded.value,
        key=key.encode() if key is not None else encoded.key,
        headers=encoded.headers,
    )


def spec(
    task_id: str,
    *capabilities: str,
    command: list[str] | None = None,
    prompt: str | None = None,
    inputs: dict[str, Any] | None = None,
) -> TaskSpec:
    return TaskSpec(
        task_id=task_id,
        name=f"task {task_id}",
        capabilities=[CapabilityRequirement(name=c) for c in capabilities],
        command=command,
        prompt=prompt,
        inputs=inputs or {},
    )


def task_assigned(agent_id: str, task: TaskSpec, workflow_id: str = "wf-1") -> TaskAssigned:
    return TaskAssigned(
        **meta(TEST, correlation_id=f"req-{workflow_id}"),
        workflow_id=workflow_id,
        task_id=task.task_id,
        attempt=1,
        agent_id=agent_id,
        task=task,
    )


def cancel_task(agent_id: str, task_id: str, workflow_id: str = "wf-1") -> CancelTask:
    return CancelTask(
        **meta(TEST, correlation_id=f"req-{workflow_id}"),
        workflow_id=workflow_id,
        task_id=task_id,
        attempt=1,
        agent_id=agent_id,
        reason="test cancels it",
    )


def task_ready(task: TaskSpec, workflow_id: str = "wf-1") -> TaskReady:
    return TaskReady(
        **meta(TEST, correlation_id=f"req-{workflow_id}"),
        workflow_id=workflow_id,
        task_id=task.task_id,
        attempt=1,
        task=task,
    )


def of_task(events: list[Event], task_id: str, kind: type[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind) and getattr(e, "task_id", None) == task_id]
