"""Issue 15, output that streams and is kept, on real Apache Kafka with real processes: a failing
task's stdout and stderr, every attempt's, in ``mesh status WF --task T --json``; ``mesh logs``
shows a running command agent's lines before it ends, and refuses a bad id in one line."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

from mesh.settings import Settings
from tests._agents_support import mesh_process
from tests.e2e import plan_file, running_mesh, submit, wait_final, wait_for
from tests.helpers import Run, assert_one_line_error, run_mesh

_FAIL = (
    "import sys; print('out of attempt', sys.argv[1]); "
    "sys.stderr.write('err of attempt ' + sys.argv[1] + '\\n'); sys.exit(3)"
)


def _failing_plan() -> dict[str, Any]:
    return {
        "tasks": [
            {
                "id": "fails",
                "capabilities": ["shell"],
                "command": [sys.executable, "-c", _FAIL, "{attempt}"],
                "retry": {"max_attempts": 2, "backoff": {"initial_seconds": 0.2}, "jitter": 0.0},
            }
        ]
    }


async def test_a_failing_tasks_output_is_kept_and_shown(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """Both failed attempts keep their exit code, stdout and stderr, shown by status --task
    --json; mesh logs shows the same lines from tasks.output; bad ids are one-line errors."""
    env = kafka_settings.to_env()

    async def mesh(*args: str) -> Run:
        return await asyncio.to_thread(run_mesh, *args, env=env, timeout=120)

    async with running_mesh(kafka_settings, shell_agents=1, python_agents=0, resources=False):
        submitted = await submit(kafka_settings, plan_file(tmp_path, _failing_plan()))
        state, _ = await wait_final(kafka_settings, submitted)
    assert state.status == "failed"
    workflow_id = submitted.workflow_id

    shown = await mesh("status", workflow_id, "--task", "fails", "--json")
    assert shown.code == 0, shown.stderr
    task = json.loads(shown.stdout)
    assert (task["task_id"], task["status"], task["attempt"]) == ("fails", "failed", 2)
    assert [
        (a["attempt"], a["outcome"], a["exit_code"], a["stdout"], a["stderr"])
        for a in task["attempts"]
    ] == [
        (1, "failed", 3, "out of attempt 1\n", "err of attempt 1\n"),
        (2, "failed", 3, "out of attempt 2\n", "err of attempt 2\n"),
    ]
    human = await mesh("status", workflow_id, "--task", "fails")
    assert human.code == 0, human.stderr
    assert "err of attempt 2" in human.stdout

    logs = await mesh("logs", workflow_id, "fails", "--attempt", "2")
    assert logs.code == 0, logs.stderr
    assert sorted(logs.stdout.splitlines()) == [
        "fails#2 stderr | err of attempt 2",
        "fails#2 stdout | out of attempt 2",
    ]
    chunks = await mesh("logs", workflow_id, "--json")
    assert chunks.code == 0, chunks.stderr
    texts = {
        (c["attempt"], c["stream"], c["text"]) for c in map(json.loads, chunks.stdout.splitlines())
    }
    assert texts == {
        (n, stream, f"{word} of attempt {n}\n")
        for n in (1, 2)
        for stream, word in (("stdout", "out"), ("stderr", "err"))
    }

    assert "no task 'nope'" in assert_one_line_error(
        await mesh("status", workflow_id, "--task", "nope")
    )
    assert "no task 'nope'" in assert_one_line_error(await mesh("logs", workflow_id, "nope"))
    assert "no attempt 3" in assert_one_line_error(
        await mesh("logs", workflow_id, "fails", "--attempt", "3")
    )
    assert "wf-nope" in assert_one_line_error(await mesh("logs", "wf-nope"))


async def test_logs_follow_and_submit_wait_show_a_running_agents_line_before_it_ends(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """The agent prints a line, then waits for a file that the test creates only after
    ``mesh logs --follow`` and a piped ``mesh submit --wait`` have shown that line; both then
    end with the workflow."""
    started, go = tmp_path / "started", tmp_path / "go"
    code = (
        "import os, pathlib, sys, time\n"
        "print('waiting for go', flush=True)\n"
        "pathlib.Path(sys.argv[1]).touch()\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.05)\n"
        "print('done')\n"
    )
    plan = {
        "tasks": [
            {
                "id": "slow",
                "capabilities": ["shell"],
                "command": [sys.executable, "-c", code, str(started), str(go)],
            }
        ]
    }
    workflow_id = f"wf-logs-{uuid.uuid4().hex[:8]}"
    submit_args = ["submit", str(plan_file(tmp_path, plan)), "--workflow-id", workflow_id]
    async with running_mesh(kafka_settings, shell_agents=1, python_agents=0, resources=False):
        with mesh_process(kafka_settings, "submit", [*submit_args, "--wait"], tmp_path) as waits:
            await wait_for(started.exists, within=120, what="the agent to start the task")
            args = ["logs", workflow_id, "slow", "--follow"]
            with mesh_process(kafka_settings, "logs", args, tmp_path) as follow:
                await wait_for(
                    lambda: "slow#1 stdout | waiting for go" in follow.output(),
                    within=60,
                    what="mesh logs --follow to show the running agent's line",
                )
                await wait_for(
                    lambda: (
                        re.search(r" task\.output +slow waiting for go$", waits.output(), re.M)
                        is not None
                    ),
                    within=60,
                    what="submit --wait to show the running agent's last line",
                )
                # Shown while the agent runs: it cannot end before the file exists.
                assert (follow.process.poll(), waits.process.poll()) == (None, None)
                go.touch()
                assert await asyncio.to_thread(follow.exited, 60) == 0, follow.output()
                assert await asyncio.to_thread(waits.exited, 60) == 0, waits.output()
    assert follow.output().splitlines() == [
        "slow#1 stdout | waiting for go",
        "slow#1 stdout | done",
    ]
    assert f"workflow {workflow_id} completed" in waits.output()
