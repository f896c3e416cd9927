"""The agent process: register, heartbeat, take assignments addressed to it, report results.

The parts, each in its module: the inbox (:mod:`mesh.agents._inbox`: this agent's partition of
``tasks.assigned`` and its offsets), the attempts (:mod:`mesh.agents._attempts`: run through the
breaker, report, release the offset), the results (:mod:`mesh.agents._report`), the registry
record and heartbeats (:mod:`mesh.agents._presence`) and the breaker's state on ``breakers``
(:mod:`mesh.agents._breaker`). This module starts them in order and stops them in reverse.

A broker fault is ridden out in place where it can be (a fetch or a report is tried again after a
back-off, attempts keep running); anywhere else the agent starts its clients again
(:func:`mesh.kafka.faults.ride_out`), and the attempt journal (:mod:`mesh.agents._journal`) keeps
it from running an attempt it already started.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from mesh._aio import cancel_and_wait, uninterrupted
from mesh.agents._attempts import Attempts
from mesh.agents._breaker import AgentBreaker
from mesh.agents._config import WorkerConfig
from mesh.agents._inbox import Inbox
from mesh.agents._journal import AttemptJournal, journal_path
from mesh.agents._outbox import Outbox
from mesh.agents._outcome import Failure, Runner
from mesh.agents._presence import Presence
from mesh.agents._report import Reporter
from mesh.errors import BrokerError
from mesh.events import CancelTask, Mapper, Producer
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import consumer_kwargs, kafka_errors, producer_kwargs
from mesh.kafka.faults import Backoff, describe, mark_serving, pause, retriable, ride_out
from mesh.kafka.payloads import PayloadStore
from mesh.log import get_logger
from mesh.settings import Settings

COMPONENT = "agent"

log = get_logger("mesh.agents.worker")


class AgentWorker:
    """One agent process: ``await AgentWorker(settings, config, runner).run(stop)``.

    ``run`` returns after ``stop`` is set and the shutdown is complete (attempts finished or
    cancelled, ``AgentTerminated`` published); it raises ``BrokerError`` if results can no longer
    be delivered.
    """

    def __init__(self, settings: Settings, config: WorkerConfig, runner: Runner) -> None:
        self.settings = settings
        self.config = config
        self.runner = runner
        self.me = Producer(component=COMPONENT, instance=config.agent_id)
        self.mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        self.presence = Presence(config, runner, self.me)
        self.breaker = AgentBreaker(
            config.agent_id,
            self.me,
            fail_max=config.breaker_fail_max,
            reset_timeout=config.breaker_reset_timeout,
        )
        self.journal = AttemptJournal(journal_path(settings.state_dir, config.agent_id))

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down gracefully; a broker fault on the way
        re-creates the clients."""
        self.journal.open()
        try:
            await ride_out(self._serve, stop, component=COMPONENT)
        finally:
            self.journal.close()
            await self._close_runner()

    async def _serve(self, stop: asyncio.Event) -> None:
        async with self._clients() as (producer, consumer), self._payloads() as payloads:
            outbox = Outbox(self.settings, producer, self.mapper)
            inbox = Inbox(self.settings, consumer, outbox, self.me, self.config.agent_id)
            attempts = Attempts(
                self.runner,
                self.breaker.breaker,
                Reporter(outbox, self.me, self.config.agent_id, payloads),
                max_concurrency=self.config.max_concurrency,
                release=inbox.release,
                journal=self.journal,
            )
            partition = await inbox.open()
            await outbox.publish(self.presence.registered())
            # After registering (so it does not delay it), before taking work: the Agent Manager
            # already routes by the published state; this agent's own calls must agree with it.
            await self.breaker.restore(self.settings, producer)
            mark_serving()
            log.info(
                "agent ready",
                agent_id=self.config.agent_id,
                kind=self.config.kind,
                capabilities=[c.name for c in self.runner.capabilities],
                partition=partition,
            )
            helpers = [
                asyncio.create_task(self.presence.heartbeats(outbox, attempts)),
                asyncio.create_task(self.breaker.breaker.watch()),
                asyncio.create_task(self.breaker.publish_changes(outbox)),
            ]
            try:
                await self._consume(stop, inbox, attempts)
                await self._shut_down(outbox, inbox, attempts)
            except BaseException:
                await attempts.abandon()  # the journal keeps them from running again
                raise
            finally:
                await cancel_and_wait(*helpers)
            if attempts.fatal is not None:
                raise attempts.fatal
            await self.breaker.flush(outbox)
            await outbox.publish(self.presence.terminated())
            await outbox.remove("agents", self.config.agent_id)
            await self.breaker.forget_if_closed(outbox)
            log.info("agent terminated", agent_id=self.config.agent_id)

    @contextlib.asynccontextmanager
    async def _payloads(self) -> AsyncIterator[PayloadStore]:
        """Outputs over the threshold go out, and referenced inputs come in, through it (its
        reader connects on the first referenced input)."""
        store = PayloadStore(self.settings, self.mapper, self.me)
        try:
            yield store
        finally:
            await store.close()

    @contextlib.asynccontextmanager
    async def _clients(self) -> AsyncIterator[tuple[AIOKafkaProducer, AIOKafkaConsumer]]:
        producer = AIOKafkaProducer(**producer_kwargs(self.settings))
        consumer = AIOKafkaConsumer(
            **consumer_kwargs(self.settings),
            group_id=self.settings.group(f"agent.{self.config.agent_id}"),
            enable_auto_commit=False,
            auto_offset_reset="latest",
            isolation_level="read_committed",
        )
        try:
            with kafka_errors(self.settings, "connect the agent to Kafka"):
                await producer.start()
                await consumer.start()
            yield producer, consumer
        finally:
            await stop_clients(consumer, producer)

    async def _consume(self, stop: asyncio.Event, inbox: Inbox, attempts: Attempts) -> None:
        backoff = Backoff()
        while not stop.is_set() and attempts.fatal is None:
            try:
                deliveries = await inbox.fetch()
            except BrokerError as exc:
                if not retriable(exc):
                    raise
                seconds = backoff.next()
                log.warning("assignments not read", error=describe(exc), after_seconds=seconds)
                await pause(seconds, stop)
                continue
            for offset, event in deliveries:
                if isinstance(event, CancelTask):
                    attempts.cancel(event)
                    inbox.finished(offset)
                elif not attempts.take(event, offset):
                    inbox.finished(offset)  # a duplicate of an attempt in hand
            inbox.throttle(crowded=len(attempts) >= self.config.backlog)
            await inbox.commit()

    async def _shut_down(self, outbox: Outbox, inbox: Inbox, attempts: Attempts) -> None:
        """Stop taking work, drain within the grace period, then cancel what still runs."""
        log.info("agent draining", agent_id=self.config.agent_id, attempts=len(attempts))
        with contextlib.suppress(BrokerError):
            await outbox.publish(self.presence.draining())
        stopping = Failure(
            "agent_stopping", f"agent {self.config.agent_id!r} is shutting down", retriable=True
        )
        await attempts.drain(self.config.grace_period, stopping)
        await inbox.commit()

    async def _close_runner(self) -> None:
        close = getattr(self.runner, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await uninterrupted(close())  # an HTTP pool closed half-way leaks its sockets


__all__ = ["COMPONENT", "AgentWorker"]
