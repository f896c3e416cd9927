"""``Client.submit`` takes the path of ``mesh submit``: a ``TaskRequest`` on ``requests``, planned
by the Task Planner under the workflow id derived from the request id, followed to its end — with
mesh dev's real processes (planner, Workflow Manager, Agent Manager, command agents).
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from mesh import Client, NoAnswer
from mesh.client import load_plan_file
from mesh.errors import RequestRejected
from mesh.events import ExternalEvent, TaskRequest
from mesh.planner import workflow_id_for
from mesh.settings import Settings
from tests.contract.brokers import Contract
from tests.contract.planner import everything_in, prepare
from tests.e2e import running_mesh
from tests.helpers import run_mesh

REQUEST = {"type": "bugfix", "description": "Fix the login timeout"}

TRIGGERED = """
workflow_type: event_driven
tasks:
  - id: deploy
    capabilities: [shell]
    trigger: approved
    command: [python3, -c, "import sys; print(sys.argv[1])", "{inputs.event.by}"]
"""


class ClientContract(Contract):
    """``Client.submit`` and what a client sees when nobody plans its request."""

    async def test_submit_publishes_a_request_and_follows_the_workflow_planned_for_it(
        self,
        settings: Settings,
    ) -> None:
        request_id = f"req-{uuid.uuid4().hex[:10]}"
        async with (
            running_mesh(settings, shell_agents=2, python_agents=0),
            Client(settings, timeout=120) as client,
        ):
            run = await client.submit({**REQUEST, "id": request_id})
            assert (run.workflow_id, run.request_id) == (workflow_id_for(request_id), request_id)
            assert run.plan is not None
            assert run.plan.tasks
            final = await run.wait(within=240)
            assert final.status == "completed", final.reason
            assert set(final.tasks) == {t.task_id for t in run.plan.tasks}

            # The same request again is the same workflow (the planner derives its id), not a
            # new one.
            again = await client.submit({**REQUEST, "id": request_id})
            assert again.workflow_id == run.workflow_id

            with pytest.raises(RequestRejected) as rejected:
                await client.submit({"type": "teleport", "description": "no template knows it"})
            assert rejected.value.kind == "unknown_type"
            assert str(rejected.value).startswith("request req-")

            # A plan of one's own, and the event it waits for, sent by `mesh signal` (the client
            # too).
            plan = load_plan_file("triggered.yaml", text=TRIGGERED)
            waiting = await client.start_workflow(plan.plan)
            assert waiting.plan is not None
            assert waiting.plan.plan_id == waiting.workflow_id  # the file named no workflow
            signal = await asyncio.to_thread(
                run_mesh,
                *(
                    "signal",
                    waiting.workflow_id,
                    "approved",
                    "--payload",
                    '{"by": "alice"}',
                    "--json",
                ),
                env=settings.to_env(),
            )
            assert signal.code == 0, signal.stderr
            assert json.loads(signal.stdout)["name"] == "approved"
            done = await waiting.wait(within=120)
            assert done.status == "completed", done.reason
            assert "alice" in str(done.tasks["deploy"].output)

        requests = [
            e for e in await everything_in(settings, "requests") if isinstance(e, TaskRequest)
        ]
        mine = [r for r in requests if r.request_id == request_id]
        assert len(mine) == 2
        assert {(r.task_type, r.description, r.correlation_id) for r in mine} == {
            ("bugfix", "Fix the login timeout", request_id)
        }
        signals = [
            e for e in await everything_in(settings, "commands") if isinstance(e, ExternalEvent)
        ]
        assert [(e.workflow_id, e.name, e.payload) for e in signals] == [
            (waiting.workflow_id, "approved", {"by": "alice"})
        ]

    async def test_a_request_nobody_plans_is_no_answer_naming_the_planner(
        self, settings: Settings
    ) -> None:
        await prepare(settings)
        async with Client(settings) as client:
            with pytest.raises(
                NoAnswer, match=r"no plan for workflow wf-\w+ within 2 s.*mesh run planner"
            ):
                await client.submit({**REQUEST, "id": "req-unplanned"}, within=2)
            # Without waiting for the plan, submitting only publishes: the handle is there at once.
            run = await client.submit({**REQUEST, "id": "req-unplanned-2"}, planned=False)
            assert (run.workflow_id, run.plan) == (workflow_id_for("req-unplanned-2"), None)
        published = await everything_in(settings, "requests")
        # Two keys, so two partitions in any order.
        assert sorted(e.request_id for e in published if isinstance(e, TaskRequest)) == [
            "req-unplanned",
            "req-unplanned-2",
        ]
