"""The whole task path on real Apache Kafka, with real processes: Workflow Manager replicas (and
their dispatchers) and command agents that append each run to a file we count."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from mesh.client import send_command
from mesh.events import WorkflowEvent
from mesh.replay import replay_workflow
from mesh.settings import Settings
from mesh.workflows import WorkflowState
from tests.contract.brokers import OnKafka
from tests.contract.task_path import TaskPathContract
from tests.e2e import (
    append_command,
    layered_plan,
    pid_alive,
    plan_file,
    run_log_counts,
    running_mesh,
    submit,
    wait_final,
    wait_for,
)


class TestTaskPathOnKafka(OnKafka, TaskPathContract):
    """The example diamond end to end on Apache Kafka (transactions, exact offsets)."""


async def test_kill_9_of_the_manager_mid_run_loses_and_repeats_nothing(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """kill -9 of the Workflow Manager in the middle of a 200-task workflow, then a new one: the
    workflow completes, every task ran exactly once, and replay equals the snapshot."""
    run_log = tmp_path / "runs.log"
    path = plan_file(tmp_path, layered_plan(run_log, width=10, depth=20))
    async with running_mesh(kafka_settings, shell_agents=3, python_agents=0) as mesh:
        submitted = await submit(kafka_settings, path)
        await wait_for(
            lambda: sum(run_log_counts(run_log).values()) >= 60, within=180, what="60 task runs"
        )
        old = mesh.supervisor.children["workflows"]
        os.kill(old.pid, signal.SIGKILL)
        await old.process.wait()
        done_before_restart = sum(run_log_counts(run_log).values())
        new = await mesh.spawn_workflows("workflows")
        await asyncio.wait_for(new.ready.wait(), 120)
        state, _ = await wait_final(kafka_settings, submitted, idle_timeout=120)
    assert state.status == "completed", state.reason
    counts = run_log_counts(run_log)
    assert done_before_restart < 200  # the kill really happened mid-run
    assert len(counts) == 200
    assert {task for task, n in counts.items() if n != 1} == set()
    replay = await replay_workflow(kafka_settings, submitted.workflow_id)
    assert replay.equal is True, replay.differences


async def test_two_replicas_one_stopped_mid_run(kafka_settings: Settings, tmp_path: Path) -> None:
    """Two Workflow Manager replicas share 6 partitions; 50 concurrent workflows; one replica is
    stopped mid-run: all workflows complete and no task ran twice."""
    run_log = tmp_path / "runs.log"
    plans = [
        plan_file(
            tmp_path,
            {
                "workflow_type": "sequential",
                "tasks": [
                    {
                        "id": f"w{i:02d}-s{step}",
                        "capabilities": ["shell"],
                        "command": append_command(run_log),
                    }
                    for step in range(3)
                ],
            },
            name=f"wf{i}.yaml",
        )
        for i in range(50)
    ]
    async with running_mesh(
        kafka_settings, shell_agents=3, python_agents=0, workflow_replicas=2
    ) as mesh:
        submitted = await asyncio.gather(*(submit(kafka_settings, p) for p in plans))
        await wait_for(
            lambda: sum(run_log_counts(run_log).values()) >= 30, within=180, what="30 task runs"
        )
        stopped = await mesh.supervisor.stop("workflows-2")
        assert stopped == 0
        finals = await asyncio.gather(
            *(wait_final(kafka_settings, s, idle_timeout=180) for s in submitted)
        )
    assert [state.status for state, _ in finals] == ["completed"] * 50
    counts = run_log_counts(run_log)
    assert len(counts) == 150
    assert {task for task, n in counts.items() if n != 1} == set()


async def test_pause_holds_scheduling_and_resume_continues(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """While paused no task is scheduled (the next task became runnable while paused and was
    scheduled only after the resume); resume continues to completion."""
    gate = tmp_path / "gate"
    wait_for_gate = (
        "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.02)\n"
    )
    plan = {
        "workflow_type": "sequential",
        "tasks": [
            {
                "id": "first",
                "capabilities": ["shell"],
                "command": ["python3", "-c", wait_for_gate, str(gate)],
            },
            {"id": "second", "capabilities": ["shell"], "command": ["python3", "-c", "pass"]},
        ],
    }
    path = plan_file(tmp_path, plan)
    paused = asyncio.Event()

    async def react(event: WorkflowEvent, state: WorkflowState) -> None:
        if event.type == "task.started" and getattr(event, "task_id", "") == "first":
            await send_command(kafka_settings, "pause", state.workflow_id)
        if event.type == "workflow.paused":
            paused.set()
            gate.write_text("go")  # let `first` finish while the workflow is paused
        if event.type == "task.completed" and getattr(event, "task_id", "") == "first":
            assert state.status == "paused"
            assert state.tasks["second"].status == "pending"
            await send_command(kafka_settings, "resume", state.workflow_id)

    async with running_mesh(kafka_settings, shell_agents=1, python_agents=0):
        submitted = await submit(kafka_settings, path)
        state, events = await wait_final(kafka_settings, submitted, on_event=react)
    assert paused.is_set()
    assert state.status == "completed"
    kinds = [(e.type, getattr(e, "task_id", None)) for e in events]
    resumed = kinds.index(("workflow.resumed", None))
    assert kinds.index(("workflow.paused", None)) < kinds.index(("task.completed", "first"))
    assert kinds.index(("task.completed", "first")) < resumed
    assert kinds.index(("task.scheduled", "second")) > resumed


async def test_cancel_kills_the_running_command(kafka_settings: Settings, tmp_path: Path) -> None:
    """Cancelling a workflow kills its running command agent's process (checked by pid)."""
    pid_file = tmp_path / "pid"
    sleeper = (
        "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(600)\n"
    )
    plan = {
        "tasks": [
            {
                "id": "long",
                "capabilities": ["shell"],
                "command": ["python3", "-c", sleeper, str(pid_file)],
            },
        ],
    }
    path = plan_file(tmp_path, plan)
    async with running_mesh(kafka_settings, shell_agents=1, python_agents=0):
        submitted = await submit(kafka_settings, path)
        await wait_for(
            lambda: pid_file.exists() and pid_file.read_text() != "",
            within=120,
            what="the command to start",
        )
        pid = int(pid_file.read_text())
        assert pid_alive(pid)
        await send_command(kafka_settings, "cancel", submitted.workflow_id, reason="test")
        state, _ = await wait_final(kafka_settings, submitted)
        await wait_for(lambda: not pid_alive(pid), within=30, what=f"pid {pid} to end")
    assert state.status == "cancelled"


