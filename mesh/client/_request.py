"""Publishing a plain request (the planner decomposes it) and waiting for its plan.

The planner answers on ``plans`` keyed by the workflow id it derives from the request id, so the
client computes that id, notes where the plan and history partitions end *before* publishing, and
then reads only those partitions.
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from mesh.errors import MeshError
from mesh.events import Mapper, PlanCreated, PlanRejected, TaskRequest
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.settings import Settings

from ._submit import HistoryCursor, Submitted, history_cursor, key_cursor, publish


async def submit_request(
    settings: Settings, request: TaskRequest, workflow_id: str
) -> tuple[Submitted, HistoryCursor]:
    """Publish ``request`` on ``requests``; returns the history cursor (for the workflow the
    planner will start) and the plans cursor to wait on."""
    plans = await key_cursor(settings, "plans", workflow_id, from_end=True)
    history = await history_cursor(settings, workflow_id, from_end=True)
    await publish(settings, request, topic=settings.topic("requests"))
    return Submitted(workflow_id, None, history), plans


async def wait_for_plan(
    settings: Settings, workflow_id: str, cursor: HistoryCursor, *, within: float
) -> PlanCreated | PlanRejected:
    """The planner's answer for ``workflow_id``; a MeshError if none comes in time."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), enable_auto_commit=False, isolation_level="read_committed"
    )
    tp = TopicPartition(cursor.topic, cursor.partition)
    try:
        with kafka_errors(settings, "wait for the plan"):
            await consumer.start()
        consumer.assign([tp])
        consumer.seek(tp, cursor.offset)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with kafka_errors(settings, "wait for the plan"):
                batch = await consumer.getmany(tp, timeout_ms=500)
            for record in batch.get(tp, []):
                if record.key is None or record.key.decode(errors="replace") != workflow_id:
                    continue
                try:
                    event = mapper.decode(record.value, record.headers)
                except MeshError:
                    continue
                if isinstance(event, PlanCreated | PlanRejected):
                    return event
    finally:
        await stop_clients(consumer)
    raise MeshError(
        f"no plan for workflow {workflow_id} within {within:.0f} s; is the planner running "
        "(mesh dev / mesh run planner)?"
    )
