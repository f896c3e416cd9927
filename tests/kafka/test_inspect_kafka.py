"""The inspect contract (tests/contract/inspect.py) on real Apache Kafka, where offsets are looked
up by timestamp, and a bulk ``mesh dlq redrive`` whose records a real Workflow Manager then
processes, in transactions that ``mesh tail`` reads past."""

from __future__ import annotations

from aiokafka import TopicPartition

from mesh.events import WorkflowStarted
from mesh.settings import Settings
from mesh.workflows.runtime import WorkflowManager
from tests._wm_support import plan, reader, running, spec, unique_group
from tests.contract.brokers import OnKafka
from tests.contract.inspect import (
    InspectContract,
    commit,
    create_topics,
    json_lines,
    make_dead_letters,
    mesh,
    ok_json,
    read_all,
)


class TestInspectOnKafka(OnKafka, InspectContract):
    """``mesh tail``, ``dlq`` and ``groups`` on Apache Kafka."""

    async def test_hundred_dead_letters_redriven_are_processed(self, settings: Settings) -> None:
        """100 plans the Workflow Manager gave up on go back to the plans topic in one redrive, and
        with the manager running they start their workflows; a second redrive sends nothing."""
        await create_topics(settings)
        plans = [plan(spec("A")) for _ in range(100)]
        originals = await make_dead_letters(settings, "plans", plans, component="workflow-manager")
        assert len(originals) == 100
        # The manager consumed the originals already (and dead-lettered them): its group is at
        # the end.
        group = unique_group()
        ends = {TopicPartition(r.topic, r.partition): 0 for r in originals}
        for record in originals:
            tp = TopicPartition(record.topic, record.partition)
            ends[tp] = max(ends[tp], record.offset + 1)
        await commit(settings, group, ends)

        dry = ok_json(mesh(settings, "dlq", "redrive", "--dry-run", "--json"))
        assert dry["redriven"] == 100
        first = ok_json(mesh(settings, "dlq", "redrive", "--json"))
        assert first["redriven"] == 100
        assert first["by_topic"] == {settings.topic("plans"): 100}
        assert ok_json(mesh(settings, "dlq", "redrive", "--json"))["redriven"] == 0
        on_plans = await read_all(settings, settings.topic("plans"), at_least=200)
        assert len(on_plans) == 200

        wanted = {p.workflow_id for p in plans}
        manager = WorkflowManager(settings, group_id=group)
        async with running(manager), reader(settings, "workflow.events") as events:
            started = await events.until(
                lambda evs: (
                    {e.workflow_id for e in evs if isinstance(e, WorkflowStarted)} >= wanted
                ),
                "100 workflows to start",
            )
        assert len([e for e in started if isinstance(e, WorkflowStarted)]) == 100
        # The history was written in transactions: tail reads past their markers to the end.
        tailed = mesh(
            settings, "tail", "workflow.events", "--from-beginning", "--until-end", "--json",
            "--filter", 'type == "workflow.started"',
        )  # fmt: skip
        assert tailed.code == 0, tailed.stderr
        assert {x["key"] for x in json_lines(tailed)} == wanted
        listed = ok_json(mesh(settings, "dlq", "list", "--json"))["letters"]
        assert len(listed) == 100
        assert all(x["redriven"] for x in listed)
