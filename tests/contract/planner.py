"""The planner component on a broker: requests in, PlanCreated/PlanRejected out, learning rebuilt
from the history after a restart. Its helpers (topics, a running service, publishing, reading a
topic until a condition holds) serve the other contracts that drive the planner."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mesh.events import (
    DeadLetter,
    Event,
    ExecutionPlan,
    Mapper,
    PlanCreated,
    PlanRejected,
    Producer,
    TaskCompleted,
    TaskRequest,
    WorkflowCompleted,
    WorkflowStarted,
    meta,
)
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs
from mesh.planner import Learning, Planner, workflow_id_for
from mesh.planner.runtime import PlannerService
from mesh.settings import Settings
from mesh.topics import apply_topics, load_topics
from tests.contract.brokers import Contract

TOPICS = Path(__file__).resolve().parents[2] / "topics"
ME = Producer(component="test-client", instance="t-1")
MAPPER = Mapper()
WAIT = 60.0

BAD_TEMPLATES = """
tasks:
  cyclic:
    methods:
      - name: loop
        steps:
          - {id: a, task: design, after: [c]}
          - {id: b, task: implement, after: [a]}
          - {id: c, task: review_code, after: [b]}
  dangling:
    methods:
      - name: typo
        steps:
          - {id: build, task: implement}
          - {id: ship, task: review_code, after: [biuld]}
"""


async def prepare(settings: Settings) -> None:
    """The declared topics under this test's prefix."""
    await apply_topics(settings, load_topics(TOPICS, prefix=settings.topic_prefix).topics)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, group: str = "planner", **options: Any
) -> AsyncIterator[PlannerService]:
    service = PlannerService(settings, group_id=f"{settings.topic_prefix}{group}", **options)
    try:
        await service.start()
        async with asyncio.timeout(WAIT):
            await service.caught_up.wait()
        yield service
    finally:
        await stop_clients(service)