def _flaky(succeed_on: int, attempts: int) -> dict[str, Any]:
    exit_unless = f"import sys; sys.exit(0 if int(sys.argv[1]) >= {succeed_on} else 3)"
    return {
        "tasks": [
            {
                "id": "flaky",
                "capabilities": ["shell"],
                "command": ["python3", "-c", exit_unless, "{attempt}"],
                "retry": {
                    "max_attempts": attempts,
                    "backoff": {"initial_seconds": 0.2},
                    "jitter": 0.0,
                },
            }
        ]
    }


async def test_retries_with_backoff(kafka_settings: Settings, tmp_path: Path) -> None:
    """A task failing twice then succeeding completes with max_attempts 3; with max_attempts 2 the
    workflow fails with that error."""
    async with running_mesh(kafka_settings, shell_agents=1, python_agents=0):
        ok = await submit(kafka_settings, plan_file(tmp_path, _flaky(3, 3), "ok.yaml"))
        bad = await submit(kafka_settings, plan_file(tmp_path, _flaky(3, 2), "bad.yaml"))
        (ok_state, ok_events), (bad_state, _) = await asyncio.gather(
            wait_final(kafka_settings, ok), wait_final(kafka_settings, bad)
        )
    assert ok_state.status == "completed"
    assert ok_state.tasks["flaky"].attempt == 3
    assert [e.type for e in ok_events].count("task.retry_scheduled") == 2
    assert bad_state.status == "failed"
    assert bad_state.tasks["flaky"].error_kind == "exit_code"
    assert bad_state.failed_task_ids == ("flaky",)
