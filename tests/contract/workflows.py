"""The Workflow Manager on a broker: a DAG to completion and replay, dead letters next to a healthy
workflow, tombstones, and a kill -9 in the middle of a run.

A test agent plays the Agent Manager and the agents: it reads ``tasks.ready`` and answers on
``tasks.results``. Each case runs its own manager under a fresh topic prefix and group. With
transactions (``broker.transactional``) the manager is exactly-once; without, at-least-once with
idempotent folding: a TaskReady may repeat, never a recorded fact.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from structlog.testing import capture_logs

from mesh.events import DeadLetter, Mapper, TaskCompleted, TaskReady, WorkflowSnapshot
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, producer_kwargs
from mesh.kafka.dlq import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_MESSAGE,
    HEADER_ORIGINAL_OFFSET,
    HEADER_ORIGINAL_PARTITION,
    HEADER_ORIGINAL_TOPIC,
)
from mesh.kafka.history import opened, read_snapshot, snapshot_state
from mesh.kafka.partitions import partition_for
from mesh.replay import replay_workflow
from mesh.settings import Settings
from mesh.workflows.runtime import WorkflowManager
from tests._wm_support import (
    WAIT,
    Background,
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
from tests.contract.brokers import Contract
from tests.helpers import run_mesh

PARTITIONS = 6
"""Of the co-partitioned topics the manager reads and writes (topics/)."""
BIG_EVENT_BYTES = 6_000_000
"""``max_event_bytes`` for a 10,000-task plan (~4.5 MB as a PlanCreated or WorkflowStarted)."""
BIG_TOPIC_BYTES = 8 * 1024 * 1024


async def _until(condition: Callable[[], bool], what: str, within: float) -> None:
    """Wait until ``condition()`` holds, checking every 0.2 s; fail naming ``what``."""
    try:
        async with asyncio.timeout(within):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"no {what} within {within} s") from None


class _BatchAgent(Background):
    """Answers every TaskReady at once with started and completed, a fetched batch at a time
    (the test agent's send-and-wait per record would take minutes for 10,000 tasks)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.completed = 0

    async def _run(self) -> None:
        settings = self.settings
        mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        consumer = AIOKafkaConsumer(
            settings.topic("tasks.ready"),
            **client_kwargs(settings),
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        producer = AIOKafkaProducer(**producer_kwargs(settings))
        await consumer.start()
        await producer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=2_000)
                sends = []
                for record in (r for records in batch.values() for r in records):
                    ready = mapper.decode(record.value, record.headers)
                    if not isinstance(ready, TaskReady):
                        continue
                    for event in (started(ready), completed(ready)):
                        key, value, headers = mapper.encode(event)
                        topic = settings.topic("tasks.results")
                        sends.append(await producer.send(topic, value, key=key, headers=headers))
                    self.completed += 1
                await asyncio.gather(*sends)
        finally:
            await stop_clients(consumer, producer)


def env(settings: Settings) -> dict[str, str]:
    """What a ``mesh`` process needs to find the test's broker and topics."""
    return {
        "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": settings.topic_prefix,
        "MESH_MAX_EVENT_BYTES": str(settings.max_event_bytes),
    }


def readies_of(agent: TestAgent, workflow_id: str) -> list[tuple[str, int]]:
    return sorted((r.task_id, r.attempt) for r in agent.readies if r.workflow_id == workflow_id)


class WorkflowManagerContract(Contract):
    """The Workflow Manager: decides, records, snapshots and dead-letters on any broker."""

    @pytest.fixture(autouse=True)
    def _captured_logs(self) -> Iterator[None]:
        """Keep the in-process managers' logs in memory: an earlier in-process CLI test may have
        configured structlog with a stream that pytest has closed since."""
        with capture_logs():
            yield

    @pytest.fixture
    async def settings(self, broker_settings: Settings) -> Settings:
        await create_topics(broker_settings)
        return broker_settings

    async def test_a_dag_runs_to_completion_and_replays_to_its_snapshot(
        self, settings: Settings
    ) -> None:
        """a → (b, c) → d completes; each task is dispatched once; the history is gapless (with
        transactions: each sequence committed exactly once); the snapshots are bounded by
        snapshot_every; replay (API and ``mesh replay --json``) equals the last snapshot."""
        manager = WorkflowManager(settings, group_id=unique_group(), snapshot_every=4)
        created = diamond()
        wid = created.workflow_id
        async with running(manager), TestAgent(settings) as agent:
            assert manager.transactional is self.broker.transactional
            async with publisher(settings) as out:
                await out.send("plans", created)
            async with reader(settings, "workflow.events") as history:
                await history.until(ended(wid), "the workflow to end")
                events = of_workflow(await history.drain(), wid)
            assert events[-1].type == "workflow.completed"
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
            assert readies_of(agent, wid) == [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
            # Finished and snapshotted: out of the manager's memory, on Kafka only.
            assert manager.workflow(wid) is None
            assert manager.finished(wid)
        async with reader(settings, "workflow.state") as snapshots:
            await snapshots.drain()
        mine = [s for s in of_type(snapshots.events, WorkflowSnapshot) if s.workflow_id == wid]
        assert 2 <= len(mine) < len(events) / 2
        assert mine[-1].history_sequence == len(events)
        assert mine[-1].status == "completed"

        result = await replay_workflow(settings, wid)
        assert (result.equal, result.differences) == (True, [])
        assert result.event_count == len(events)
        assert result.state.status == "completed"

        run = await asyncio.to_thread(run_mesh, "replay", wid, "--json", env=env(settings))
        assert run.code == 0, run.stderr
        document = json.loads(run.stdout)
        assert (document["workflow_id"], document["status"], document["equal"]) == (
            wid,
            "completed",
            True,
        )
        assert document["event_count"] == len(events)
        assert document["differences"] == []
        assert [t["task_id"] for t in document["tasks"]] == ["a", "b", "c", "d"]
        assert {t["status"] for t in document["tasks"]} == {"succeeded"}

    async def test_a_killed_manager_loses_nothing(self, settings: Settings, tmp_path: Path) -> None:
        """``mesh run workflows`` is killed with SIGKILL in the middle of a 24-task workflow (three
        at a time) and a new one takes over, rebuilding its partitions: the workflow completes,
        its history has each sequence once with no gap (whole decisions only), every task
        completed exactly once, and replay equals the snapshot. At-least-once, a TaskReady may
        repeat, never a recorded fact; with transactions each TaskReady, too, is visible exactly
        once to a read_committed consumer."""
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
                # The embedded broker lets a group's next member in only after a long wait.
                await second.wait_ready(within=3 * WAIT)
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
        done = Counter(e.task_id for e in of_type(events, TaskCompleted))
        assert done == Counter({f"t{i:02}": 1 for i in range(24)})
        assert {r.task_id for r in agent.readies if r.workflow_id == wid} == set(done)
        if self.broker.transactional:
            async with reader(settings, "tasks.ready") as ready_topic:
                readies = of_type(of_workflow(await ready_topic.drain(), wid), TaskReady)
            counts = Counter((r.task_id, r.attempt) for r in readies)
            assert counts == Counter({(f"t{i:02}", 1): 1 for i in range(24)})
        assert "partition rebuilt" in second.output()
        result = await replay_workflow(settings, wid)
        assert result.equal is True, result.differences

    async def test_unprocessable_inputs_go_to_the_dlq_while_a_workflow_runs(
        self, settings: Settings
    ) -> None:
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
        letters = sorted((d.error_class, d.original_topic) for d in of_type(dlq.events, DeadLetter))
        assert letters == [
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
            garbage[HEADER_ORIGINAL_PARTITION]
            == str(partition_for(garbage_key, PARTITIONS)).encode()
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

    async def test_a_10000_task_workflow_has_a_final_snapshot_and_rebuilds_from_it(
        self, broker_settings: Settings
    ) -> None:
        """Its plan alone is ~4.5 MB, so limits are raised to 6 MB (topics to 8 MiB); its state
        (~8 MB) is still over that and goes in chunks. It completes with a final snapshot that
        ``mesh list`` shows completed, ``replay --diff-live`` finds equal to the history, and a
        fresh manager rebuilds from without folding any history; the rebuild time is printed."""
        settings = broker_settings.model_copy(update={"max_event_bytes": BIG_EVENT_BYTES})
        await create_topics(settings, max_message_bytes=BIG_TOPIC_BYTES)
        tasks = 10_000
        created = plan(*(spec(f"t{i}") for i in range(tasks)))
        wid = created.workflow_id
        manager = WorkflowManager(settings, group_id=unique_group())
        async with running(manager), _BatchAgent(settings) as agent:
            async with publisher(settings) as out:
                await out.send_big("plans", created)
            await _until(lambda: manager.finished(wid), "end of the workflow", within=900)
            assert agent.completed == tasks
        async with opened(settings) as consumer:
            number = partition_for(wid, PARTITIONS)
            last = await read_snapshot(
                consumer, settings, Mapper(max_event_bytes=BIG_EVENT_BYTES), number, wid
            )
        assert last is not None
        assert (last.status, last.history_sequence) == ("completed", 2 * tasks + tasks + 2)
        assert last.chunks > 1
        state = snapshot_state(last)
        assert state is not None
        assert state.counts() == {"succeeded": tasks}

        listed = await asyncio.to_thread(run_mesh, "list", "--json", env=env(settings))
        assert listed.code == 0, listed.stderr
        rows = {w["workflow_id"]: w for w in json.loads(listed.stdout)["workflows"]}
        assert rows[wid]["status"] == "completed"
        diff = await asyncio.to_thread(
            run_mesh, "replay", wid, "--diff-live", "--json", env=env(settings), timeout=300
        )
        assert diff.code == 0, diff.stderr
        assert (json.loads(diff.stdout)["equal"], json.loads(diff.stdout)["differences"]) == (
            True,
            [],
        )

        fresh = WorkflowManager(settings, group_id=unique_group())
        async with running(fresh):
            (rebuilt,) = [r for r in fresh.rebuilds if r.partition == number]
            assert fresh.finished(wid)  # rebuilt from its final snapshot, out of memory again
        assert rebuilt.statuses[wid] == "completed"
        assert rebuilt.events == 0  # the final snapshot is the whole workflow: no tail folded
        print(f"\nrebuild of the 10,000-task workflow's partition: {rebuilt.seconds:.3f} s")

    async def test_a_finished_workflow_is_tombstoned_and_forgotten(
        self, settings: Settings
    ) -> None:
        """After its grace period a finished workflow's snapshot is deleted (a null record)."""
        manager = WorkflowManager(settings, group_id=unique_group(), finished_grace_seconds=0.5)
        created = diamond()
        wid = created.workflow_id
        async with running(manager), TestAgent(settings):
            async with publisher(settings) as out:
                await out.send("plans", created)
            async with reader(settings, "workflow.state") as state:
                await state.until(
                    lambda _: any(r.key == wid.encode() and r.value is None for r in state.records),
                    "the tombstone",
                )
            assert manager.workflow(wid) is None
