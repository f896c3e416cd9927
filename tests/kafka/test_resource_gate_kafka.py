"""The task path gated on resources, with real processes on real Apache Kafka: the Workflow
Manager with its dispatcher (``mesh --resource-gate run workflows``), the Resource Allocator
(``mesh run resources``) and a command agent.

A task is dispatched only once its resources are allocated; a task over its tenant's quota is
never dispatched and fails with the denial's reason, visible in the history and the status; a
task that waits for capacity says so; every allocation is given back when its workflow ends
(completed, failed or cancelled), so usage returns to zero."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mesh.client import send_command
from mesh.events import (
    ResourceDenied,
    ResourceReleased,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TaskWaiting,
    WorkflowEvent,
)
from mesh.resources import AllocatorConfig
from mesh.resources.runtime import read_allocator
from mesh.settings import Settings
from tests._agents_support import AgentProcess, create_topics, mesh_process
from tests.e2e import history_of, plan_file, submit, wait_final
from tests.helpers import run_mesh

WAIT = 90.0

POOLS: dict[str, Any] = {
    "policy": "fair",
    "placement": "best_fit",
    "discovery": {"enabled": False},  # only the declared node: 2 CPUs in all
    "pools": [{"id": "test", "nodes": [{"id": "n", "cpu": 2, "memory_mb": 4096}]}],
    "quotas": [{"tenant": "small", "limits": {"cpu": 1}}],
}


def shell_task(task_id: str, cpu: float, code: str = "print('ok')") -> dict[str, Any]:
    return {
        "id": task_id,
        "capabilities": ["shell"],
        "resources": {"cpu": cpu, "memory_mb": 64},
        "command": ["python3", "-c", code],
    }


async def wait_output(process: AgentProcess, line: str) -> None:
    """Until the process logged ``line`` (it consumes); fail if it exits first."""
    async with asyncio.timeout(WAIT):
        while line not in process.output():
            if process.process.poll() is not None:
                raise AssertionError(f"{process.agent_id} exited:\n{process.output()}")
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def gated_mesh(settings: Settings, tmp_path: Path) -> Iterator[list[AgentProcess]]:
    """The three processes, each stopped (SIGTERM) at the end."""
    pools = tmp_path / "pools.yaml"
    pools.write_text(yaml.safe_dump(POOLS))
    # The allocator learns of the gate from the environment, the Agent Manager from the flag.
    env = {"MESH_RESOURCE_POOLS": str(pools), "MESH_RESOURCE_GATE": "true"}
    agent_id = f"{settings.topic_prefix}shell"
    with (
        mesh_process(settings, "resources", ["run", "resources"], tmp_path, env) as allocator,
        mesh_process(settings, "workflows", ["run", "workflows"], tmp_path) as manager,
        mesh_process(
            settings,
            "agent-manager",
            ["--resource-gate", "run", "agents", "--no-lifecycle"],
            tmp_path,
        ) as assigner,
        mesh_process(
            settings,
            "agent",
            [
                *("agent", "run", "--kind", "command", "--id", agent_id),
                *("--capability", "shell", "--allow-task-command"),
            ],
            tmp_path,
        ) as agent,
    ):
        processes = [allocator, manager, assigner, agent]
        try:
            yield processes
        finally:
            for process in reversed(processes):
                with contextlib.suppress(Exception):
                    process.stop()


async def usage_drained(settings: Settings) -> None:
    """Until the ledger rebuilt from the topic holds and queues nothing (the releases of a
    workflow that just ended may still be on their way to the allocator)."""
    async with asyncio.timeout(WAIT):
        while True:
            allocator = await read_allocator(settings, config=AllocatorConfig())
            if not allocator.ledger.held and not allocator.ledger.waiting:
                return
            await asyncio.sleep(0.5)


def of(events: list[WorkflowEvent], kind: type[WorkflowEvent], task_id: str) -> list[Any]:
    return [e for e in events if isinstance(e, kind) and getattr(e, "task_id", None) == task_id]


async def test_quota_denial_and_queueing_are_visible_and_nothing_leaks(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """A task over its tenant's quota is never dispatched: it fails (not retried) with the
    allocator's reason in the history and in ``mesh submit --wait --json``; its sibling runs.
    Two tasks that each need the whole pool run one after the other, the second recorded as
    waiting for resources. After both workflows usage is zero, as ``mesh resources usage``
    shows."""
    settings = kafka_settings.model_copy(update={"resource_gate": True})
    await create_topics(settings)
    with gated_mesh(settings, tmp_path) as (allocator, manager, assigner, agent):
        await wait_output(allocator, "resources ready")
        await wait_output(assigner, "agent manager ready")
        await wait_output(manager, "workflows ready")
        await wait_output(agent, "agent ready")

        over = plan_file(
            tmp_path,
            {
                "tenant": "small",
                "failure_policy": "continue",
                "tasks": [shell_task("big", 2), shell_task("fits", 1)],
            },
            "over.yaml",
        )
        run = await asyncio.to_thread(
            run_mesh,
            *("submit", str(over), "--wait", "--json"),
            env=settings.to_env(),
            timeout=240,
        )
        status = json.loads(run.stdout)
        assert status["status"] == "failed", run.stdout + run.stderr
        tasks = {task["task_id"]: task for task in status["tasks"]}  # status --json's shape
        big, fits = tasks["big"], tasks["fits"]
        assert (big["status"], big["attempt"], big["agent_id"]) == ("failed", 1, None)
        assert big["error"].startswith("resources denied (quota): "), big
        assert "big" in status["reason"]
        assert fits["status"] == "succeeded"
        history = await history_of(settings, status["workflow_id"])
        [failed] = of(history, TaskFailed, "big")
        assert (failed.error_kind, failed.retriable) == ("resources_denied", False)
        assert failed.message == big["error"]
        assert of(history, TaskAssigned, "big") == []  # never dispatched
        assert len(of(history, TaskAssigned, "fits")) == 1
        # The first workflow's allocation is released after it ends; start from an empty pool,
        # so that the only wait below is the one the pool's size causes.
        await usage_drained(settings)

        whole = plan_file(
            tmp_path,
            {
                "workflow_type": "parallel",
                "tasks": [
                    shell_task("a", 2, "import time; time.sleep(1)"),
                    shell_task("b", 2, "import time; time.sleep(1)"),
                ],
            },
            "whole.yaml",
        )
        submitted = await submit(settings, whole)
        state, events = await wait_final(settings, submitted)
        assert state.status == "completed"
        waits = [e for e in events if isinstance(e, TaskWaiting)]
        assert len(waits) == 1, waits
        assert waits[0].reason_kind == "resources"
        assert waits[0].reason.startswith("resources queued")
        second = waits[0].task_id
        first = "b" if second == "a" else "a"
        order = [(e.type, getattr(e, "task_id", None)) for e in events]
        # The pool holds one of them at a time: the second is assigned only after the first
        # completed and gave its CPUs back.
        assert order.index(("task.completed", first)) < order.index(("task.assigned", second))
        assert len(of(events, TaskCompleted, second)) == 1

        await usage_drained(settings)
        usage = await asyncio.to_thread(
            run_mesh, "resources", "usage", "--json", env=settings.to_env()
        )
        assert usage.code == 0, usage.stderr
        report = json.loads(usage.stdout)
        assert (report["allocations"], report["waiting"]) == (0, 0)
        assert report["used"]["cpu"] == 0


async def test_cancelling_a_workflow_releases_what_runs_and_withdraws_what_waits(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """One task holds the whole pool and runs, the other waits for it; cancelling the workflow
    releases the first's allocation and withdraws the second's request: usage is zero."""
    settings = kafka_settings.model_copy(update={"resource_gate": True})
    await create_topics(settings)
    with gated_mesh(settings, tmp_path) as (allocator, manager, assigner, agent):
        await wait_output(allocator, "resources ready")
        await wait_output(manager, "workflows ready")
        await wait_output(assigner, "agent manager ready")
        await wait_output(agent, "agent ready")
        path = plan_file(
            tmp_path,
            {
                "workflow_type": "parallel",
                "tasks": [
                    shell_task("a", 2, "import time; time.sleep(120)"),
                    shell_task("b", 2, "import time; time.sleep(120)"),
                ],
            },
        )
        submitted = await submit(settings, path)
        seen: list[str] = []
        started: list[str] = []

        async def cancel_once_one_runs_and_one_waits(event: WorkflowEvent, _state: Any) -> None:
            seen.append(event.type)
            if isinstance(event, TaskStarted):
                started.append(event.task_id)
            if "task.started" in seen and "task.waiting" in seen and "cancel" not in seen:
                seen.append("cancel")
                await send_command(settings, "cancel", submitted.workflow_id, reason="test")

        state, _events = await wait_final(
            settings, submitted, on_event=cancel_once_one_runs_and_one_waits
        )
        assert state.status == "cancelled"
        [running] = started
        await usage_drained(settings)
        allocator_now = await read_allocator(settings, config=AllocatorConfig())
        records = allocator_now.ledger.records
        assert sorted(records) == [f"{submitted.workflow_id}/a/1", f"{submitted.workflow_id}/b/1"]
        ended = {i.rsplit("/", 2)[1]: r for i, r in records.items()}
        assert isinstance(ended[running], ResourceReleased)  # it ran: its CPUs came back
        # The waiting one is withdrawn, unless the running one's release (its agent reports the
        # kill on tasks.results) reached the allocator before the waiting one's cancellation
        # (on workflow.events): then it was granted a moment and released.
        other = ended["b" if running == "a" else "a"]
        assert isinstance(other, ResourceReleased) or (
            isinstance(other, ResourceDenied) and other.code == "withdrawn"
        ), other
