"""The Workflow Manager on real Apache Kafka, with transactions: exactly-once across a kill -9,
dead letters next to a healthy workflow, and a timeout that fires after a restart."""

from __future__ import annotations

import asyncio
import gc
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mesh.events import (
    DeadLetter,
    Event,
    TaskCompleted,
    TaskReady,
    TaskStarted,
    TaskTimedOut,
    WorkflowSnapshot,
)
from mesh.kafka.clients import stop_clients
from mesh.kafka.dlq import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_MESSAGE,
    HEADER_ORIGINAL_OFFSET,
    HEADER_ORIGINAL_PARTITION,
    HEADER_ORIGINAL_TOPIC,
)
from mesh.kafka.partitions import partition_for
from mesh.replay import replay_workflow
from mesh.settings import Settings
from mesh.workflows.runtime import WorkflowManager
from tests._wm_support import (
    WAIT,
    TestAgent,
    completed,
    create_topics,
    diamond,
    ended,
    of_type,
    of_workflow,
    plan,
    publisher,
    reader,
    running,
    spec,
    start_manager_process,
    started,
    unique_group,
)

PARTITIONS = 6


@pytest.fixture(autouse=True)
def _captured_logs() -> Iterator[None]:
    """Keep the in-process managers' logs in memory: an earlier in-process CLI test may have
    configured structlog with a stream that pytest has closed since."""
    with capture_logs():
        yield


@pytest.fixture
async def settings(kafka_settings: Settings) -> Settings:
    await create_topics(kafka_settings)
    return kafka_settings


async def test_a_dag_completes_in_transactions_and_replays(settings: Settings) -> None:
    """With transactions every history sequence is committed exactly once and replay equals
    the snapshot; snapshots are bounded by snapshot_every."""
    manager = WorkflowManager(settings, group_id=unique_group(), snapshot_every=4)
    created = diamond()
    wid = created.workflow_id
    async with running(manager), TestAgent(settings):
        assert manager.transactional is True
        async with publisher(settings) as out:
            await out.send("plans", created)
        async with reader(settings, "workflow.events") as history:
            await history.until(ended(wid), "the workflow to end")
            events = of_workflow(await history.drain(), wid)
    assert events[-1].type == "workflow.completed"
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    async with reader(settings, "workflow.state") as state:
        snapshots = [
            s for s in of_type(await state.drain(), WorkflowSnapshot) if s.workflow_id == wid
        ]
    assert 2 <= len(snapshots) < len(events) / 2
    result = await replay_workflow(settings, wid)
    assert (result.equal, result.event_count) == (True, len(events))


async def test_a_killed_manager_neither_loses_nor_repeats_an_effect(
    settings: Settings, tmp_path: Path
) -> None:
    """``mesh run workflows`` is killed with SIGKILL in the middle of a 24-task workflow (three
    at a time) and a new one takes over: the workflow completes, each TaskReady and each history
    sequence is visible exactly once to a read_committed consumer, and replay equals the
    snapshot."""
    group = unique_group()
    created = plan(
        *(spec(f"t{i:02}") for i in range(24)), workflow_type="parallel", max_parallelism=3
    )
    wid = created.workflow_id
    first = start_manager_process(settings, group, tmp_path / "first.log")
    second = None
    try:
        await first.wait_ready()
        async with TestAgent(settings) as agent:
            async with publisher(settings) as out:
                await out.send("plans", created)
            await agent.saw(9)
            first.kill()
            second = start_manager_process(settings, group, tmp_path / "second.log")
            await second.wait_ready(within=2 * WAIT)
            async with reader(settings, "workflow.events") as history:
                await history.until(ended(wid), "the workflow to end", within=2 * WAIT)
                events = of_workflow(await history.drain(), wid)
        assert second.terminate() == 0, second.output()
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert events[-1].type == "workflow.completed", events[-1]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    async with reader(settings, "tasks.ready") as ready_topic:
        readies = of_type(of_workflow(await ready_topic.drain(), wid), TaskReady)
    counts = Counter((r.task_id, r.attempt) for r in readies)
    assert counts == Counter({(f"t{i:02}", 1): 1 for i in range(24)})
    assert "partition rebuilt" in second.output()
    result = await replay_workflow(settings, wid)
    assert result.equal is True, result.differences


