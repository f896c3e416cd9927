"""``mesh.Client`` against a running mesh on real Apache Kafka: every call goes out as an event and
comes back as a ``Reply`` from a real component process (``mesh dev``'s planner, Workflow Manager
and agents); a call nobody answers is a ``NoAnswer`` that names the component to start. The
client contract (tests/contract/client.py) runs here too."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest

from mesh import CallFailed, Client, NoAnswer
from mesh.client import follow_history, history_cursor
from mesh.events import ExecutionPlan, WorkflowEvent
from mesh.settings import Settings
from mesh.topics import apply_topics, load_topics
from tests.contract.brokers import OnKafka
from tests.contract.client import ClientContract
from tests.e2e import ROOT, running_mesh
from tests.helpers import assert_one_line_error, run_mesh

REQUEST = {"type": "bugfix", "description": "Fix the login timeout", "id": "req-client-1"}


async def _history(client: Client, workflow_id: str) -> AsyncIterator[WorkflowEvent]:
    cursor = await history_cursor(client.settings, workflow_id, from_end=False)
    async for event in follow_history(client.settings, workflow_id, cursor):
        yield event


class TestClientOnKafka(OnKafka, ClientContract):
    """The client contract on Apache Kafka, and every API call answered by a real component
    process (a full mesh: run here only, where it is as in production)."""

    async def test_planner_and_workflow_calls_round_trip_through_kafka(
        self,
        settings: Settings,
    ) -> None:
        async with (
            running_mesh(settings, shell_agents=2, python_agents=0),
            Client(settings, timeout=60) as client,
        ):
            plan = await client.plan_task(REQUEST)
            assert isinstance(plan, ExecutionPlan)
            assert plan.tasks
            checked = await client.validate_plan(plan)
            assert checked["valid"] is True
            assert checked["stages"]
            optimized = await client.optimize_plan(plan)
            assert {t.task_id for t in optimized.tasks} == {t.task_id for t in plan.tasks}
            estimate = await client.estimate_resources(plan)
            assert estimate["makespan_seconds"] > 0
            assert "peak" in estimate

            run = await client.start_workflow(plan)
            paused = await client.pause_workflow(run.workflow_id, reason="look first")
            assert paused["workflow_id"] == run.workflow_id
            resumed = await client.resume_workflow(run.workflow_id)
            assert resumed["workflow_id"] == run.workflow_id
            try:
                final = await run.wait(within=180)
            except TimeoutError:
                status = await client.get_workflow_status(run.workflow_id)
                pytest.fail(f"not final in time: {status}")
            assert final.status == "completed", final.reason
            status = await client.get_workflow_status(run.workflow_id)
            assert status["status"] == "completed"
            assert set(status["tasks"]) == {t.task_id for t in plan.tasks}
            kinds = [event.type async for event in _history(client, run.workflow_id)]
            assert "workflow.paused" in kinds
            assert "workflow.resumed" in kinds
            # A finished workflow takes cancel and retry as no-ops: answered, nothing recorded.
            cancelled = await client.cancel_workflow(run.workflow_id, reason="too late")
            retried = await client.retry_task(run.workflow_id, plan.tasks[0].task_id)
            assert (cancelled["status"], cancelled["recorded"]) == ("completed", 0)
            assert (retried["status"], retried["recorded"]) == ("completed", 0)

            health = await client.get_agent_health()
            assert {a["agent_id"] for a in health}, "mesh dev's agents are registered"
            assert all(a["health"] in {"healthy", "degraded"} for a in health)
            shell = [a for a in health if any(c["name"] == "shell" for c in a["capabilities"])]
            matches = await client.match_capabilities(["shell"])
            assert {m["agent_id"] for m in matches} == {a["agent_id"] for a in shell}
            assert await client.match_capabilities(["teleport"]) == []
            with pytest.raises(CallFailed, match="no agent 'nobody'"):
                await client.get_agent_health("nobody")

            usage = await client.get_resource_usage()
            assert usage["pools"]
            await client.set_quotas({"tenant-q": {"cpu": 1, "max_allocations": 1}})
            granted = await client.allocate_resources(
                {"resources": {"cpu": 1, "memory_mb": 256}, "tenant": "tenant-q"}
            )
            assert granted["type"] == "resource.allocated", granted
            over = await client.allocate_resources(
                {"resources": {"cpu": 4, "memory_mb": 256}, "tenant": "tenant-q"}
            )
            assert over["type"] == "resource.denied", over
            assert "quota" in over["reason"]
            released = await client.release_resources(granted["allocation_id"])
            assert released["released"] is True
            tenants = {t["tenant"]: t for t in (await client.get_resource_usage())["tenants"]}
            assert tenants["tenant-q"]["allocations"] == 0
            assert tenants["tenant-q"]["quota"]["max_allocations"] == 1

            with pytest.raises(CallFailed, match="no method 'teleport'"):
                await client.call("task-planner", "teleport")
            with pytest.raises(CallFailed, match=r"bad arguments|'plan' must be an object"):
                await client.call("task-planner", "validate_plan", {"plan": 42})
            with pytest.raises(CallFailed, match="has no history"):
                await client.get_workflow_status("wf-does-not-exist")

            env = settings.to_env()
            unknown = await asyncio.to_thread(
                run_mesh, "pause", "wf-does-not-exist", "--timeout", "60", env=env
            )
            assert "Workflow Manager:" in assert_one_line_error(unknown)
            done = await asyncio.to_thread(
                run_mesh, "resume", run.workflow_id, "--json", "--timeout", "60", env=env
            )
            assert done.code != 0 or json.loads(done.stdout)["workflow_id"] == run.workflow_id

    async def test_a_call_nobody_answers_names_the_component_to_start(
        self,
        settings: Settings,
    ) -> None:
        settings = settings.model_copy(update={"topic_prefix": f"idle{uuid.uuid4().hex[:8]}."})
        await apply_topics(
            settings, load_topics(ROOT / "topics", prefix=settings.topic_prefix).topics
        )
        async with Client(settings) as client:
            with pytest.raises(NoAnswer, match="mesh run planner"):
                await client.call("task-planner", "plan_task", {"request": REQUEST}, within=2)
            with pytest.raises(NoAnswer, match="mesh run agents"):
                await client.call("agent-manager", "get_agent_health", within=2)
        timed_out = await asyncio.to_thread(
            run_mesh, "cancel", "wf-x", "--timeout", "2", env=settings.to_env()
        )
        line = assert_one_line_error(timed_out)
        assert "no Workflow Manager answered within 2 s" in line
