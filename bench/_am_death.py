"""Measured time from an agent's death (kill -9) to its attempts' ``TaskReassigned``, on a real
broker: an Agent Manager replica in this process, one command agent as a real process running
four long attempts, killed with SIGKILL; the clock stops when the last ``TaskReassigned`` is
read back from ``tasks.results`` (so it includes the produce and a consumer's fetch)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench._common import ROOT
from mesh.agentmanager import HealthPolicy
from mesh.agentmanager.runtime import AgentManager
from mesh.events import (
    AgentRegistered,
    CapabilityRequirement,
    Event,
    Mapper,
    Producer,
    TaskReady,
    TaskReassigned,
    TaskSpec,
    TaskStarted,
    meta,
)
from mesh.kafka.connection import client_kwargs
from mesh.log import configure_logging
from mesh.settings import Settings
from mesh.topics import apply_topics, load_topics

ME = Producer(component="bench", instance="bench")
TASKS = 4


async def _until(
    consumer: AIOKafkaConsumer,
    mapper: Mapper,
    done: Callable[[list[Event]], bool],
    seen: list[Event],
) -> None:
    async with asyncio.timeout(120):
        while not done(seen):
            batch = await consumer.getmany(timeout_ms=50)
            for records in batch.values():
                for record in records:
                    if record.value is not None:
                        with contextlib.suppress(Exception):
                            seen.append(mapper.decode(record.value, record.headers))


def _more_than(count: int) -> Callable[[list[Event]], bool]:
    return lambda events: len(events) > count


async def death_to_reassignment(
    servers: str, interval: float, policy: HealthPolicy
) -> tuple[float, float]:
    """(seconds to the first, to the last ``TaskReassigned``) after the kill."""
    configure_logging("bench", level="ERROR")  # the figures, not the manager's log lines
    settings = Settings(bootstrap_servers=servers, topic_prefix=f"b{uuid.uuid4().hex[:8]}.")
    await apply_topics(settings, load_topics(ROOT / "topics", prefix=settings.topic_prefix).topics)
    mapper = Mapper()
    results = AIOKafkaConsumer(
        settings.topic("tasks.results"),
        settings.topic("agents"),
        **client_kwargs(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    out = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    env = {**os.environ, **settings.to_env()}
    argv = [sys.executable, "-m", "mesh", "agent", "run", "--kind", "command", "--id", "doomed"]
    argv += ["--capability", "w", "--allow-task-command", "--max-concurrency", str(TASKS)]
    argv += ["--heartbeat-interval", str(interval)]
    agent = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    manager = AgentManager(settings, policy=policy)
    stop = asyncio.Event()
    running = asyncio.create_task(manager.run(stop))
    seen: list[Event] = []
    try:
        await results.start()
        await out.start()
        await _until(
            results, mapper, lambda evs: any(isinstance(e, AgentRegistered) for e in evs), seen
        )
        for i in range(TASKS):
            task = TaskSpec(
                task_id=f"t{i}",
                name=f"t{i}",
                capabilities=[CapabilityRequirement(name="w")],
                command=[sys.executable, "-c", "import time; time.sleep(600)"],
            )
            ready = TaskReady(
                **meta(ME, correlation_id=f"wf{i}"),
                workflow_id=f"wf{i}",
                task_id=f"t{i}",
                attempt=1,
                task=task,
            )
            key, value, headers = mapper.encode(ready)
            await out.send_and_wait(settings.topic("tasks.ready"), value, key=key, headers=headers)
        await _until(
            results, mapper, lambda evs: sum(isinstance(e, TaskStarted) for e in evs) >= TASKS, seen
        )
        agent.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        first: float | None = None
        while sum(isinstance(e, TaskReassigned) for e in seen) < TASKS:
            await _until(results, mapper, _more_than(len(seen)), seen)
            if first is None and any(isinstance(e, TaskReassigned) for e in seen):
                first = time.monotonic() - killed
        last = time.monotonic() - killed
        return (first if first is not None else last), last
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 60)
        if agent.returncode is None:
            agent.kill()
        await agent.wait()
        for client in (results, out):
            with contextlib.suppress(Exception):
                await client.stop()