async def test_unprocessable_inputs_go_to_the_dlq_while_a_workflow_runs(settings: Settings) -> None:
    """Garbage bytes, a schema-invalid plan, a result for an unknown workflow and an event on
    the wrong topic each land in the DLQ with origin and reason; a valid workflow completes."""
    manager = WorkflowManager(settings, group_id=unique_group())
    created = diamond()
    wid = created.workflow_id
    garbage_key, invalid_key = "wf-garbage", "wf-invalid"
    invalid = json.dumps(
        {"type": "plan.created", "schema_version": 1, "workflow_id": invalid_key}
    ).encode()
    async with running(manager), TestAgent(settings) as agent:
        async with publisher(settings) as out:
            await out.raw("plans", b"\xff\x00not json", key=garbage_key.encode())
            await out.send("plans", created)
            await out.raw("plans", invalid, key=invalid_key.encode())
            async with reader(settings, "tasks.ready") as ready_topic:
                ready = await ready_topic.first(TaskReady)
            stray = completed(ready).model_copy(update={"workflow_id": "wf-unknown"})
            await out.send("tasks.results", stray)
            await out.send("plans", started(ready))
        async with reader(settings, "workflow.events") as history:
            await history.until(ended(wid), "the valid workflow to end")
        async with reader(settings, "dlq") as dlq:
            await dlq.until(lambda e: len(of_type(e, DeadLetter)) >= 4, "four dead letters")
        assert len([r for r in agent.readies if r.workflow_id == wid]) == 4
    prefix = settings.topic_prefix
    assert sorted((d.error_class, d.original_topic) for d in of_type(dlq.events, DeadLetter)) == [
        ("DecisionError", f"{prefix}tasks.results"),
        ("InvalidEvent", f"{prefix}plans"),
        ("InvalidEvent", f"{prefix}plans"),
        ("MisplacedInput", f"{prefix}plans"),
    ]
    by_key = {r.key: r for r in dlq.records}
    garbage = dict(by_key[garbage_key.encode()].headers)
    assert garbage[HEADER_ERROR_CLASS] == b"InvalidEvent"
    assert garbage[HEADER_ORIGINAL_TOPIC] == f"{prefix}plans".encode()
    assert (
        garbage[HEADER_ORIGINAL_PARTITION] == str(partition_for(garbage_key, PARTITIONS)).encode()
    )
    assert garbage[HEADER_ORIGINAL_OFFSET] == b"0"
    assert b"not UTF-8 text: byte 0xff at offset 0" in garbage[HEADER_ERROR_MESSAGE]
    schema = dict(by_key[invalid_key.encode()].headers)
    assert schema[HEADER_ERROR_CLASS] == b"InvalidEvent"
    assert b"invalid plan.created" in schema[HEADER_ERROR_MESSAGE]
    unknown = dict(by_key[b"wf-unknown"].headers)
    assert unknown[HEADER_ERROR_CLASS] == b"DecisionError"
    assert b"unknown" in unknown[HEADER_ERROR_MESSAGE]
    misplaced = dict(by_key[wid.encode()].headers)
    assert misplaced[HEADER_ERROR_CLASS] == b"MisplacedInput"
    assert b"does not belong on" in misplaced[HEADER_ERROR_MESSAGE]


