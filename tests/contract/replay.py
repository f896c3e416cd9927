"""Replay for debugging, status, watch and list against a real broker, with real ``mesh``
subprocesses, on workflows a real mesh (Workflow Manager, Agent Manager, command agents) ran: one
mesh for the whole class. ``--until TIME`` works on every broker alike (by record timestamps
where the broker cannot look offsets up by time)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mesh.events import WorkflowEvent, WorkflowSnapshot
from mesh.replay import from_millis
from mesh.settings import Settings
from mesh.workflows import fold
from tests._wm_support import of_type, publisher, reader
from tests.contract.brokers import Contract
from tests.e2e import ROOT, plan_file, running_mesh, submit, wait_final
from tests.helpers import Run, assert_one_line_error, run_mesh

NO_TIME_LOOKUP = "does not look up offsets by time"


@dataclass
class World:
    """A mesh on one broker under a fresh prefix, and one diamond workflow it completed."""

    settings: Settings
    workflow_id: str
    events: list[WorkflowEvent]
    tmp: Path

    @property
    def env(self) -> dict[str, str]:
        return {**self.settings.to_env(), "COLUMNS": "200"}

    async def mesh(self, *args: str, stdin: str | None = None) -> Run:
        return await asyncio.to_thread(run_mesh, *args, env=self.env, stdin=stdin, timeout=180)

    async def json(self, *args: str, code: int = 0) -> Any:
        run = await self.mesh(*args, "--json")
        assert run.code == code, (run.code, run.stdout, run.stderr)
        return json.loads(run.stdout)


@contextlib.asynccontextmanager
async def world(bootstrap_servers: str, tmp: Path) -> AsyncIterator[World]:
    """Start the mesh, run the example diamond to completion, and keep the mesh running."""
    settings = Settings(
        bootstrap_servers=bootstrap_servers, topic_prefix=f"t{uuid.uuid4().hex[:10]}."
    )
    async with running_mesh(settings, shell_agents=2, python_agents=0):
        submitted = await submit(settings, ROOT / "examples" / "diamond.yaml")
        state, events = await wait_final(settings, submitted)
        assert state.status == "completed"
        yield World(settings, submitted.workflow_id, events, tmp)


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {t["task_id"]: t["status"] for t in document["tasks"]}


async def _record_times(w: World) -> list[int]:
    path = w.tmp / f"times-{uuid.uuid4().hex[:6]}.jsonl"
    exported = await w.json("replay", w.workflow_id, "--export", str(path))
    assert exported["exported"] == len(w.events)
    return [json.loads(line)["timestamp_ms"] for line in path.read_text().splitlines()]


async def _last_snapshot(w: World) -> WorkflowSnapshot:
    async with reader(w.settings, "workflow.state") as state:
        found = of_type(await state.drain(), WorkflowSnapshot)
    mine: list[WorkflowSnapshot] = [s for s in found if s.workflow_id == w.workflow_id]
    return mine[-1]


def _gate_plan(gate: Path) -> dict[str, Any]:
    """A holds until the gate file exists (polled by the task itself); B follows A."""
    wait = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]):\n    time.sleep(0.05)"
    return {
        "workflow_type": "dag",
        "tasks": [
            {
                "id": "A",
                "capabilities": ["shell"],
                "command": [sys.executable, "-c", wait, str(gate)],
            },
            {"id": "B", "capabilities": ["shell"], "depends_on": ["A"], "command": ["true"]},
        ],
    }


class ReplayContract(Contract):
    """``mesh replay``, ``status``, ``list`` and ``watch`` on workflows a real mesh ran."""

    @pytest.fixture(scope="class")
    @classmethod
    async def w(
        cls, bootstrap_servers: str, tmp_path_factory: pytest.TempPathFactory
    ) -> AsyncIterator[World]:
        """One mesh and its completed diamond for every case of the class."""
        async with world(bootstrap_servers, tmp_path_factory.mktemp("replay")) as running:
            yield running

    async def test_replay_shows_a_timeline_and_equals_live(self, w: World) -> None:
        """``mesh replay ID`` folds the whole history, shows it as a timeline, equals live."""
        document = await w.json("replay", w.workflow_id)
        assert (document["status"], document["equal"], document["differences"]) == (
            "completed",
            True,
            [],
        )
        assert document["event_count"] == len(w.events)
        assert [s["type"] for s in document["timeline"]] == [e.type for e in w.events]
        assert document["timeline"][-1]["change"] == "workflow: running → completed"
        assert all(isinstance(s["offset"], int) for s in document["timeline"])
        text = await w.mesh("replay", w.workflow_id)
        assert text.code == 0, text.stderr
        assert "replay equals the live snapshot" in text.stdout
        assert "task A: pending → ready (attempt 1)" in text.stdout

    async def test_until_event_and_until_offset(self, w: World) -> None:
        """``--until-event N`` shows the state after exactly N events; ``--until-offset`` stops
        after the record at that offset."""
        document = await w.json("replay", w.workflow_id, "--until-event", "4")
        expected = fold(w.events[:4])
        assert expected is not None
        assert (document["event_count"], document["sequence"], document["equal"]) == (4, 4, None)
        assert statuses(document) == {t: s.status for t, s in expected.tasks.items()}
        full = await w.json("replay", w.workflow_id)
        sixth = full["timeline"][5]["offset"]
        cut = await w.json("replay", w.workflow_id, "--until-offset", str(sixth))
        assert cut["event_count"] == 6
        assert cut["timeline"][-1]["offset"] == sixth

    async def test_until_time_replays_the_prefix_up_to_that_time(self, w: World) -> None:
        """``--until TIME`` replays the workflow's history up to its first event stamped after TIME
        (a prefix, so the folded state is one the workflow really had), on every broker alike."""
        stamps = await _record_times(w)
        middle = stamps[len(stamps) // 2]
        expected = next((i for i, stamp in enumerate(stamps) if stamp > middle), len(stamps))
        assert expected < len(stamps), stamps
        at = from_millis(middle).isoformat()
        run = await w.mesh("replay", w.workflow_id, "--until", at, "--json")
        assert run.code == 0, run.stderr
        document = json.loads(run.stdout)
        assert document["event_count"] == expected, (stamps, middle, run.stderr)
        assert document["stopped_early"] is True
        assert document["notes"] == []
        assert NO_TIME_LOOKUP not in run.stderr
        before = from_millis(stamps[0] - 60_000).isoformat()
        line = assert_one_line_error(await w.mesh("replay", w.workflow_id, "--until", before))
        assert "has no history" in line

    async def test_export_then_from_file_gives_the_same_final_state(self, w: World) -> None:
        """An exported history replayed with --from-file gives the same final state."""
        path = w.tmp / "diamond.jsonl"
        exported = await w.json("replay", w.workflow_id, "--export", str(path))
        assert exported == {
            "workflow_id": w.workflow_id,
            "exported": len(w.events),
            "payloads": 0,  # the diamond's outputs are small: none by reference
            "file": str(path),
        }
        from_broker = await w.json("replay", w.workflow_id)
        offline = await asyncio.to_thread(
            run_mesh,
            "replay",
            "--from-file",
            str(path),
            "--json",
            env={"MESH_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
        )
        assert offline.code == 0, offline.stderr
        from_file = json.loads(offline.stdout)
        assert from_file["state"] == from_broker["state"]
        assert from_file["timeline"] == from_broker["timeline"]

    async def test_step_through_stdin(self, w: World) -> None:
        """--step reads next / previous / jump from stdin and shows the state after each event."""
        run = await w.mesh("replay", w.workflow_id, "--step", "--json", stdin="n\nn\np\nj 7\nq\n")
        assert run.code == 0, run.stderr
        shown = [json.loads(line) for line in run.stdout.splitlines()]
        assert [s["position"] for s in shown] == [1, 2, 3, 2, 7]
        for step in shown:
            expected = fold(w.events[: step["position"]])
            assert expected is not None
            assert statuses(step["state"]) == {t: s.status for t, s in expected.tasks.items()}

    async def test_diff_live_and_shadow_replay_report_a_tampered_snapshot(self, w: World) -> None:
        """--diff-live and the shadow replay (--all) agree with live, then each reports a tampered
        snapshot (field path, the workflow, exit 1), then agree again once it is restored."""
        assert (await w.json("replay", w.workflow_id, "--diff-live"))["equal"] is True
        shadow = await w.json("replay", "--all")
        assert w.workflow_id in shadow["projection"]
        assert shadow["projection"][w.workflow_id] == {
            "status": "completed",
            "sequence": len(w.events),
        }
        assert (shadow["differing_count"], shadow["compared"] >= 1) == (0, True)
        assert shadow["events_folded"] >= len(w.events)
        original = await _last_snapshot(w)
        tampered_state = json.loads(json.dumps(original.state))
        tampered_state["tasks"]["B"]["attempt"] = 7
        tampered = original.model_copy(update={"state": tampered_state})
        async with publisher(w.settings) as out:
            await out.send("workflow.state", tampered)
        try:
            diff = await w.json("replay", w.workflow_id, "--diff-live", code=1)
            assert diff["differences"] == [{"path": "tasks.B.attempt", "snapshot": 7, "replay": 1}]
            text = await w.mesh("replay", w.workflow_id, "--diff-live")
            assert text.code == 1
            assert "tasks.B.attempt" in text.stdout
            shadow = await w.json("replay", "--all", code=1)
            assert (shadow["differing_count"], shadow["differing"]) == (1, [w.workflow_id])
            assert shadow["differences"][w.workflow_id][0]["path"] == "tasks.B.attempt"
        finally:
            async with publisher(w.settings) as out:
                await out.send("workflow.state", original)
        assert (await w.json("replay", w.workflow_id, "--diff-live"))["equal"] is True

    async def test_shadow_replay_is_bounded_by_its_window(self, w: World) -> None:
        """--since/--until bound the shadow replay: a window after everything holds no workflow;
        one ending mid-history folds the diamond only up to that point."""
        stamps = await _record_times(w)
        later = from_millis(stamps[-1] + 3_600_000).isoformat()
        empty = await w.json("replay", "--all", "--since", later, "--until", later)
        assert (empty["workflows"], empty["differing_count"]) == (0, 0)
        middle = stamps[len(stamps) // 2]
        expected = sum(1 for s in stamps if s <= middle)
        since = from_millis(stamps[0]).isoformat()
        window = await w.json(
            "replay", "--all", "--since", since, "--until", from_millis(middle).isoformat()
        )
        assert window["projection"][w.workflow_id]["sequence"] == expected
        assert window["differing_count"] == 0
        text = await w.mesh("replay", "--all")
        assert text.code == 0, text.stderr
        assert "events/s" in text.stdout
        assert "no difference" in text.stdout

    async def test_status_list_and_watch_a_running_workflow(self, w: World) -> None:
        """status shows a running workflow's tasks from snapshot + history tail; list filters by
        status; watch follows it live until it completes (exit 0)."""
        gate = w.tmp / f"gate-{uuid.uuid4().hex[:6]}"
        submitted = await submit(w.settings, plan_file(w.tmp, _gate_plan(gate), "gate.yaml"))
        wid = submitted.workflow_id
        latest: dict[str, Any] = {}

        async def poll() -> None:
            run = await w.mesh("status", wid, "--json")
            if run.code == 0:
                latest.update(json.loads(run.stdout))

        deadline = asyncio.get_running_loop().time() + 120
        while not latest or statuses(latest).get("A") != "running":
            assert asyncio.get_running_loop().time() < deadline, f"A never ran: {latest}"
            await poll()
        assert latest["status"] == "running"
        task_a = latest["tasks"][0]
        assert (task_a["task_id"], task_a["attempt"]) == ("A", 1)
        assert task_a["agent_id"]
        assert task_a["started_at"] is not None
        assert "waiting_reason" in task_a
        assert statuses(latest)["B"] == "pending"
        text = await w.mesh("status", wid)
        assert text.code == 0, text.stderr
        assert "running" in text.stdout
        running = await w.json("list", "--status", "running")
        assert wid in [r["workflow_id"] for r in running["workflows"]]
        assert w.workflow_id not in [r["workflow_id"] for r in running["workflows"]]
        everything = await w.json("list")
        assert {w.workflow_id, wid} <= {r["workflow_id"] for r in everything["workflows"]}
        watcher = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mesh",
            "watch",
            wid,
            env={**os.environ, **w.env, "PYTHONUNBUFFERED": "1"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert watcher.stdout is not None
            first = await asyncio.wait_for(watcher.stdout.readline(), 60)
            assert b"watching workflow" in first, first
            gate.touch()
            out, err = await asyncio.wait_for(watcher.communicate(), 120)
        finally:
            if watcher.returncode is None:
                watcher.kill()
                await watcher.wait()
        assert watcher.returncode == 0, err.decode()
        assert f"workflow {wid} completed" in out.decode()
        assert "task.completed" in out.decode()
        done = await w.json("status", wid)
        assert (done["status"], statuses(done)) == (
            "completed",
            {"A": "succeeded", "B": "succeeded"},
        )

    async def test_unknown_workflow_is_one_line(self, w: World) -> None:
        for args in (
            ("status", "wf-nobody"),
            ("watch", "wf-nobody"),
            ("replay", "wf-nobody", "--diff-live"),
        ):
            line = assert_one_line_error(await w.mesh(*args))
            assert "wf-nobody has no history" in line
