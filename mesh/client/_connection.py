"""The client's one path to the mesh: a producer, and a consumer of ``replies``.

Every publish goes through :meth:`Connection.publish`; a call publishes a request with a fresh
correlation id — an ``ApiCall`` on ``calls``, a workflow command on ``commands``, a lifecycle
request on ``agents.commands`` — and awaits the ``Reply`` with that id, which the consumer
(positioned at the end of ``replies`` before the first call) hands over. No answer within the
timeout is a ``NoAnswer`` that names the component to start; an answer with an error is a
``CallFailed`` with the component's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import JsonValue

from mesh._aio import cancel_and_wait
from mesh.errors import BrokerUnavailable, CallFailed, EventError, MeshError, NoAnswer
from mesh.events import (
    ApiCall,
    ApiComponent,
    Event,
    ExecutionPlan,
    Mapper,
    PayloadRef,
    Reply,
    meta,
    uuid7,
)
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, diagnose_connect_failure, kafka_errors
from mesh.kafka.partitions import topic_partitions
from mesh.kafka.payloads import PayloadStore
from mesh.settings import Settings

from ._history import cli_producer

DEFAULT_TIMEOUT = 30.0

NAMES = {
    "task-planner": ("Task Planner", "mesh run planner"),
    "workflow-manager": ("Workflow Manager", "mesh run workflows"),
    "agent-manager": ("Agent Manager", "mesh run agents"),
    "resource-allocator": ("Resource Allocator", "mesh run resources"),
}
"""Component → how people call it, and the command that runs it."""


def call_id(method: str) -> str:
    """A fresh correlation id that says what it is for (``pause-0193…``)."""
    return f"{method.replace('_', '-')}-{uuid7().hex[:20]}"


class Connection:
    """A started producer and reply reader; use ``async with`` (see the module's docstring)."""

    def __init__(self, settings: Settings | None = None, *, timeout: float = DEFAULT_TIMEOUT):
        self.settings = settings or Settings()
        self.timeout = timeout
        self._me = cli_producer()
        self._mapper = Mapper(max_event_bytes=self.settings.max_event_bytes)
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect, and take the end of ``replies`` so that no answer can be missed."""
        kwargs = client_kwargs(self.settings)
        self._producer = AIOKafkaProducer(**kwargs, acks="all")
        self._consumer = AIOKafkaConsumer(**kwargs, enable_auto_commit=False)
        try:
            try:
                with kafka_errors(self.settings, "connect the client"):
                    await self._producer.start()
            except BrokerUnavailable as exc:  # a refused login looks like a broker that is down
                raise await diagnose_connect_failure(self.settings, exc) from exc.__cause__
            with kafka_errors(self.settings, "connect the client"):
                await self._consumer.start()
                topic = self.settings.topic("replies")
                partitions = await topic_partitions(self._consumer, self.settings, topic)
                tps = [TopicPartition(topic, p) for p in partitions]
                self._consumer.assign(tps)
                await self._consumer.seek_to_end(*tps)
                for tp in tps:  # resolve the positions now, before any call is published
                    await self._consumer.position(tp)
        except BaseException:
            await self.close()
            raise
        self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        try:
            await cancel_and_wait(reader)
        finally:  # even when cancelled while the reader ends
            await stop_clients(self._consumer, self._producer)
            self._consumer = self._producer = None

    async def _read_replies(self) -> None:
        assert self._consumer is not None
        try:
            while True:
                with kafka_errors(self.settings, "read replies"):
                    batch = await self._consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        with contextlib.suppress(EventError):
                            reply = self._mapper.decode(record.value, record.headers)
                            waiting = self._waiting.get(reply.correlation_id)
                            if isinstance(reply, Reply) and waiting and not waiting.done():
                                waiting.set_result(reply)
        except MeshError as exc:  # the broker went away: every pending call learns why
            for waiting in self._waiting.values():
                if not waiting.done():
                    waiting.set_exception(exc)

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None or self._reader is None:
            raise MeshError("the client is not started; use 'async with Client(...)'")
        if self._reader.done():
            raise MeshError("the client lost its connection to Kafka; open a new one")
        return self._producer

    async def publish(self, event: Event, channel: str) -> None:
        """Publish ``event`` on ``channel`` (keyed by its subject) once the broker has it."""
        producer = self._started()
        key, value, headers = self._mapper.encode(event)
        with kafka_errors(self.settings, f"publish to {channel}"):
            await producer.send_and_wait(
                self.settings.topic(channel), value, key=key, headers=headers
            )

    async def store_plan(self, plan: ExecutionPlan, *, correlation_id: str) -> PayloadRef | None:
        """Put ``plan`` on ``payloads`` if it is over the payload threshold (its reference,
        once every chunk is acknowledged), else None: it rides inline."""
        producer = self._started()
        store = PayloadStore(self.settings, self._mapper, self._me)
        with kafka_errors(self.settings, "publish to payloads"):
            return await store.put_plan(producer, plan, correlation_id=correlation_id)

    async def request(
        self, event: Event, channel: str, *, who: str, within: float | None = None
    ) -> JsonValue:
        """Publish ``event`` on ``channel`` and return the result of its ``Reply``."""
        self._started()
        within = within if within is not None else self.timeout
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[event.correlation_id] = future
        try:
            await self.publish(event, channel)
            try:
                reply = await asyncio.wait_for(future, within)
            except TimeoutError:
                name, command = NAMES.get(who, (who, f"mesh run {who}"))
                raise NoAnswer(
                    f"no {name} answered within {within:g} s; is '{command}' (or mesh dev) "
                    "running against this cluster and topic prefix?"
                ) from None
        finally:
            self._waiting.pop(event.correlation_id, None)
        if not reply.ok:
            assert reply.error is not None
            raise CallFailed(
                f"{NAMES.get(who, (who,))[0]}: {reply.error.message}",
                kind=reply.error.kind,
                retriable=reply.error.retriable,
            )
        return reply.result

    async def call(
        self,
        component: ApiComponent,
        method: str,
        args: Mapping[str, Any] | None = None,
        *,
        within: float | None = None,
    ) -> JsonValue:
        """Call ``method`` of ``component``'s API with JSON ``args``; its JSON result."""
        within = within if within is not None else self.timeout
        event = ApiCall(
            **meta(self._me, correlation_id=call_id(method)),
            component=component,
            method=method,
            args=json.loads(json.dumps(dict(args or {}), default=str)),
            timeout_ms=max(1, int(within * 1000)),
        )
        return await self.request(event, "calls", who=component, within=within)
