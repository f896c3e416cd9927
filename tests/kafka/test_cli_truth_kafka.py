"""Issue 13 on real Apache Kafka, where offsets by timestamp work and end offsets are exact:
every command that takes a time reads the same forms (``10m`` as ``replay --since`` reads it),
``groups reset --dry-run`` plans while the group has members, and commands the Workflow Manager
refuses leave the dead-letter topic empty."""

from __future__ import annotations

import asyncio
import json

from mesh.settings import Settings
from tests.e2e import ROOT, dead_letter_count, running_mesh
from tests.helpers import Run, assert_one_line_error, run_mesh


async def test_times_read_alike_dry_runs_plan_and_refusals_are_no_dead_letters(
    kafka_settings: Settings,
) -> None:
    env = kafka_settings.to_env()

    async def mesh(*args: str) -> Run:
        return await asyncio.to_thread(run_mesh, *args, env=env, timeout=240)

    async with running_mesh(kafka_settings, shell_agents=2, python_agents=0, resources=False):
        run = await mesh("submit", str(ROOT / "examples" / "diamond.yaml"), "--wait", "--json")
        assert run.code == 0, run.stderr
        workflow_id = json.loads(run.stdout)["workflow_id"]

        # One reader of times: "10m" is ten minutes ago for tail, groups reset and replay.
        tail = await mesh(
            *("tail", "workflow.events", "--from-time", "10m", "--until-end", "--json"),
            *("--workflow", workflow_id),
        )
        assert tail.code == 0, tail.stderr
        events = [json.loads(line) for line in tail.stdout.splitlines()]
        assert events[0]["type"] == "workflow.started"
        assert events[-1]["type"] == "workflow.completed"
        shadow = await mesh("replay", "--all", "--since", "10m", "--until", "now", "--json")
        assert shadow.code == 0, shadow.stderr
        assert workflow_id in shadow.stdout

        # The Workflow Manager runs: a reset is refused, its dry run is planned and says why.
        dry = await mesh("groups", "reset", "workflows", "--to-time", "10m", "--dry-run", "--json")
        assert dry.code == 0, dry.stderr
        planned = json.loads(dry.stdout)
        assert planned["dry_run"] is True
        assert planned["members"], planned
        assert planned["to_time"].endswith("Z")
        assert "T" in planned["to_time"]
        assert planned["partitions"]
        assert all(p["target"] <= p["current"] for p in planned["partitions"])
        human = await mesh("groups", "reset", "workflows", "--to-time", "10m", "--dry-run")
        assert "active member" in human.stdout
        busy = await mesh("groups", "reset", "workflows", "--to-time", "10m")
        assert "active member" in assert_one_line_error(busy)

        # Refusals are answers: one line each, and nothing lands in the dead-letter topic.
        for args in (("pause", "wf-nope"), ("cancel", "wf-nope"), ("retry", workflow_id, "zz")):
            line = assert_one_line_error(await mesh(*args))
            assert "Workflow Manager:" in line
    assert await dead_letter_count(kafka_settings) == 0
