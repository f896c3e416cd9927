"""The agents' contract (tests/contract/agents.py) on real Apache Kafka, where the Agent Manager's
assignment is transactional, and what only transactions hold: every TaskReady becomes exactly one
TaskAssigned for read_committed readers across a rebalance and a restart, and a waiting task's
offset stays uncommitted so that a restarted Agent Manager assigns it once."""

from __future__ import annotations

from collections import Counter

from mesh.events import TaskAssigned
from mesh.settings import Settings
from tests._agents_support import (
    of_task,
    producer,
    publish,
    reader,
    running_manager,
    spec,
    task_ready,
)
from tests.contract.agents import (
    AgentsContract,
    all_assigned,
    assignments,
    committed_everything,
    fake_agent,
)
from tests.contract.brokers import OnKafka


class TestAgentsOnKafka(OnKafka, AgentsContract):
    """The Agent Manager and agent processes on Apache Kafka."""

    async def test_every_ready_task_is_assigned_exactly_once_across_rebalance_and_restart(
        self,
        settings: Settings,
    ) -> None:
        group = f"{settings.topic_prefix}dispatcher"
        await fake_agent(settings, "agent-a", "work")
        await fake_agent(settings, "agent-b", "work")
        first = [f"t{i}" for i in range(12)]
        second = [f"u{i}" for i in range(12)]

        async with (
            producer(settings) as out,
            reader(settings, "tasks.assigned") as assigned,
            reader(settings, "tasks.results") as results,
        ):
            async with running_manager(settings, group_id=group) as one:
                for i, task_id in enumerate(first):
                    await publish(
                        out, settings, "tasks.ready", task_ready(spec(task_id, "work"), f"wf{i}")
                    )
                await assigned.until(all_assigned(first), what="the first tasks")
                assert one.transactional is True

                # A second replica: the group rebalances.
                async with running_manager(settings, group_id=group):
                    for i, task_id in enumerate(second):
                        await publish(
                            out,
                            settings,
                            "tasks.ready",
                            task_ready(spec(task_id, "work"), f"wf{i}"),
                        )
                    await assigned.until(all_assigned(first + second), what="the second tasks")

            # A restarted Agent Manager must not assign anything again: only the marker.
            async with running_manager(settings, group_id=group):
                await publish(
                    out, settings, "tasks.ready", task_ready(spec("marker", "work"), "wf-m")
                )
                to_agents = await assigned.until(all_assigned(["marker"]), what="the marker")
            to_manager = await results.until(
                all_assigned([*first, *second, "marker"]), what="the copies on tasks.results"
            )

        assert assignments(to_agents) == Counter(dict.fromkeys([*first, *second, "marker"], 1))
        assert assignments(to_manager) == assignments(to_agents)
        spread = Counter(e.agent_id for e in to_agents if isinstance(e, TaskAssigned))
        assert set(spread) == {"agent-a", "agent-b"}
        for _topic, key, event in assigned.seen:
            assert isinstance(event, TaskAssigned)
            assert key == event.agent_id.encode()
        for _topic, key, event in results.seen:
            assert isinstance(event, TaskAssigned)
            assert key == event.workflow_id.encode()
        assert await committed_everything(settings, group)

    async def test_a_waiting_task_survives_a_restart_and_is_dispatched_once(
        self,
        settings: Settings,
    ) -> None:
        """Nobody can run the task at first; its offset is not committed while it waits, so the next
        Agent Manager re-reads it and assigns it once an agent with the capability registers."""
        group = f"{settings.topic_prefix}dispatcher"
        await fake_agent(settings, "agent-a", "work")
        async with producer(settings) as out, reader(settings, "tasks.assigned") as assigned:
            async with running_manager(settings, group_id=group):
                await publish(
                    out, settings, "tasks.ready", task_ready(spec("rare", "rare"), "wf-r")
                )
                await publish(
                    out, settings, "tasks.ready", task_ready(spec("common", "work"), "wf-r")
                )
                await assigned.until(all_assigned(["common"]), what="the common task")
            assert not await committed_everything(settings, group)

            await fake_agent(settings, "agent-r", "rare")
            async with running_manager(settings, group_id=group):
                events = await assigned.until(all_assigned(["rare"]), what="the rare task")
                [rare] = of_task(events, "rare", TaskAssigned)
                assert rare.agent_id == "agent-r"
                await publish(out, settings, "tasks.ready", task_ready(spec("end", "work"), "wf-r"))
                events = await assigned.until(all_assigned(["end"]), what="the last task")
        assert assignments(events) == Counter({"common": 1, "rare": 1, "end": 1})
        assert await committed_everything(settings, group)
