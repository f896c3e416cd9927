"""FastStream for the mesh's group consumers: the one place that builds a ``KafkaBroker``.

Components whose processing needs no Kafka transaction (the API's ``calls`` server, the Agent
Manager's ``agents.commands`` server, the planner, the Resource Allocator's inputs) run as
FastStream subscribers on one :class:`EventRouter` per component, included once in the broker
that :func:`faststream_broker` builds from ``Settings``. The router speaks mesh events:

- decoding goes through the mesh ``Mapper`` once, as the subscriber's decoder. The decoder never
  raises: a record the mapper refuses (not JSON, nested too deep, not UTF-8, too large, an
  unknown type or version, no key) becomes :class:`Undecodable`, which the router dead-letters
  once with its reason before the offset is committed, so the consumer moves on — if its
  component owns the topic (``mesh.kafka.dlq.DLQ_OWNERS``); other components skip it with a
  DEBUG line, and a tombstone on a compacted topic is skipped as no record at all. (FastStream's
  default decoder would raise, e.g. ``RecursionError`` on deep JSON, before any handler ran,
  and its nack would redeliver the record forever.) The parser is made safe the same way: a
  header that is not UTF-8 no longer fails FastStream before the mapper can say so.
- handlers take the decoded event and the raw record (a dead letter needs the record's topic,
  partition and offset) and decide what else is a dead letter. A handler that raises a
  ``BrokerError`` or a retriable ``MeshError`` has the record redelivered after a capped pause
  (the record is not at fault); any other exception dead-letters the record with its reason.
- offsets are committed after handling (at-least-once; handlers are idempotent).
- encoding goes through the same ``Mapper``: :meth:`EventRouter.send` publishes an event (or an
  already encoded record) with its key and mesh headers.

FastStream has no Kafka transactions (faststream#1237, #2512), so the transactional loops stay on
raw aiokafka; and not every FastStream version this project allows publishes a null value as a
tombstone (older ones send ``b""``), so writers of compacted topics keep an aiokafka producer for
tombstones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from aiokafka import ConsumerRebalanceListener
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker, KafkaRouter, Topic
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.publisher import DefaultPublisher
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from mesh._aio import cancel_and_wait
from mesh.errors import BrokerError, EventError, MeshError
from mesh.events import HEADER_CORRELATION_ID, Encoded, Event, Mapper, Producer
from mesh.kafka.connection import client_kwargs, kafka_errors, open_admin
from mesh.kafka.dlq import channel_of, dead_letter, owns, skipped, tombstone
from mesh.kafka.faults import ack_seconds, acknowledged
from mesh.kafka.records import ConsumedRecord
from mesh.log import clear_event_context, get_logger
from mesh.observe import metrics
from mesh.settings import Settings

EventHandler = Callable[[Event, ConsumedRecord], Awaitable[None]]
"""Handles one decoded event; the raw record is there for dead letters and positions."""

UnreadableHandler = Callable[[ConsumedRecord, Exception], Awaitable[None]]
"""Takes a record the mapper refused, with the reason, instead of the dead-letter topic."""

log = get_logger("mesh.faststream")

_RETRY_FIRST = 0.5
_RETRY_MAX = 10.0
_BATCH_WAIT_MS = 10
"""How long a batch subscriber's fetch waits for records. FastStream sleeps as long again after
a fetch that found none, and a record that arrives meanwhile waits out that sleep: its default
(200 ms) put up to 200 ms on the resource gate's hop; a fetch returns as soon as records come."""


def faststream_broker(settings: Settings) -> KafkaBroker:
    """A FastStream KafkaBroker with the mesh's connection settings (SASL/TLS included)."""
    kwargs = client_kwargs(settings)
    security: BaseSecurity | None = None
    ssl_context = kwargs.get("ssl_context")
    use_ssl = settings.security_protocol in ("SSL", "SASL_SSL")
    if settings.security_protocol.startswith("SASL"):
        sasl = {
            "PLAIN": SASLPlaintext,
            "SCRAM-SHA-256": SASLScram256,
            "SCRAM-SHA-512": SASLScram512,
        }
        security = sasl[kwargs["sasl_mechanism"]](
            kwargs["sasl_plain_username"] or "",
            kwargs["sasl_plain_password"] or "",
            ssl_context=ssl_context,
            use_ssl=use_ssl,
        )
    elif use_ssl:
        security = BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    return KafkaBroker(
        [server.strip() for server in settings.bootstrap_servers.split(",")],
        client_id=settings.client_id,
        request_timeout_ms=settings.request_timeout_ms,
        security=security,
        acks="all",
        logger=logging.getLogger("mesh.faststream"),
        log_level=logging.DEBUG,  # FastStream's per-message lines: debug, not the mesh's INFO
    )


