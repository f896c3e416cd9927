"""The README's kcat one-liner, run as written with Debian's kcat, publishes a request the planner
plans, on the partition mesh's own clients would choose for its key.

kcat comes from ``tooling/kcat/install`` (run by ``make test``); without it the test skips, except
under ``CI=true``, where a missing kcat is a failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mesh.client import WorkflowRun, history_cursor
from mesh.events import PlanCreated, TaskRequest
from mesh.kafka.partitions import partition_for
from mesh.planner import workflow_id_for
from mesh.settings import Settings
from mesh.topics import load_topics
from tests.contract.planner import prepare, read_until
from tests.e2e import running_mesh, wait_final

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    """The shell between the kcat markers of the README, without the code fence."""
    found = re.search(
        r"<!-- kcat-begin -->\n```bash\n(.*?)```\n<!-- kcat-end -->", README.read_text(), re.S
    )
    assert found, "README.md has no kcat snippet between <!-- kcat-begin --> and <!-- kcat-end -->"
    return found.group(1)


async def run(
    args: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A real process, off the event loop (the planner under test runs on it)."""
    return await asyncio.to_thread(
        subprocess.run,
        args,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kcat is not installed; `make test` installs it (tooling/kcat/install)")
        pytest.skip("kcat is not installed (tooling/kcat/install installs it as root)")
    return path


async def test_the_readme_kcat_one_liner_publishes_a_request_that_is_planned_and_completes(
    kafka_settings: Settings,
) -> None:
    kcat()
    env = {
        **os.environ,
        "MESH_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": kafka_settings.topic_prefix,
    }
    async with running_mesh(kafka_settings, shell_agents=2, python_agents=0):
        done = await run(["bash", "-euo", "pipefail", "-c", readme_snippet()], env=env)
        assert done.returncode == 0, done.stderr
        seen = await read_until(
            kafka_settings,
            ["requests", "plans"],
            lambda pairs: any(isinstance(e, PlanCreated) for _, e in pairs),
        )
        requests = [(key, e) for key, e in seen if isinstance(e, TaskRequest)]
        assert len(requests) == 1
        key, request = requests[0]
        assert key == request.request_id.encode()
        assert request.producer.component == "kcat"
        plans = [e for _, e in seen if isinstance(e, PlanCreated)]
        assert [p.workflow_id for p in plans] == [workflow_id_for(request.request_id)]
        cursor = await history_cursor(kafka_settings, plans[0].workflow_id, from_end=False)
        state, _ = await wait_final(
            kafka_settings,
            WorkflowRun(kafka_settings, plans[0].workflow_id, cursor),
            idle_timeout=180,
        )
    assert state.status == "completed", state.reason
    assert plans[0].plan is not None
    assert {t.task_id for t in plans[0].plan.tasks} == set(state.tasks)


async def test_kcat_with_murmur2_puts_a_key_where_mesh_does(kafka_settings: Settings) -> None:
    """What ``-X topic.partitioner=murmur2_random`` is for: kcat's default (CRC32) would not."""
    kcat()
    await prepare(kafka_settings)
    topic = kafka_settings.topic("requests")
    keys = [f"req-{i}" for i in range(24)]
    records = "".join(f"{key}\t{{}}\n" for key in keys)
    done = await run(
        [
            "kcat", "-P", "-b", kafka_settings.bootstrap_servers, "-t", topic, "-K", "\t",
            "-X", "topic.partitioner=murmur2_random",
        ],
        stdin=records,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = await run(
        ["kcat", "-C", "-b", kafka_settings.bootstrap_servers, "-t", topic, "-e", "-q",
         "-f", "%k %p\n"],
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    placed = dict(line.split() for line in listed.stdout.splitlines() if line.strip())
    assert set(placed) == set(keys)
    partitions = next(
        spec.partitions
        for spec in load_topics(README.parent / "topics", prefix="").topics
        if spec.name == "requests"
    )
    assert {k: int(p) for k, p in placed.items()} == {k: partition_for(k, partitions) for k in keys}