async def test_a_timeout_fires_after_the_manager_is_restarted(settings: Settings) -> None:
    """An attempt that starts and never answers times out even though the manager that saw it
    start is gone: the next manager restores the deadline from the rebuilt state, records
    TaskTimedOut, and the retry completes."""
    group = unique_group()
    created = plan(spec("slow", timeout_seconds=4, max_attempts=2))
    wid = created.workflow_id

    async def silent_first_time(ready: TaskReady) -> list[Event]:
        if ready.attempt == 1:
            return [started(ready)]
        return [started(ready), completed(ready)]

    async with TestAgent(settings, silent_first_time):
        first = WorkflowManager(settings, group_id=group, instance="wm-first")
        async with running(first), reader(settings, "workflow.events") as history:
            async with publisher(settings) as out:
                await out.send("plans", created)
            await history.until(
                lambda evs: bool(of_type(of_workflow(evs, wid), TaskStarted)), "the start"
            )
        second = WorkflowManager(settings, group_id=group, instance="wm-second")
        async with running(second), reader(settings, "workflow.events") as history:
            await history.until(ended(wid), "the workflow to end")
        events = of_workflow(history.events, wid)
    (timed_out,) = of_type(events, TaskTimedOut)
    assert (timed_out.task_id, timed_out.attempt) == ("slow", 1)
    assert timed_out.producer.instance == "wm-second"
    assert events[-1].type == "workflow.completed"
    assert [(e.task_id, e.attempt) for e in of_type(events, TaskCompleted)] == [("slow", 2)]


async def test_a_frozen_manager_is_fenced_when_it_wakes(settings: Settings, tmp_path: Path) -> None:
    """A manager frozen (SIGSTOP) mid-run loses its partitions to a second one; when it wakes
    it cannot commit as their owner any more (its transactional ids were fenced), so every
    TaskReady and history sequence is still committed exactly once."""
    group = unique_group()
    created = plan(
        *(spec(f"t{i:02}") for i in range(30)), workflow_type="parallel", max_parallelism=3
    )
    wid = created.workflow_id
    zombie = start_manager_process(settings, group, tmp_path / "zombie.log")
    heir = None
    try:
        await zombie.wait_ready()
        async with TestAgent(settings) as agent:
            async with publisher(settings) as out:
                await out.send("plans", created)
            await agent.saw(6)
            zombie.freeze()
            heir = start_manager_process(settings, group, tmp_path / "heir.log")
            await heir.wait_ready(within=2 * WAIT)
            await agent.saw(15)
            zombie.thaw()
            async with reader(settings, "workflow.events") as history:
                await history.until(ended(wid), "the workflow to end", within=2 * WAIT)
                events = of_workflow(await history.drain(), wid)
    finally:
        zombie.kill()
        if heir is not None:
            heir.kill()
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    async with reader(settings, "tasks.ready") as ready_topic:
        readies = of_type(of_workflow(await ready_topic.drain(), wid), TaskReady)
    assert Counter((r.task_id, r.attempt) for r in readies) == Counter(
        {(f"t{i:02}", 1): 1 for i in range(30)}
    )
    result = await replay_workflow(settings, wid)
    assert result.equal is True, result.differences


async def test_a_manager_fenced_out_of_a_partition_stops_without_committing(
    settings: Settings,
) -> None:
    """When another owner initialises partition p's transactional id (``<group>-<p>``), the
    old manager's next transaction on p fails: it stops with a 'fenced' error and nothing it
    decided after being fenced is visible to read_committed readers."""
    from aiokafka import AIOKafkaProducer

    from mesh.errors import BrokerError

    group = unique_group()
    created = diamond()
    wid = created.workflow_id
    manager = WorkflowManager(settings, group_id=group)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    await asyncio.wait_for(manager.ready.wait(), WAIT)
    async with publisher(settings) as out, reader(settings, "tasks.ready") as ready_topic:
        await out.send("plans", created)
        ready = await ready_topic.first(TaskReady)
        heir = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            transactional_id=f"{group}-{partition_for(wid, PARTITIONS)}",
        )
        await heir.start()  # InitProducerId: bumps the epoch, fencing the manager's producer
        try:
            await out.send("tasks.results", started(ready), completed(ready))
            with pytest.raises(BrokerError, match="fenced"):
                await asyncio.wait_for(task, WAIT)
        finally:
            await stop_clients(heir)
    # aiokafka leaves futures holding the fencing error, reachable from the failed task's
    # traceback; collect them now rather than at a random later moment (a finalizer that logs
    # while pytest compiles a module trips a CPython 3.11 bug: "AST constructor recursion depth
    # mismatch").
    del task
    gc.collect()
    async with reader(settings, "workflow.events") as history:
        events = of_workflow(await history.drain(), wid)
    assert [e.type for e in events] == ["workflow.started", "task.scheduled"]