async def start_broker(broker: KafkaBroker, settings: Settings) -> None:
    """``broker.start()``, with a clear error when Kafka is out of reach and with its
    subscribers started together rather than in turn.

    - FastStream leaks its producer when the first connection fails (an "Unclosed
      AIOKafkaProducer" at exit) and reports a refused login like a missing broker, so an
      admin client tries first, closed either way, and says which it was.
    - aiokafka's ``start`` of a group consumer waits until the group has assigned it
      partitions, and FastStream starts subscribers one after another, so a component with two
      groups (its inputs and its ``calls``) would wait for one join after the other: on the
      embedded broker a first join takes seconds.

    Otherwise the same steps as ``KafkaBroker.start``: connect, subscribers, publishers.
    """
    async with open_admin(settings):
        pass
    with kafka_errors(settings, "connect to Kafka"):
        await broker.connect()
        starting = [asyncio.ensure_future(sub.start()) for sub in broker.subscribers]
        try:
            await asyncio.gather(*starting)  # the first failure as itself
        finally:
            await cancel_and_wait(*starting)
        for publisher in broker.publishers:
            await publisher.start()
    broker.running = True
    for sub in broker.subscribers:  # lag from the start, before a group's first record
        group = _metered.get(sub)
        consumer = getattr(sub, "consumer", None)
        if group is not None and consumer is not None:
            metrics.watch(consumer, group)


@dataclass(frozen=True)
class Undecodable:
    """What the decoder gives for a record the mapper refused: dead-lettered, never raised."""

    error: Exception


