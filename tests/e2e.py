"""End-to-end helpers: the whole task path with real processes (planner, Workflow Manager, Agent
Manager, command agents) on a real broker, a plan submitted, its history followed to the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.client import WorkflowRun, follow_history, history_cursor, load_plan_file, submit_plan
from mesh.dev import DevMesh, DevOptions
from mesh.events import WorkflowEvent
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs
from mesh.kafka.partitions import topic_partitions
from mesh.settings import Settings
from mesh.workflows import WorkflowState, evolve

ROOT = Path(__file__).resolve().parents[1]


@contextlib.asynccontextmanager
async def running_mesh(
    settings: Settings, *, topics_dir: Path = ROOT / "topics", **options: Any
) -> AsyncIterator[DevMesh]:
    """Workflow Manager(s), dispatcher and demo agents as real processes on ``settings``, with
    the topics of ``topics_dir`` (``topics/overlays/cluster`` on a 3-node cluster).

    No workshop agent unless asked for (``workshop_agents=1``): the task-path tests plan onto
    shell agents (``*=shell``), and an idle process per test only costs the suite time."""
    options.setdefault("workshop_agents", 0)
    dev_options = DevOptions(bootstrap=settings.bootstrap_servers, topics_dir=topics_dir, **options)
    async with DevMesh(settings, dev_options) as mesh:
        yield mesh


def plan_file(tmp_path: Path, plan: dict[str, Any], name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(plan))
    return path


async def submit(settings: Settings, path: Path) -> WorkflowRun:
    return await submit_plan(settings, load_plan_file(path))


async def wait_final(
    settings: Settings,
    submitted: WorkflowRun,
    *,
    idle_timeout: float = 120,
    on_event: Callable[[WorkflowEvent, WorkflowState], Any] | None = None,
) -> tuple[WorkflowState, list[WorkflowEvent]]:
    """Follow a workflow's history until it ends; the folded state and the events seen."""
    state: WorkflowState | None = None
    events: list[WorkflowEvent] = []
    async for event in follow_history(
        settings, submitted.workflow_id, submitted.cursor, idle_timeout=idle_timeout
    ):
        state = evolve(state, event)
        events.append(event)
        if on_event is not None:
            result = on_event(event, state)
            if asyncio.iscoroutine(result):
                await result
    assert state is not None
    return state, events


async def history_of(settings: Settings, workflow_id: str) -> list[WorkflowEvent]:
    """Every history event of a finished workflow, read from the start of its partition."""
    cursor = await history_cursor(settings, workflow_id, from_end=False)
    events = []
    async for event in follow_history(settings, workflow_id, cursor, idle_timeout=30):
        events.append(event)
    return events


async def wait_for(condition: Callable[[], bool], *, within: float, what: str) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def eventually(check: Callable[[], Any], *, within: float, what: str) -> Any:
    """Await ``check()`` until it returns something true; fail naming ``what`` after
    ``within`` seconds (for conditions that need I/O to check)."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)


def run_log_counts(path: Path) -> dict[str, int]:
    """How many times each task appended itself to the run log (agents run the append)."""
    counts: dict[str, int] = {}
    if not path.exists():
        return counts
    for line in path.read_text().splitlines():
        task = line.split()[0]
        counts[task] = counts.get(task, 0) + 1
    return counts


def append_command(run_log: Path, extra: str = "") -> list[str]:
    """A task command that appends `<task_id> <attempt>` to the run log (no shell)."""
    code = (
        "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + ' ' + sys.argv[3] + '\\n')" + extra
    )
    return ["python3", "-c", code, str(run_log), "{task_id}", "{attempt}"]


def layered_plan(run_log: Path, width: int, depth: int, extra: str = "") -> dict[str, Any]:
    """width x depth command tasks appending to ``run_log`` (then running ``extra``, Python
    code); each depends on the same column of the layer above."""
    tasks = []
    for layer in range(depth):
        for col in range(width):
            task: dict[str, Any] = {
                "id": f"t{layer:02d}-{col:02d}",
                "capabilities": ["shell"],
                "command": append_command(run_log, extra),
            }
            if layer:
                task["depends_on"] = [f"t{layer - 1:02d}-{col:02d}"]
            tasks.append(task)
    return {"workflow_type": "dag", "tasks": tasks}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


async def dead_letter_count(settings: Settings) -> int:
    """Records on the DLQ topic (end minus beginning offsets, read_committed)."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), isolation_level="read_committed")
    try:
        await consumer.start()
        topic = settings.topic("dlq")
        numbers = await topic_partitions(consumer, settings, topic)
        parts = [TopicPartition(topic, p) for p in numbers]
        ends = await consumer.end_offsets(parts)
        starts = await consumer.beginning_offsets(parts)
        return sum(ends[p] - starts[p] for p in parts)
    finally:
        await stop_clients(consumer)
