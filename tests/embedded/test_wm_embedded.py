"""The Workflow Manager on the embedded broker (no transactions: at-least-once, idempotent).

A test agent plays the dispatcher and the agents: it reads ``tasks.ready`` and answers on
``tasks.results``. Each test runs its own manager under a fresh topic prefix and group.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mesh.events import Event, TaskCompleted, TaskReady, TaskStarted, WorkflowSnapshot
from mesh.replay import replay_workflow
from mesh.settings import Settings
from mesh.workflows.runtime import WorkflowManager
from tests._wm_support import (
    WAIT,
    TestAgent,
    completed,
    create_topics,
    diamond,
    ended,
    of_type,
    of_workflow,
    plan,
    publisher,
    reader,
    running,
    spec,
    start_manager_process,
    started,
    unique_group,
)
from tests.helpers import assert_one_line_error, run_mesh


@pytest.fixture(autouse=True)
def _captured_logs() -> Iterator[None]:
    """Keep the in-process managers' logs in memory: an earlier in-process CLI test may have
    configured structlog with a stream that pytest has closed since."""
    with capture_logs():
        yield


@pytest.fixture
async def settings(embedded_settings: Settings) -> Settings:
    await create_topics(embedded_settings)
    return embedded_settings


def env(settings: Settings) -> dict[str, str]:
    return {
        "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": settings.topic_prefix,
    }


def readies_of(agent: TestAgent, workflow_id: str) -> list[tuple[str, int]]:
    return sorted((r.task_id, r.attempt) for r in agent.readies if r.workflow_id == workflow_id)


async def test_a_dag_runs_to_completion_and_replays_to_its_snapshot(settings: Settings) -> None:
    """a → (b, c) → d completes; each task is dispatched once; the history is gapless; the
    snapshots are bounded; replay (API and ``mesh replay --json``) equals the last snapshot."""
    manager = WorkflowManager(settings, group_id=unique_group(), snapshot_every=4)
    created = diamond()
    wid = created.workflow_id
    async with running(manager), TestAgent(settings) as agent:
        assert manager.transactional is False
        async with publisher(settings) as out:
            await out.send("plans", created)
        async with reader(settings, "workflow.events") as history:
            await history.until(ended(wid), "the workflow to end")
        events = of_workflow(history.events, wid)
        assert events[-1].type == "workflow.completed"
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert readies_of(agent, wid) == [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
        state = manager.workflow(wid)
        assert state is not None
        assert state.status == "completed"
    async with reader(settings, "workflow.state") as snapshots:
        await snapshots.drain()
    mine = [s for s in of_type(snapshots.events, WorkflowSnapshot) if s.workflow_id == wid]
    assert 2 <= len(mine) < len(events) / 2
    assert mine[-1].history_sequence == len(events)
    assert mine[-1].status == "completed"

    result = await replay_workflow(settings, wid)
    assert (result.equal, result.differences) == (True, [])
    assert result.event_count == len(events)
    assert result.state.status == "completed"

    run = await asyncio.to_thread(run_mesh, "replay", wid, "--json", env=env(settings))
    assert run.code == 0, run.stderr
    document = json.loads(run.stdout)
    assert (document["workflow_id"], document["status"], document["equal"]) == (
        wid,
        "completed",
        True,
    )
    assert document["event_count"] == len(events)
    assert document["differences"] == []
    assert [t["task_id"] for t in document["tasks"]] == ["a", "b", "c", "d"]
    assert {t["status"] for t in document["tasks"]} == {"succeeded"}


async def twice(ready: TaskReady) -> list[Event]:
    """Every result sent twice, as a retrying agent or producer would."""
    return [started(ready), started(ready), completed(ready), completed(ready)]


async def test_duplicates_have_no_effect(settings: Settings) -> None:
    """A plan sent twice starts one workflow; results sent twice are recorded once."""
    manager = WorkflowManager(settings, group_id=unique_group())
    created = diamond()
    wid = created.workflow_id
    async with running(manager), TestAgent(settings, twice) as agent:
        async with publisher(settings) as out:
            await out.send("plans", created, created)
        async with reader(settings, "workflow.events") as history:
            await history.until(ended(wid), "the workflow to end")
            events = of_workflow(await history.drain(), wid)
    assert Counter(e.type for e in events) == {
        "workflow.started": 1,
        "task.scheduled": 4,
        "task.started": 4,
        "task.completed": 4,
        "workflow.completed": 1,
    }
    assert readies_of(agent, wid) == [("a", 1), ("b", 1), ("c", 1), ("d", 1)]


async def test_a_new_manager_rebuilds_and_finishes_a_workflow(settings: Settings) -> None:
    """Stopped while b and c run, the workflow is continued by the next manager of the group,
    which rebuilds it from its snapshot plus the history after it."""
    group = unique_group()
    created = diamond()
    wid = created.workflow_id
    hold = True

    async def only_a_at_first(ready: TaskReady) -> list[Event]:
        if hold and ready.task_id != "a":
            return [started(ready)]
        return [started(ready), completed(ready)]

    async with TestAgent(settings, only_a_at_first) as agent:
        first = WorkflowManager(settings, group_id=group, instance="wm-first")
        async with running(first), reader(settings, "workflow.events") as history:
            async with publisher(settings) as out:
                await out.send("plans", created)
            await history.until(
                lambda evs: len(of_type(of_workflow(evs, wid), TaskStarted)) == 3,
                "b and c to start",
            )
        running_now = [r for r in agent.readies if r.task_id in {"b", "c"}]
        hold = False
        async with publisher(settings) as out:  # they finish while no manager runs
            await out.send("tasks.results", *(completed(r) for r in running_now))
        second = WorkflowManager(settings, group_id=group, instance="wm-second")
        async with running(second), reader(settings, "workflow.events") as history:
            await history.until(ended(wid), "the workflow to end")
        events = of_workflow(history.events, wid)
    assert events[-1].type == "workflow.completed"
    assert events[-1].producer.instance == "wm-second"
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert readies_of(agent, wid) == [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
    rebuilt = [r for r in second.rebuilds if wid in r.workflows]
    assert len(rebuilt) == 1
    assert rebuilt[0].events > 0
    assert rebuilt[0].snapshots == 1
    result = await replay_workflow(settings, wid)
    assert result.equal is True


async def test_a_finished_workflow_is_tombstoned_and_forgotten(settings: Settings) -> None:
    """After its grace period a finished workflow's snapshot is deleted (a null record)."""
    manager = WorkflowManager(settings, group_id=unique_group(), finished_grace_seconds=0.5)
    created = diamond()
    wid = created.workflow_id
    async with running(manager), TestAgent(settings):
        async with publisher(settings) as out:
            await out.send("plans", created)
        async with reader(settings, "workflow.state") as state:
            await state.until(
                lambda _: any(r.key == wid.encode() and r.value is None for r in state.records),
                "the tombstone",
            )
        assert manager.workflow(wid) is None


