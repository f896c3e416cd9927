"""Publish a plan as a workflow and follow its history live (``mesh submit --wait``).

Following reads only the ``workflow.events`` partition the workflow id maps to, from the end
offset taken *before* publishing, so it neither misses the first events nor scans old history.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mesh.errors import MeshError
from mesh.events import (
    Event,
    Mapper,
    PlanCreated,
    Producer,
    WorkflowEvent,
    meta,
    uuid7,
)
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.partitions import partition_for, topic_partitions
from mesh.settings import Settings

from ._planfile import PlanRequest

FINAL_TYPES = frozenset({"workflow.completed", "workflow.failed", "workflow.cancelled"})


def cli_producer() -> Producer:
    """Who publishes from the command line (host and pid, for the history's producer field)."""
    return Producer(component="cli", instance=f"{socket.gethostname()}-{os.getpid()}")


def new_workflow_id() -> str:
    """A fresh, time-ordered workflow id."""
    return f"wf-{uuid7().hex[:20]}"


@dataclass
class HistoryCursor:
    """Where a workflow's history is read from: its partition and a starting offset."""

    topic: str
    partition: int
    offset: int


async def key_cursor(
    settings: Settings, channel: str, key: str, *, from_end: bool
) -> HistoryCursor:
    """The partition of ``channel`` that ``key`` maps to, positioned at its end or start.

    Taken before publishing, the end is where the answers to what we publish will appear.
    """
    topic = settings.topic(channel)
    consumer = AIOKafkaConsumer(**client_kwargs(settings), enable_auto_commit=False)
    with kafka_errors(settings, f"read {topic}"):
        try:
            await consumer.start()
            partitions = await topic_partitions(consumer, settings, topic)
            tp = TopicPartition(topic, partition_for(key, len(partitions)))
            offsets = await (
                consumer.end_offsets([tp]) if from_end else consumer.beginning_offsets([tp])
            )
        finally:
            await stop_clients(consumer)
    return HistoryCursor(topic, tp.partition, int(offsets[tp]))


async def history_cursor(settings: Settings, workflow_id: str, *, from_end: bool) -> HistoryCursor:
    """The workflow's history partition, positioned at its end (new workflow) or start."""
    return await key_cursor(settings, "workflow.events", workflow_id, from_end=from_end)


async def publish(settings: Settings, *events: Event, topic: str) -> None:
    """Produce events (keyed by their subject) and wait until the broker has them."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    producer = AIOKafkaProducer(**client_kwargs(settings), acks="all")
    with kafka_errors(settings, f"publish to {topic}"):
        try:
            await producer.start()
            for event in events:
                key, value, headers = mapper.encode(event)
                await producer.send_and_wait(topic, value, key=key, headers=headers)
        finally:
            await stop_clients(producer)


@dataclass
class Submitted:
    """A published workflow and where its history starts."""

    workflow_id: str
    event: PlanCreated | None
    """The plan published, or None for a plain request that the planner decomposes."""
    cursor: HistoryCursor
    submitted_at: float = field(default_factory=time.monotonic)


async def submit_plan(settings: Settings, request: PlanRequest) -> Submitted:
    """Publish the plan as a ``PlanCreated`` on the plans topic; returns the ids and cursor."""
    workflow_id = request.workflow_id or new_workflow_id()
    request_id = request.request_id or f"req-{workflow_id}"
    plan = request.plan
    if plan.plan_id == "plan":
        plan = plan.model_copy(update={"plan_id": workflow_id})
    event = PlanCreated(
        **meta(cli_producer(), correlation_id=request_id),
        workflow_id=workflow_id,
        request_id=request_id,
        plan=plan,
    )
    cursor = await history_cursor(settings, workflow_id, from_end=True)
    await publish(settings, event, topic=settings.topic("plans"))
    return Submitted(workflow_id, event, cursor)


async def follow_history(
    settings: Settings,
    workflow_id: str,
    cursor: HistoryCursor,
    *,
    until_final: bool = True,
    idle_timeout: float | None = None,
) -> AsyncIterator[WorkflowEvent]:
    """Yield the workflow's history events from ``cursor`` on, live, until it ends.

    ``idle_timeout`` bounds the wait for the next event (None waits for ever); on expiry a
    ``MeshError`` says that nothing is processing the workflow.
    """
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), enable_auto_commit=False, isolation_level="read_committed"
    )
    tp = TopicPartition(cursor.topic, cursor.partition)
    try:
        with kafka_errors(settings, "follow the workflow history"):
            await consumer.start()
        consumer.assign([tp])
        consumer.seek(tp, cursor.offset)
        last_seen = time.monotonic()
        while True:
            with kafka_errors(settings, "follow the workflow history"):
                batch = await consumer.getmany(tp, timeout_ms=500)
            records = batch.get(tp, [])
            if not records:
                if idle_timeout is not None and time.monotonic() - last_seen > idle_timeout:
                    raise MeshError(
                        f"no progress on workflow {workflow_id} for {idle_timeout:.0f} s; "
                        "is the Workflow Manager running (mesh dev / mesh run workflows)?"
                    )
                continue
            last_seen = time.monotonic()
            for record in records:
                cursor.offset = record.offset + 1
                if record.key is None or record.key.decode(errors="replace") != workflow_id:
                    continue
                try:
                    event = mapper.decode(record.value, record.headers)
                except MeshError:
                    continue  # not ours to judge: the manager dead-letters what it cannot read
                if not isinstance(event, WorkflowEvent) or event.workflow_id != workflow_id:
                    continue
                yield event
                if until_final and event.type in FINAL_TYPES:
                    return
    finally:
        await stop_clients(consumer)
