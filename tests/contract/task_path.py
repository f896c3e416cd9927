"""The whole task path with real processes (planner, Workflow Manager, Agent Manager, command
agents) on a broker: the example diamond through ``mesh submit --wait --json``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from mesh.replay import replay_workflow
from mesh.settings import Settings
from tests.contract.brokers import Contract
from tests.e2e import ROOT, dead_letter_count, running_mesh
from tests.helpers import run_mesh


class TaskPathContract(Contract):
    """A request's whole path, from submit to a replayable history."""

    async def test_the_diamond_completes(self, settings: Settings) -> None:
        await check_diamond(settings, exact_offsets=self.broker.exact_offsets)


async def check_diamond(
    settings: Settings,
    *,
    exact_offsets: bool,
    topics_dir: Path = ROOT / "topics",
    logins: Mapping[str, tuple[str, SecretStr]] | None = None,
    client: Settings | None = None,
) -> None:
    """The diamond completes, D gets B's and C's outputs, the history is in order, replay equals
    the live snapshot — through the real `mesh submit --wait --json` command. Also run by the
    cluster and secured-listener tiers, on their own topics and settings, and by the ACL tier
    with each role's own ``logins`` and the ``client``'s settings for `mesh submit`."""
    async with running_mesh(
        settings, topics_dir=topics_dir, shell_agents=2, python_agents=0, logins=logins or {}
    ):
        run = await asyncio.to_thread(
            run_mesh,
            "submit",
            str(ROOT / "examples" / "diamond.yaml"),
            "--wait",
            "--json",
            env=(client or settings).to_env(),
            timeout=240,
        )
        assert run.code == 0, run.stderr
        result = json.loads(run.stdout)
        assert result["status"] == "completed"
        outputs = {task["task_id"]: task["output"] for task in result["tasks"]}
        assert outputs["D"]["json"] == {"joined": "HELLO olleh"}
        workflow_id = result["workflow_id"]
        replay = await replay_workflow(settings, workflow_id)
    assert replay.equal is True, replay.differences
    assert replay.state.status == "completed"
    seq = [(e.type, getattr(e, "task_id", None)) for e in replay.events]
    assert seq[0] == ("workflow.started", None)
    assert seq[-1] == ("workflow.completed", None)
    assert [e.sequence for e in replay.events] == list(range(1, len(replay.events) + 1))

    def at(kind: str, task: str) -> int:
        return seq.index((kind, task))

    assert at("task.completed", "A") < at("task.scheduled", "B")
    assert at("task.completed", "A") < at("task.scheduled", "C")
    assert at("task.completed", "B") < at("task.scheduled", "D")
    assert at("task.completed", "C") < at("task.scheduled", "D")
    for task in "ABCD":
        assert at("task.scheduled", task) < at("task.assigned", task) < at("task.started", task)
        assert at("task.started", task) < at("task.completed", task)
    if exact_offsets:  # Tansu's ListOffsets is not exact; real Kafka's is
        assert await dead_letter_count(settings) == 0
