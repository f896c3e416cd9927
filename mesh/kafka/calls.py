"""The serving side of the client API: ``ApiCall`` in on ``calls``, ``Reply`` out on ``replies``.

Each component that answers calls runs a :class:`CallServer` with a table of handlers (method
name → async function of the call's arguments returning JSON): a FastStream subscriber on the
component's :class:`~mesh.kafka.faststream.EventRouter` (:meth:`CallServer.subscribe`), or, for a
component whose main loop is raw aiokafka, on a broker of its own (:meth:`CallServer.run`). Every
replica of a component reads ``calls`` in the component's own consumer group, so exactly one
replica answers a call; calls for other components are skipped, a call older than its timeout is
not answered (its caller has given up), and a record that is not a valid call goes to the
dead-letter topic, once, and the server moves on.

Handlers raise ``MeshError`` (or ``ValueError``) for a refused call: the reply carries the error's
class, its one-line message and whether retrying may help.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from pydantic import BaseModel, JsonValue, TypeAdapter, ValidationError

from mesh.errors import InvalidEvent, MeshError
from mesh.events import ApiCall, ApiComponent, Event, Producer, Reply, ReplyError, meta
from mesh.kafka.clients import stop_clients
from mesh.kafka.dlq import owns, skipped
from mesh.kafka.faststream import EventRouter, faststream_broker, start_broker
from mesh.kafka.records import ConsumedRecord
from mesh.log import get_logger
from mesh.settings import Settings

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
"""One API method: the call's arguments in, a JSON-able result out (models and dataclasses too)."""

log = get_logger("mesh.calls")


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
    """Answers a component's calls: on the component's router, or until stopped on its own."""

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
        self.ready = asyncio.Event()
        """Set once the group has given this replica its share of ``calls``."""
        self.answered = 0
        self._router: EventRouter | None = None

    def subscribe(self, router: EventRouter) -> None:
        """Answer calls through ``router`` (which must publish to ``replies``)."""
        self._router = router
        router.events(
            "calls",
            group_id=self.group_id,
            listener=_Assigned(self.ready),
            title="calls",
            description=f"ApiCall for the {self.component} (others are skipped)",
        )(self.on_call)

    async def run(self, stop: asyncio.Event) -> None:
        """Answer calls on a broker of this server's own until ``stop`` is set."""
        router = EventRouter(
            self.settings, component=self.component, me=self.me, publishes=("replies",)
        )
        self.subscribe(router)
        broker = faststream_broker(self.settings)
        broker.include_router(router)
        try:
            await start_broker(broker, self.settings)
            await stop.wait()
        finally:
            await stop_clients(broker)

    async def on_call(self, event: Event, record: ConsumedRecord) -> None:
        """Answer one call (if it is this component's and its caller still waits)."""
        router = self._router
        if router is None:
            raise RuntimeError("the call server is not subscribed to a router")
        if not isinstance(event, ApiCall):
            error = InvalidEvent(f"expected an api.called event, got {event.type}")
            if owns(self.component, "calls"):
                await router.dead_letter(record, error)
            else:
                skipped(self.component, record, error)
            return
        if event.component != self.component:
            return
        if expired(event):
            log.info(
                "expired call skipped", method=event.method, correlation_id=event.correlation_id
            )
            return
        reply = await answer(event, self.handlers, self.me)
        await router.send("replies", reply)
        self.answered += 1
        log.info(
            "call answered",
            method=event.method,
            ok=reply.ok,
            correlation_id=event.correlation_id,
        )


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, ready: asyncio.Event) -> None:
        self.ready = ready

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            self.ready.set()


__all__ = ["CallServer", "Handler", "answer", "expired", "to_json"]
