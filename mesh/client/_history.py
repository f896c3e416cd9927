"""Following what the mesh answers: a key's records on one partition, live, from a cursor.

A client learns how its request went by reading the one partition its key maps to — ``plans``
for the planner's answer, ``workflow.events`` for the workflow's history — from the end offset
taken *before* publishing, so it neither misses the first answer nor scans old records.
:class:`WorkflowRun` is the handle on a started workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.errors import MeshError
from mesh.events import Event, ExecutionPlan, Mapper, Producer, WorkflowEvent, uuid7
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.partitions import partition_for, topic_partitions
from mesh.kafka.payloads import with_plan
from mesh.settings import Settings
from mesh.workflows import WorkflowState, evolve

FINAL_TYPES = frozenset({"workflow.completed", "workflow.failed", "workflow.cancelled"})


def cli_producer() -> Producer:
    """Who publishes from a client (host and pid, for the history's producer field)."""
    return Producer(component="cli", instance=f"{socket.gethostname()}-{os.getpid()}")


def new_workflow_id() -> str:
    """A fresh, time-ordered workflow id."""
    return f"wf-{uuid7().hex[:20]}"


@dataclass
class HistoryCursor:
    """Where a key's records are read from: a topic's partition and a starting offset."""

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


async def follow_key(
    settings: Settings,
    key: str,
    cursor: HistoryCursor,
    *,
    idle: tuple[float, str] | None = None,
    until: int | None = None,
) -> AsyncGenerator[Event, None]:
    """The events keyed ``key`` on the cursor's partition from its offset on, live, for ever
    (or, with ``until``, up to that offset: the end the partition had when it was taken).

    The cursor advances as records are read, so a later follow goes on where this one stopped.
    Records that are not readable events are skipped: not ours to judge (the topic's consumer
    dead-letters them). ``idle`` = (seconds, message): a ``MeshError`` with the message when the
    partition shows nothing new for that long.
    """
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), enable_auto_commit=False, isolation_level="read_committed"
    )
    tp = TopicPartition(cursor.topic, cursor.partition)
    wanted = key.encode()
    try:
        with kafka_errors(settings, f"read {cursor.topic}"):
            await consumer.start()
        consumer.assign([tp])
        consumer.seek(tp, cursor.offset)
        last_seen = time.monotonic()
        while True:
            with kafka_errors(settings, f"read {cursor.topic}"):
                batch = await consumer.getmany(tp, timeout_ms=500)
            records = batch.get(tp, [])
            if not records:
                if until is not None:
                    # The position passes transaction markers that yield no record.
                    cursor.offset = max(cursor.offset, await consumer.position(tp))
                    if cursor.offset >= until:
                        return
                if idle is not None and time.monotonic() - last_seen > idle[0]:
                    raise MeshError(idle[1])
                continue
            last_seen = time.monotonic()
            for record in records:
                cursor.offset = record.offset + 1
                if record.key != wanted:
                    continue
                try:
                    event = mapper.decode(record.value, record.headers)
                except MeshError:
                    continue
                yield await with_plan(settings, mapper, event)  # a plan by reference: fetched
            if until is not None and cursor.offset >= until:
                return
    finally:
        await stop_clients(consumer)


async def follow_history(
    settings: Settings,
    workflow_id: str,
    cursor: HistoryCursor,
    *,
    until_final: bool = True,
    idle_timeout: float | None = None,
) -> AsyncGenerator[WorkflowEvent, None]:
    """Yield the workflow's history events from ``cursor`` on, live, until it ends.

    ``idle_timeout`` bounds the wait for the next event (None waits for ever); on expiry a
    ``MeshError`` says that nothing is processing the workflow.
    """
    idle = None
    if idle_timeout is not None:
        idle = (
            idle_timeout,
            f"no progress on workflow {workflow_id} for {idle_timeout:.0f} s; "
            "is the Workflow Manager running (mesh dev / mesh run workflows)?",
        )
    async with contextlib.aclosing(follow_key(settings, workflow_id, cursor, idle=idle)) as events:
        async for event in events:
            if not isinstance(event, WorkflowEvent) or event.workflow_id != workflow_id:
                continue
            yield event
            if until_final and event.type in FINAL_TYPES:
                return


@dataclass
class WorkflowRun:
    """A workflow a client started: follow its events, or wait for its end.

    Independent of the client that started it (it reads the history with a consumer of its
    own), so it can be followed after the client closed.
    """

    settings: Settings = field(repr=False)
    workflow_id: str
    cursor: HistoryCursor = field(repr=False)
    """Where its history is read from: the end of its partition before it was published."""
    request_id: str | None = None
    plan: ExecutionPlan | None = field(default=None, repr=False)
    """The plan that runs, when the client knows it (it published it, or waited for it)."""
    repeated: bool = False
    """The request had been submitted before and its workflow had started: this run follows
    that workflow from its start."""

    async def events(
        self, *, idle_timeout: float | None = None
    ) -> AsyncGenerator[WorkflowEvent, None]:
        """The workflow's history events from its start, live, until it ends (``idle_timeout``:
        a ``MeshError`` when nothing happens for that long)."""
        history = follow_history(
            self.settings, self.workflow_id, self.cursor, idle_timeout=idle_timeout
        )
        async with contextlib.aclosing(history) as events:
            async for event in events:
                yield event

    async def wait(self, within: float | None = None) -> WorkflowState:
        """The workflow's state once it completed, failed or was cancelled."""
        state: WorkflowState | None = None
        async with asyncio.timeout(within), contextlib.aclosing(self.events()) as events:
            async for event in events:  # ends with the final event
                state = evolve(state, event)
        if state is None:
            raise MeshError(f"workflow {self.workflow_id} ended without a history")
        return state