class EventRouter(KafkaRouter):
    """A component's one router: mesh events in (:meth:`events`) and out (:meth:`send`).

    ``component`` and ``me`` sign dead letters; ``publishes`` names the channels the component
    writes (``dlq`` is always one): FastStream publishers must exist before the router is
    included in its broker.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        component: str,
        me: Producer,
        publishes: Sequence[str] = (),
        mapper: Mapper | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.component = component
        self.me = me
        self.mapper = mapper or Mapper(max_event_bytes=settings.max_event_bytes)
        self._outlets: dict[str, DefaultPublisher] = {}
        for channel in dict.fromkeys(("dlq", *publishes)):
            self._outlets[channel] = self.publisher(
                settings.topic(channel), title=channel, description=f"written by {component}"
            )

    def events(
        self,
        *channels: str,
        group_id: str | None,
        batch: int | None = None,
        after: Callable[[], Awaitable[None]] | None = None,
        unreadable: UnreadableHandler | None = None,
        listener: ConsumerRebalanceListener | None = None,
        isolation_level: Literal["read_uncommitted", "read_committed"] = "read_uncommitted",
        title: str | None = None,
        description: str | None = None,
    ) -> Callable[[EventHandler], EventHandler]:
        """Subscribe the decorated handler to ``channels`` in consumer group ``group_id``.

        From the earliest offset on a group's first run. ``after`` (e.g. a flush of what the
        handler produced) is awaited after each record, or with ``batch`` after each batch of
        up to that many records, before the commit. Records the mapper refuses go to the
        dead-letter topic if this component owns their topic (else they are skipped), or to
        ``unreadable`` instead, which then judges them itself.
        ``group_id`` None reads without a group (nothing is committed).
        """
        # Topics come from topics/ (mesh topics apply): FastStream must not create them.
        topics = [Topic(self.settings.topic(c), declare=False) for c in channels]
        decoder = _Decoder(self.mapper)
        common: dict[str, Any] = {
            "group_id": group_id,
            "fetch_max_wait_ms": self.settings.fetch_max_wait_ms,
            "auto_offset_reset": "earliest",
            "isolation_level": isolation_level,
            "listener": listener,
            "ack_policy": AckPolicy.NACK_ON_ERROR if group_id else AckPolicy.ACK_FIRST,
            "title": title or "+".join(channels),
            "description": description,
        }

        # Without a group (a reader of its own), metrics name what it reads instead.
        metered = group_id or "read:" + "+".join(channels)

        def register(handle: EventHandler) -> EventHandler:
            flow = _Flow(handle, unreadable, after)

            async def consume_one(message: KafkaMessage) -> None:
                outcome = cast("Event | Undecodable", await message.decode())
                record = _single(message.raw_message)
                began = time.perf_counter()
                await self._guarded(flow, [(record, outcome)])
                _measured(metered, message, [record], began)

            async def consume_batch(message: KafkaMessage) -> None:
                outcomes = cast("list[Event | Undecodable]", await message.decode())
                records = message.raw_message
                if not isinstance(records, tuple | list):  # a tuple (a list in TestKafkaBroker)
                    raise TypeError("a batch subscriber's message holds a sequence of records")
                began = time.perf_counter()
                await self._guarded(flow, list(zip(records, outcomes, strict=True)))
                _measured(metered, message, records, began)

            if batch is None:
                subscriber = self.subscriber(*topics, parser=_parse, decoder=decoder.one, **common)
                subscriber(consume_one)
                _metered[subscriber] = metered
            else:
                subscriber = self.subscriber(
                    *topics,
                    parser=_parse_batch,
                    decoder=decoder.many,
                    batch=True,
                    max_records=batch,
                    batch_timeout_ms=_BATCH_WAIT_MS,
                    **common,
                )
                subscriber(consume_batch)
                _metered[subscriber] = metered
            return handle

        return register

    async def send(self, channel: str, record: Event | Encoded) -> None:
        """Publish an event (encoded by the mapper) or an encoded record to ``channel``."""
        encoded = record if isinstance(record, Encoded) else self.mapper.encode(record)
        publisher = self._outlets.get(channel)
        if publisher is None:
            raise RuntimeError(f"{self.component} does not declare {channel!r} in publishes")
        headers = {name: value.decode() for name, value in encoded.headers}
        with kafka_errors(self.settings, f"publish to {self.settings.topic(channel)}"):
            published = publisher.publish(
                encoded.value,
                key=encoded.key,
                headers=headers,
                correlation_id=headers.get(HEADER_CORRELATION_ID),
            )
            await acknowledged(published, ack_seconds(self.settings.request_timeout_ms))
        metrics.SENT.labels(self.settings.topic(channel)).inc()

    async def dead_letter(self, record: ConsumedRecord, error: BaseException) -> None:
        """Send ``record`` to ``dlq`` with ``error`` as its reason."""
        letter = dead_letter(
            record,
            error,
            self.component,
            producer=self.me,
            max_event_bytes=self.settings.max_event_bytes,
        )
        await self.send("dlq", letter)

    # -- handling ------------------------------------------------------------------------------

    async def _guarded(
        self, flow: _Flow, pairs: Sequence[tuple[ConsumedRecord, Event | Undecodable]]
    ) -> None:
        """Handle the records, then ``after``; if that fails (a broker fault, or a bug in
        ``after``), pause and have them all redelivered: nothing is committed past them."""
        try:
            for record, outcome in pairs:
                await self._deliver(flow, record, outcome)
            if flow.after is not None:
                await flow.after()
        except Exception as exc:
            pause = min(_RETRY_MAX, _RETRY_FIRST * 2**flow.failures)
            flow.failures += 1
            log.warning(
                "records to be redelivered",
                error=f"{type(exc).__name__}: {exc}",
                after_seconds=pause,
                exc_info=not isinstance(exc, MeshError),
            )
            await asyncio.sleep(pause)  # paced: a broken broker gets no request storm
            raise NackMessage() from exc
        flow.failures = 0
        flow.lettered.clear()

    async def _deliver(
        self, flow: _Flow, record: ConsumedRecord, outcome: Event | Undecodable
    ) -> None:
        clear_event_context()
        where = (record.topic, record.partition, record.offset)
        if where in flow.lettered:  # redelivered with its batch: dead-lettered already
            return
        if isinstance(outcome, Undecodable):
            channel = channel_of(self.settings, record.topic)
            if flow.unreadable is not None:
                await flow.unreadable(record, outcome.error)
            elif tombstone(channel, record):
                pass  # a deletion on a compacted topic: nothing to handle, nothing bad
            elif owns(self.component, channel):
                await self.dead_letter(record, outcome.error)
                flow.lettered.add(where)
            else:
                skipped(self.component, record, outcome.error)
            return
        try:
            await flow.handle(outcome, record)
        except Exception as exc:
            if isinstance(exc, MeshError) and _redeliver(exc):
                raise
            log.error(
                "handler failed",
                topic=record.topic,
                offset=record.offset,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=not isinstance(exc, MeshError),
            )
            await self.dead_letter(record, exc)
            flow.lettered.add(where)


_metered: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
"""The group (or what it reads) each subscriber's metrics are labelled with."""


