"""The mesh rides out its only broker stopping for 15 s and starting again on the same storage.

Every component runs as a real process on a broker of the test's own (``lone_kafka``; the
session broker other tests share is never stopped). While the broker is down the components
must keep retrying; once it is back they must go on by themselves: no exit, no restart by hand,
no command run twice for one attempt.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mesh._aio import cancel_and_wait
from mesh.client import WorkflowRun
from mesh.dev import DevMesh
from mesh.replay import replay_workflow
from mesh.settings import Settings
from mesh.workflows import WorkflowState
from tests._fixtures.kafka import stop_broker
from tests.e2e import (
    history_of,
    layered_plan,
    plan_file,
    run_log_counts,
    running_mesh,
    submit,
    wait_final,
    wait_for,
)
from tooling.kafka.kafka_broker import ApacheKafka

OUTAGE_SECONDS = 15.0
WIDTH, DEPTH = 4, 10


async def _final_unless_one_exits(
    mesh: DevMesh, settings: Settings, submitted: WorkflowRun
) -> WorkflowState:
    """The workflow's final state; fails at once, with its last words, if a component process
    exits meanwhile (the fault this test is about), rather than waiting out the idle timeout."""
    final = asyncio.create_task(wait_final(settings, submitted, idle_timeout=120))
    try:
        while not final.done():
            gone = {n: c.lines[-8:] for n, c in mesh.supervisor.children.items() if not c.running}
            if gone:
                raise AssertionError(f"components exited after the broker restart: {gone}")
            await asyncio.wait([final], timeout=0.2)
        state, _ = final.result()
        return state
    finally:
        await cancel_and_wait(final)


def _runs(run_log: Path) -> list[tuple[str, str]]:
    """(task, attempt) of every run the agents' commands logged."""
    lines = run_log.read_text().splitlines() if run_log.exists() else []
    return [(line.split()[0], line.split()[1]) for line in lines]


async def _ride(
    mesh: DevMesh, settings: Settings, kafka: ApacheKafka, path: Path, run_log: Path
) -> tuple[WorkflowState, dict[str, list[str]], int, datetime, float, WorkflowRun]:
    """Submit, stop the broker mid-workflow for OUTAGE_SECONDS, start it again, follow the
    workflow to its end."""
    [node] = kafka.nodes
    submitted = await submit(settings, path)
    await wait_for(lambda: len(_runs(run_log)) >= 8, within=120, what="8 task runs")
    await asyncio.to_thread(stop_broker, node)
    ran_before_stop = len(_runs(run_log))
    await asyncio.sleep(OUTAGE_SECONDS)  # the fault itself: the broker stays down this long
    await asyncio.to_thread(node.restart, kafka.start_timeout)
    ready_at = datetime.now(UTC)
    ready_clock = time.monotonic()
    state = await _final_unless_one_exits(mesh, settings, submitted)
    completed_after = time.monotonic() - ready_clock
    exited = {
        name: child.lines[-5:]
        for name, child in mesh.supervisor.children.items()
        if not child.running or child.incarnation
    }
    return state, exited, ran_before_stop, ready_at, completed_after, submitted


@pytest.mark.timeout(600)
async def test_broker_stopped_for_15_s_mid_workflow(
    lone_kafka: ApacheKafka, topic_prefix: str, tmp_path: Path
) -> None:
    """Stop the broker (SIGTERM) in the middle of a 40-task workflow, keep it down 15 s, start
    it again on the same storage: every component process is still the one started (none
    exited, none restarted), the workflow completes, no (task, attempt) ran twice, and replay
    equals the live snapshot."""
    settings = Settings(bootstrap_servers=lone_kafka.bootstrap_servers, topic_prefix=topic_prefix)
    run_log = tmp_path / "runs.log"
    # Each task takes a moment, so the workflow is still running when the broker stops.
    pause = "; import time; time.sleep(0.2)"
    path = plan_file(tmp_path, layered_plan(run_log, WIDTH, DEPTH, pause))
    async with running_mesh(settings, shell_agents=3, python_agents=0) as mesh:
        try:
            state, exited, ran_before_stop, ready_at, completed_after, submitted = await _ride(
                mesh, settings, lone_kafka, path, run_log
            )
        finally:
            for name, child in mesh.supervisor.children.items():  # for a person reading a failure
                code = child.process.returncode
                (tmp_path / f"{name}.log").write_text("\n".join([*child.lines, f"exit {code}"]))

    assert exited == {}, f"components exited after the broker restart: {exited}"
    assert state.status == "completed", state.reason
    assert ran_before_stop < WIDTH * DEPTH  # the stop really happened mid-workflow
    runs = _runs(run_log)
    twice = sorted({run for run in runs if runs.count(run) > 1})
    assert twice == [], f"(task, attempt) run more than once: {twice}"
    assert set(run_log_counts(run_log)) == {
        f"t{layer:02d}-{col:02d}" for layer in range(DEPTH) for col in range(WIDTH)
    }
    history = await history_of(settings, submitted.workflow_id)
    after = [e.occurred_at for e in history if e.occurred_at >= ready_at]
    assert after, "no history record after the broker came back"
    recovery = (min(after) - ready_at).total_seconds()
    print(
        f"\nbroker ready -> first history record: {recovery:.2f} s; "
        f"workflow completed {completed_after:.1f} s after the broker was ready"
    )
    replay = await replay_workflow(settings, submitted.workflow_id)
    assert replay.equal is True, replay.differences