async def test_mesh_run_workflows_reports_ready_and_stops_cleanly(
    settings: Settings, tmp_path: Path
) -> None:
    """The command logs 'workflows ready' and exits 0 on SIGTERM."""
    process = start_manager_process(settings, unique_group(), tmp_path / "wm.log")
    try:
        await process.wait_ready()
    finally:
        code = await asyncio.wait_for(asyncio.to_thread(process.terminate), WAIT)
    output = process.output()
    assert code == 0, output
    assert "workflows stopped" in output
    assert "Traceback" not in output


async def test_replay_reports_a_snapshot_that_differs(settings: Settings) -> None:
    """A snapshot that does not match the history (here: tampered with) is reported field by
    field and ``mesh replay`` exits 1; an unknown workflow id is a one-line error."""
    manager = WorkflowManager(settings, group_id=unique_group())
    created = diamond()
    wid = created.workflow_id
    async with running(manager), TestAgent(settings):
        async with publisher(settings) as out:
            await out.send("plans", created)
        async with reader(settings, "workflow.events") as history:
            await history.until(ended(wid), "the workflow to end")
    async with reader(settings, "workflow.state") as state:
        last = [s for s in of_type(await state.drain(), WorkflowSnapshot) if s.workflow_id == wid]
    tampered_state = json.loads(json.dumps(last[-1].state))
    tampered_state["tasks"]["b"]["attempt"] = 7
    tampered = last[-1].model_copy(update={"state": tampered_state})
    async with publisher(settings) as out:
        await out.send("workflow.state", tampered)

    result = await replay_workflow(settings, wid)
    assert result.equal is False
    assert result.differences == ["tasks.b.attempt: snapshot has 7, replay has 1"]
    run = await asyncio.to_thread(run_mesh, "replay", wid, env=env(settings))
    assert run.code == 1, run.stderr
    assert "tasks.b.attempt: snapshot has 7, replay has 1" in run.stdout
    assert "completed" in run.stdout

    unknown = await asyncio.to_thread(run_mesh, "replay", "wf-nobody", env=env(settings))
    assert "wf-nobody has no history" in assert_one_line_error(unknown)


async def test_a_killed_manager_loses_nothing_without_transactions(
    settings: Settings, tmp_path: Path
) -> None:
    """At-least-once: ``mesh run workflows`` killed with SIGKILL mid-run, then restarted. The
    workflow completes, its history has each sequence once with no gap (whole decisions only),
    every task completed exactly once, and replay equals the snapshot. A TaskReady may repeat
    (that is what at-least-once allows), never a recorded fact."""
    group = unique_group()
    created = plan(
        *(spec(f"t{i:02}") for i in range(18)), workflow_type="parallel", max_parallelism=3
    )
    wid = created.workflow_id
    first = start_manager_process(settings, group, tmp_path / "first.log")
    second = None
    try:
        await first.wait_ready()
        async with TestAgent(settings) as agent:
            async with publisher(settings) as out:
                await out.send("plans", created)
            await agent.saw(7)
            first.kill()
            second = start_manager_process(settings, group, tmp_path / "second.log")
            await second.wait_ready(within=3 * WAIT)
            async with reader(settings, "workflow.events") as history:
                await history.until(ended(wid), "the workflow to end", within=2 * WAIT)
                events = of_workflow(await history.drain(), wid)
        assert second.terminate() == 0, second.output()
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert events[-1].type == "workflow.completed"
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    done = Counter(e.task_id for e in of_type(events, TaskCompleted))
    assert done == Counter({f"t{i:02}": 1 for i in range(18)})
    assert {r.task_id for r in agent.readies if r.workflow_id == wid} == set(done)
    result = await replay_workflow(settings, wid)
    assert result.equal is True, result.differences
