"""The Workflow Manager's contract (tests/contract/workflows.py) on real Apache Kafka, with
transactions, and the cases only Kafka can hold: zombies fenced by their transactional ids, and a
timeout restored by a restarted manager (the embedded tier checks rebuilds on its own case).
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from pathlib import Path

import pytest

from mesh.events import Event, TaskCompleted, TaskReady, TaskStarted, TaskTimedOut
from mesh.kafka.clients import stop_clients
from mesh.kafka.partitions import partition_for
from mesh.replay import replay_workflow
from mesh.settings import Settings
from mesh.workflows.runtime import WorkflowManager
from tests._wm_support import (
    WAIT,
    TestAgent,
    completed,
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
from tests.contract.brokers import OnKafka
from tests.contract.workflows import PARTITIONS, WorkflowManagerContract


class TestWorkflowsOnKafka(OnKafka, WorkflowManagerContract):
    """The Workflow Manager exactly-once on Apache Kafka."""

    async def test_a_timeout_fires_after_the_manager_is_restarted(self, settings: Settings) -> None:
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

    async def test_a_frozen_manager_is_fenced_when_it_wakes(
        self, settings: Settings, tmp_path: Path
    ) -> None:
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
        self,
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
