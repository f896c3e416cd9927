"""Inputs that flow and cancellation that reaches the agent, on real Apache Kafka with real
processes (Workflow Manager, Agent Manager, ``mesh agent run`` command agents):

- a three-task chain whose commands take the previous task's stdout (``{inputs.<prev>.stdout}``)
  and the whole inputs file (``MESH_INPUTS_FILE``); a placeholder naming nothing fails its task
  once, with the placeholder in the error;
- cancelling a workflow during a ``sleep 600`` stops the agent's whole process group (SIGTERM,
  then SIGKILL for a process that ignores it), and the history shows the attempt cancelled and
  nothing completed after."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from mesh.client import send_command
from mesh.events import Event, TaskCancelled, TaskCompleted, TaskFailed, WorkflowCancelled
from mesh.settings import Settings
from tests._agents_support import reader
from tests.e2e import (
    history_of,
    pid_alive,
    plan_file,
    running_mesh,
    submit,
    wait_final,
    wait_for,
)

PY = "python3"


def _task(task_id: str, code: str, *args: str, after: str | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {
        "id": task_id,
        "capabilities": ["shell"],
        "command": [PY, "-c", code, *args],
        "retry": {"max_attempts": 2, "backoff": {"initial_seconds": 0.1}, "jitter": 0.0},
    }
    if after is not None:
        task["depends_on"] = [after]
    return task


READ_INPUTS_FILE = (
    "import json, os, sys\n"
    "inputs = json.load(open(os.environ['MESH_INPUTS_FILE']))\n"
    "print(json.dumps({'final': sys.argv[1].strip() + '-gamma',\n"
    "                  'from_file': inputs['upstream']['second']['stdout'].strip(),\n"
    "                  'upstream': sorted(inputs['upstream'])}))\n"
)


async def test_a_chain_passes_each_output_on_and_a_missing_input_fails_clearly(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    chain = plan_file(
        tmp_path,
        {
            "workflow_type": "dag",
            "tasks": [
                _task("first", "print('alpha')"),
                _task(
                    "second",
                    "import sys; print(sys.argv[1].strip() + '-beta')",
                    "{inputs.first.stdout}",
                    after="first",
                ),
                _task("third", READ_INPUTS_FILE, "{inputs.second.stdout}", after="second"),
            ],
        },
        name="chain.yaml",
    )
    ran = tmp_path / "ran"
    broken = plan_file(
        tmp_path,
        {
            "tasks": [
                _task("first", "print('alpha')"),
                _task(
                    "uses-ghost",
                    "import sys; open(sys.argv[1], 'w')",
                    str(ran),
                    "{inputs.ghost.stdout}",
                    after="first",
                ),
            ]
        },
        name="broken.yaml",
    )
    async with running_mesh(kafka_settings, shell_agents=2, python_agents=0, planner=False):
        submitted = await asyncio.gather(
            submit(kafka_settings, chain), submit(kafka_settings, broken)
        )
        (chained, _), (failed, events) = await asyncio.gather(
            *(wait_final(kafka_settings, s) for s in submitted)
        )

    assert chained.status == "completed", chained.reason
    assert chained.tasks["second"].output["stdout"] == "alpha-beta\n"
    assert chained.tasks["third"].output["json"] == {
        "final": "alpha-beta-gamma",
        "from_file": "alpha-beta",
        "upstream": ["second"],
    }

    assert failed.status == "failed"
    failures = [e for e in events if isinstance(e, TaskFailed) and e.task_id == "uses-ghost"]
    assert len(failures) == 1  # not retried: no attempt could find the input
    [failure] = failures
    assert failure.error_kind == "bad_template"
    assert failure.retriable is False
    assert failure.message.startswith("{inputs.ghost.stdout}: ")
    assert "no upstream task 'ghost' (upstream tasks: first)" in failure.message
    assert not ran.exists()  # the command never ran with a literal placeholder


# A parent that ignores SIGTERM (only the SIGKILL after the grace ends it) and a `sleep 600`
# child in its process group; both write their pids.
SLEEPER = (
    "import os, signal, subprocess, sys\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen(['sleep', '600'], preexec_fn=lambda: signal.signal(\n"
    "    signal.SIGTERM, signal.SIG_DFL))\n"
    "open(sys.argv[1], 'w').write('%d %d' % (os.getpid(), child.pid))\n"
    "child.wait()\n"
)


def _group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def _pids(path: Path) -> tuple[int, int] | None:
    try:
        parent, child = path.read_text().split()
    except (OSError, ValueError):
        return None
    return int(parent), int(child)


async def test_cancelling_a_workflow_stops_the_agents_whole_process_group(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    path = plan_file(tmp_path, {"tasks": [_task("long", SLEEPER, str(pid_file))]})
    async with running_mesh(kafka_settings, shell_agents=1, python_agents=0, planner=False):
        submitted = await submit(kafka_settings, path)
        await wait_for(lambda: _pids(pid_file) is not None, within=120, what="the command")
        pids = _pids(pid_file)
        assert pids is not None
        leader, child = pids
        assert os.getpgid(child) == leader  # the command leads its own group
        assert pid_alive(leader)
        assert pid_alive(child)

        await send_command(kafka_settings, "cancel", submitted.workflow_id, reason="test")
        state, _ = await wait_final(kafka_settings, submitted)
        # SIGTERM, then SIGKILL after the agent's grace (2 s): nothing of the group is left.
        await wait_for(
            lambda: not _group_members(leader), within=30, what=f"process group {leader} to end"
        )
        assert not pid_alive(leader)
        assert not pid_alive(child)
        history = await history_of(kafka_settings, submitted.workflow_id)
        async with reader(kafka_settings, "tasks.results") as results:
            # The agent reports the attempt it stopped: as cancelled, never as a success.
            reports = await results.until(
                lambda seen: any(_of(e, submitted.workflow_id, TaskFailed) for e in seen),
                what="the agent's report of the cancelled attempt",
            )

    assert state.status == "cancelled"
    assert state.tasks["long"].status == "cancelled"
    kinds = [type(e) for e in history]
    assert WorkflowCancelled in kinds
    [cancelled] = [e for e in history if isinstance(e, TaskCancelled)]
    assert (cancelled.task_id, cancelled.attempt) == ("long", 1)
    after = history[history.index(cancelled) :]
    assert not [e for e in after if isinstance(e, TaskCompleted)]
    assert not [e for e in history if isinstance(e, TaskCompleted)]
    [report] = [e for e in reports if _of(e, submitted.workflow_id, TaskFailed)]
    assert isinstance(report, TaskFailed)
    assert (report.error_kind, report.retriable) == ("cancelled", False)
    assert not [e for e in reports if _of(e, submitted.workflow_id, TaskCompleted)]


def _of(event: Event, workflow_id: str, kind: type[Event]) -> bool:
    return isinstance(event, kind) and getattr(event, "workflow_id", None) == workflow_id