def _measured(group: str, message: KafkaMessage, records: Sequence[Any], began: float) -> None:
    """Count handled records and their time; watch the consumer's lag from its first batch."""
    metrics.PROCESS_DURATION.labels(group).observe(time.perf_counter() - began)
    metrics.consumed_records(group, records)
    consumer = getattr(message, "consumer", None)
    if consumer is not None and hasattr(consumer, "highwater"):  # not TestKafkaBroker's fake
        metrics.watch(consumer, group)


@dataclass
class _Flow:
    """One subscription's handler, its run of redeliveries, and what it dead-lettered in
    records not yet committed (so a redelivery does not dead-letter them twice)."""

    handle: EventHandler
    unreadable: UnreadableHandler | None
    after: Callable[[], Awaitable[None]] | None
    failures: int = 0
    lettered: set[tuple[str, int, int]] = dataclasses.field(default_factory=set)


def _redeliver(error: MeshError) -> bool:
    """Kafka faults and retriable errors are not the record's fault: it comes again."""
    return error.retriable or isinstance(error, BrokerError)


class _Decoder:
    """The mesh ``Mapper`` as FastStream's decoder: an event, or :class:`Undecodable`."""

    def __init__(self, mapper: Mapper) -> None:
        self.mapper = mapper

    def decode(self, record: ConsumedRecord) -> Event | Undecodable:
        try:
            return self.mapper.decode_record(record)
        except EventError as exc:
            return Undecodable(exc)
        except Exception as exc:  # a mapper bug must not stall the partition either
            log.exception("the mapper failed on a record", topic=record.topic, offset=record.offset)
            return Undecodable(exc)

    async def one(self, message: StreamMessage[Any]) -> Any:
        return self.decode(message.raw_message)

    async def many(self, message: StreamMessage[Any]) -> Any:
        return [self.decode(record) for record in message.raw_message]


def _single(record: Any) -> ConsumedRecord:
    if isinstance(record, tuple | list):
        raise TypeError("a single subscriber's message holds one record")
    return record  # type: ignore[no-any-return]


ParseFn = Callable[[Any], Awaitable[StreamMessage[Any]]]


async def _parse(record: Any, original: ParseFn) -> StreamMessage[Any]:
    """FastStream's parser, given header values it can read; the message keeps the record."""
    message = await original(_readable(record))
    message.raw_message = record
    return message


async def _parse_batch(records: Sequence[Any], original: ParseFn) -> StreamMessage[Any]:
    message = await original(tuple(_readable(r) for r in records))
    message.raw_message = records
    return message


def _readable(record: Any) -> Any:
    """``record``, or a copy whose header values FastStream can decode as text (it decodes them
    all, strictly, before any decoder runs; the mapper judges the real ones)."""
    headers = record.headers or ()
    if all(isinstance(v, bytes) and _is_text(v) for _, v in headers):
        return record
    safe = [(n, v if isinstance(v, bytes) and _is_text(v) else b"") for n, v in headers]
    copy = dataclasses.replace(record, headers=safe)
    if hasattr(record, "consumer"):
        copy.consumer = record.consumer
    return copy


def _is_text(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


__all__ = [
    "EventHandler",
    "EventRouter",
    "Undecodable",
    "UnreadableHandler",
    "faststream_broker",
    "start_broker",
]
