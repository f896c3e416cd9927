"""The serving side of the client API: ``ApiCall`` in on ``calls``, ``Reply`` out on ``replies``.

Each component that answers calls runs a :class:`CallServer` beside its main loop, with a table of
handlers (method name → async function of the call's arguments returning JSON). Every replica of a
component reads ``calls`` in the component's own consumer group, so exactly one replica answers a
call; calls for other components are skipped, a call older than its timeout is not answered (its
caller has given up), and a record that is not a valid call goes to the dead-letter topic.

Handlers raise ``MeshError`` (or ``ValueError``) for a refused call: the reply carries the error's
class, its one-line message and whether retrying may help.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import BaseModel, JsonValue, TypeAdapter, ValidationError

from mesh.errors import EventError, MeshError
from mesh.events import ApiCall, ApiComponent, Mapper, Producer, Reply, ReplyError, meta
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.dlq import dead_letter
from mesh.log import get_logger
from mesh.settings import Settings

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
"""One API method: the call's arguments in, a JSON-able result out (models and dataclasses too)."""

log = get_logger("mesh.calls")

_POLL_MS = 200


def to_json(value: Any) -> JsonValue:
    """A handler's result as plain JSON: pydantic models and dataclasses are dumped."""
    if isinstance(value, BaseModel):
        dumped: JsonValue = value.model_dump(mode="json")
        return dumped
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return TypeAdapter(type(value)).dump_python(value, mode="json")  # type: ignore[no-any-return]
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    return value  # type: ignore[no-any-return]


async def answer(call: ApiCall, handlers: Mapping[str, Handler], me: Producer) -> Reply:
    """Run the call's handler and wrap the outcome (result or error) in a ``Reply``."""
    handler = handlers.get(call.method)
    try:
        if handler is None:
            known = ", ".join(sorted(handlers))
            raise MeshError(f"{call.component} has no method {call.method!r} (it has: {known})")
        result = to_json(await handler(dict(call.args)))
    except (MeshError, ValueError, KeyError, TypeError, ValidationError) as exc:
        retriable = isinstance(exc, MeshError) and exc.retriable
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, ValidationError | KeyError | TypeError):
            message = f"bad arguments for {call.method}: {message}"
        error = ReplyError(kind=type(exc).__name__, message=message[:1000], retriable=retriable)
        return Reply(**meta(me, causation=call), ok=False, error=error)
    return Reply(**meta(me, causation=call), ok=True, result=result)


def expired(call: ApiCall, now: datetime | None = None) -> bool:
    """True if the caller has stopped waiting for ``call``."""
    age = (now or datetime.now(UTC)) - call.occurred_at
    return age.total_seconds() * 1000 > call.timeout_ms


class CallServer:
    """Answers a component's calls until stopped (run it as a task beside the component)."""

    def __init__(
        self,
        settings: Settings,
        component: ApiComponent,
        handlers: Mapping[str, Handler],
        *,
        me: Producer,
        group_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.component = component
        self.handlers = handlers
        self.me = me
        self.group_id = group_id or settings.group(f"{component}-calls")
        self.mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        self.ready = asyncio.Event()
        self.answered = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume ``calls`` and answer those for this component, until ``stop`` is set."""
        kwargs = client_kwargs(self.settings)
        consumer = AIOKafkaConsumer(
            **kwargs,
            group_id=self.group_id,
            enable_auto_commit=False,
            # From the start on a group's first run: a call published while the group was still
            # joining must be answered; older calls are skipped as expired.
            auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(**kwargs, acks="all")
        try:
            with kafka_errors(self.settings, f"start the {self.component}'s API"):
                await consumer.start()
                await producer.start()
            consumer.subscribe([self.settings.topic("calls")])
            while not stop.is_set():
                with kafka_errors(self.settings, "read API calls"):
                    batch = await consumer.getmany(timeout_ms=_POLL_MS)
                    if consumer.assignment():
                        self.ready.set()
                for tp, records in batch.items():
                    for record in records:
                        await self._handle(record, producer)
                    with kafka_errors(self.settings, "commit API calls"):
                        await consumer.commit({tp: records[-1].offset + 1})
        finally:
            await stop_clients(consumer, producer)

    async def _handle(self, record: Any, producer: AIOKafkaProducer) -> None:
        try:
            call = self.mapper.decode(record.value, record.headers)
            if not isinstance(call, ApiCall):
                raise EventError(f"expected an api.called event, got {call.type}")
        except EventError as exc:
            letter = dead_letter(
                record,
                exc,
                self.component,
                producer=self.me,
                max_event_bytes=self.settings.max_event_bytes,
            )
            await self._send(producer, "dlq", letter.key, letter.value, letter.headers)
            return
        if call.component != self.component:
            return
        if expired(call):
            log.info("expired call skipped", method=call.method, correlation_id=call.correlation_id)
            return
        reply = await answer(call, self.handlers, self.me)
        key, value, headers = self.mapper.encode(reply)
        await self._send(producer, "replies", key, value, headers)
        self.answered += 1
        log.info(
            "call answered",
            method=call.method,
            ok=reply.ok,
            correlation_id=call.correlation_id,
        )

    async def _send(
        self,
        producer: AIOKafkaProducer,
        channel: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
    ) -> None:
        with kafka_errors(self.settings, f"write to {channel}"):
            await producer.send_and_wait(
                self.settings.topic(channel), value, key=key, headers=headers
            )


__all__ = ["CallServer", "Handler", "answer", "expired", "to_json"]
