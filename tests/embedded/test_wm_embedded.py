"""The Workflow Manager's contract (tests/contract/workflows.py) on the embedded broker (no
transactions: at-least-once, idempotent), and cases run here only: each checks the manager's own
logic (idempotent folding, a rebuild from snapshot plus history, the command's lifecycle, replay's
diff), the same on any broker, so a second run on Apache Kafka would add time and nothing else.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

from mesh.events import Event, TaskReady, TaskStarted, WorkflowSnapshot
from mesh.replay import replay_workflow
from mesh.settings import Settings
from mesh.workflows.runtime import WorkflowManager
from tests._wm_support import (
    WAIT,
    TestAgent,
    completed,
    diamond,
    ended,
    of_type,
    of_workflow,
    publisher,
    reader,
    running,
    start_manager_process,
    started,
    unique_group,
)
from tests.contract.brokers import OnEmbedded
from tests.contract.workflows import WorkflowManagerContract, env, readies_of
from tests.helpers import assert_one_line_error, run_mesh


async def twice(ready: TaskReady) -> list[Event]:
    """Every result sent twice, as a retrying agent or producer would."""
    return [started(ready), started(ready), completed(ready), completed(ready)]


class TestWorkflowsOnEmbedded(OnEmbedded, WorkflowManagerContract):
    """The Workflow Manager at-least-once on the embedded broker."""

    async def test_duplicates_have_no_effect(self, settings: Settings) -> None:
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

    async def test_a_new_manager_rebuilds_and_finishes_a_workflow(self, settings: Settings) -> None:
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
        rebuilt = [r for r in second.rebuilds if wid in r.statuses]
        assert len(rebuilt) == 1
        assert rebuilt[0].events > 0
        assert rebuilt[0].snapshots == 1
        result = await replay_workflow(settings, wid)
        assert result.equal is True

    async def test_mesh_run_workflows_reports_ready_and_stops_cleanly(
        self, settings: Settings, tmp_path: Path
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

    async def test_replay_reports_a_snapshot_that_differs(self, settings: Settings) -> None:
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
            last = [
                s for s in of_type(await state.drain(), WorkflowSnapshot) if s.workflow_id == wid
            ]
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