async def publish(settings: Settings, topic: str, *records: Event | bytes) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    try:
        await producer.start()
        for record in records:
            if isinstance(record, bytes):
                await producer.send_and_wait(settings.topic(topic), record, key=b"junk")
            else:
                key, value, headers = MAPPER.encode(record)
                await producer.send_and_wait(settings.topic(topic), value, key=key, headers=headers)
    finally:
        await stop_clients(producer)


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of ``topic`` (metadata of a just-created topic may lag a moment)."""
    async with asyncio.timeout(WAIT):
        while not (found := consumer.partitions_for_topic(topic)):
            await consumer._client.force_metadata_update()
            if not consumer.partitions_for_topic(topic):
                await asyncio.sleep(0.1)
    return [TopicPartition(topic, p) for p in sorted(found)]


async def read_until(
    settings: Settings,
    channels: Sequence[str],
    done: Callable[[list[tuple[bytes | None, Event]]], bool],
) -> list[tuple[bytes | None, Event]]:
    """(key, event) pairs of ``channels`` from their start, once ``done`` holds (or fail)."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    seen: list[tuple[bytes | None, Event]] = []
    try:
        partitions = [
            tp for c in channels for tp in await partitions_of(consumer, settings.topic(c))
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + WAIT
        while not done(seen):
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {WAIT} s; saw {seen}")
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                seen.extend((r.key, MAPPER.decode(r.value, r.headers)) for r in records)
    finally:
        await stop_clients(consumer)
    return seen


async def everything_in(settings: Settings, channel: str) -> list[Event]:
    """Every event on ``channel`` right now (reads up to the end offsets)."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    try:
        await consumer.start()
        ends = await consumer.end_offsets(await partitions_of(consumer, settings.topic(channel)))
    finally:
        await stop_clients(consumer)
    total = sum(ends.values())
    return [e for _, e in await read_until(settings, [channel], lambda seen: len(seen) >= total)]


def request(task_type: str, request_id: str, **fields: Any) -> TaskRequest:
    return TaskRequest(
        **meta(ME, correlation_id=request_id),
        request_id=request_id,
        task_type=task_type,
        description="Add a --json flag",
        **fields,
    )


def history(plan: ExecutionPlan, workflow_id: str, seconds: float) -> list[Event]:
    """A finished run of ``plan`` as the Workflow Manager records it."""
    events: list[Event] = [
        WorkflowStarted(
            **meta(ME, correlation_id=workflow_id),
            workflow_id=workflow_id,
            sequence=1,
            request_id=workflow_id,
            plan=plan,
        )
    ]
    for i, task in enumerate(plan.tasks):
        events.append(
            TaskCompleted(
                **meta(ME, correlation_id=workflow_id),
                workflow_id=workflow_id,
                sequence=2 + i,
                task_id=task.task_id,
                attempt=1,
                agent_id="agent-1",
                duration_seconds=seconds * (i + 1),
                cost=0.01,
            )
        )
    events.append(
        WorkflowCompleted(
            **meta(ME, correlation_id=workflow_id),
            workflow_id=workflow_id,
            sequence=len(events) + 1,
            completed_tasks=len(plan.tasks),
        )
    )
    return events


class PlannerContract(Contract):
    """The Task Planner: every request planned or rejected with its reason, learning rebuilt."""

    async def test_a_request_becomes_a_plan(self, settings: Settings) -> None:
        await prepare(settings)
        async with running(settings):
            await publish(settings, "requests", request("feature", "req-ok"))
            seen = await read_until(settings, ["plans"], lambda s: len(s) >= 1)
        ((key, event),) = seen
        assert isinstance(event, PlanCreated)
        assert key == workflow_id_for("req-ok").encode() == event.workflow_id.encode()
        assert event.request_id == "req-ok"
        assert event.correlation_id == "req-ok"
        assert event.plan is not None
        assert next(t.task_id for t in event.plan.tasks) == "design"
        assert event.plan.estimated_duration_seconds

    async def test_unplannable_requests_are_rejected_with_their_reason_and_nothing_is_planned(
        self, settings: Settings, tmp_path: Path
    ) -> None:
        await prepare(settings)
        (tmp_path / "bad.yaml").write_text(BAD_TEMPLATES)
        with_bad = settings.model_copy(update={"planner_templates": (tmp_path,)})
        soon = datetime.now(UTC) + timedelta(minutes=5)
        bad = {
            "req-cycle": request("cyclic", "req-cycle"),
            "req-missing": request("dangling", "req-missing"),
            "req-unknown": request("deploy", "req-unknown"),
            "req-deadline": request("feature", "req-deadline", deadline=soon),
        }
        async with running(with_bad):
            await publish(with_bad, "requests", *bad.values(), b"not json at all")
            seen = await read_until(with_bad, ["plans", "dlq"], lambda s: len(s) >= len(bad) + 1)
        rejected = {e.request_id: e for _, e in seen if isinstance(e, PlanRejected)}
        assert set(rejected) == set(bad)
        cycle = rejected["req-cycle"].reason
        assert cycle.startswith("cycle: ")
        assert {"a", "b", "c"} <= set(cycle[7:].split(" → "))
        assert rejected["req-missing"].reason == (
            "missing_dependency: task 'ship' depends on 'biuld', which is not in the plan"
        )
        assert rejected["req-unknown"].reason.startswith(
            "unknown_type: no template for request type 'deploy'"
        )
        deadline = rejected["req-deadline"].reason
        assert deadline.startswith("deadline: impossible deadline: the critical path needs ")
        assert "away" in deadline
        for request_id, event in rejected.items():
            assert event.workflow_id == workflow_id_for(request_id)
        letters = [e for _, e in seen if isinstance(e, DeadLetter)]
        assert [letter.error_class for letter in letters] == ["InvalidEvent"]
        # Nothing was planned for them, so nothing can be dispatched.
        everything = await everything_in(with_bad, "plans")
        assert not [e for e in everything if isinstance(e, PlanCreated)]
        assert await everything_in(with_bad, "tasks.ready") == []

    async def test_learned_state_is_rebuilt_from_the_history_after_a_restart(
        self,
        settings: Settings,
    ) -> None:
        await prepare(settings)
        plan = Planner().plan_task(request("feature", "seed"))
        runs = [history(plan, f"wf-past-{i}", seconds=30.0 + i) for i in range(4)]
        expected = Learning()
        for run in runs:
            expected.apply_all(run)
        for run in runs[:2]:
            await publish(settings, "workflow.events", *run)
        async with running(settings) as first:
            for run in runs[2:]:  # arrive while it runs
                await publish(settings, "workflow.events", *run)
            async with asyncio.timeout(WAIT):
                await first.learned(expected.version)
            learned = first.planner.learning
            assert learned.estimator.snapshot() == expected.estimator.snapshot()
            assert learned.bandit.snapshot() == expected.bandit.snapshot()
        # A new replica with nothing but Kafka to go on. (Its own consumer group only because the
        # embedded broker takes ~18 s to let a group's next member in; learning uses no group.)
        async with running(settings, group="planner-2") as second:
            rebuilt = second.planner.learning
            assert rebuilt.estimator.snapshot() == expected.estimator.snapshot()
            assert rebuilt.bandit.snapshot() == expected.bandit.snapshot()
            await publish(settings, "requests", request("feature", "req-after"))
            seen = await read_until(
                settings,
                ["plans"],
                lambda s: any(getattr(e, "request_id", "") == "req-after" for _, e in s),
            )
        (created,) = [e for _, e in seen if isinstance(e, PlanCreated)]
        assert created.plan is not None
        design = created.plan.task("design")
        assert design.estimated_duration_seconds is not None
        assert design.estimated_duration_seconds < 5 * 60  # learned (~31 s), not the 5 min prior
