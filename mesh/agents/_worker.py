"""The agent process: register, heartbeat, take assignments addressed to it, report results.

Delivery is at-least-once. ``tasks.assigned`` is keyed by agent id, so the worker computes the
partition its own id hashes to (the producer's murmur2 partitioner) and ``assign()``s just that
one, with the consumer group ``mesh-agent-<id>`` holding its committed offset. A record's offset is
committed only after the attempt's result is produced, and only below the oldest unfinished
record, so a crash re-runs attempts rather than losing them (the Workflow Manager ignores the
duplicate results). A fresh agent id starts at the end of its partition, committed *before* the
agent registers: nothing is addressed to it earlier, and nothing after is skipped on a restart.

Every attempt runs through the agent's circuit breaker (:mod:`mesh.agents._breaker`): while it is
open an assignment fails fast as a retriable ``breaker_open`` (the Agent Manager has not yet
seen the state and the Workflow Manager's retry goes elsewhere), and in half-open exactly one
attempt is the trial. State changes go to ``breakers``; the breaker's last published state is
resumed on start, and a closed breaker's record is removed on a graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from mesh._aio import uninterrupted
from mesh.agents._breaker import (
    DEFAULT_FAIL_MAX,
    DEFAULT_RESET_TIMEOUT,
    counted,
    last_state,
    refused,
)
from mesh.agents._command import shrink_output
from mesh.agents._host import free_resources, host_name, host_resources, mesh_version
from mesh.agents._offsets import OffsetTracker
from mesh.agents._outcome import Failure, Outcome, Runner, Success
from mesh.breakers import AsyncBreaker, ChangeListener, breaker_name
from mesh.errors import BreakerOpen, BrokerError, ConfigError, EventError, EventTooLarge
from mesh.events import (
    AgentHeartbeat,
    AgentKind,
    AgentRegistered,
    AgentTerminated,
    AgentUpdated,
    BreakerStateChanged,
    CancelTask,
    Event,
    Mapper,
    Producer,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    TaskProgress,
    TaskStarted,
    meta,
)
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.dlq import dead_letter
from mesh.kafka.partitions import partition_for, partitions_of
from mesh.log import get_logger
from mesh.settings import Settings

COMPONENT = "agent"
_POLL_MS = 200
_REMEMBERED_CANCELS = 1_000
_BREAKER_RETRY_SECONDS = 1.0
_BREAKER_FLUSH_SECONDS = 10.0
_NAME_INVALID = re.compile(r"[^A-Za-z0-9_.:/@+-]")

AttemptKey = tuple[str, str, int]
"""(workflow id, task id, attempt)"""

log = get_logger("mesh.agents.worker")


@dataclass(frozen=True)
class WorkerConfig:
    """One agent instance's identity and limits (from ``mesh agent run``)."""

    agent_id: str
    kind: AgentKind
    max_concurrency: int = 1
    heartbeat_interval: float = 5.0
    grace_period: float = 10.0
    """On shutdown, how long running attempts may go on before they are cancelled."""
    labels: dict[str, str] = field(default_factory=dict)
    breaker_fail_max: int = DEFAULT_FAIL_MAX
    """Consecutive counted failures that open the agent's circuit breaker."""
    breaker_reset_timeout: float = DEFAULT_RESET_TIMEOUT
    """Seconds an open breaker waits before it lets one trial attempt through."""

    def __post_init__(self) -> None:
        if not self.agent_id or any(c.isspace() for c in self.agent_id):
            raise ConfigError(f"agent id {self.agent_id!r} must be non-empty, without whitespace")
        if len(self.agent_id) > 200:
            raise ConfigError("agent id is longer than 200 characters")
        if self.max_concurrency < 1:
            raise ConfigError("--max-concurrency must be at least 1")
        if self.heartbeat_interval <= 0:
            raise ConfigError("--heartbeat-interval must be positive")
        if self.breaker_fail_max < 1:
            raise ConfigError("--breaker-fail-max must be at least 1")
        if self.breaker_reset_timeout <= 0:
            raise ConfigError("--breaker-reset-timeout must be positive")

    @property
    def backlog(self) -> int:
        """Attempts taken in (running or queued) before the worker stops fetching."""
        return 4 * self.max_concurrency + 16


@dataclass(eq=False)
class _Attempt:
    key: AttemptKey
    offset: int
    assigned: TaskAssigned
    task: asyncio.Task[None] | None = None
    execution: asyncio.Task[Outcome] | None = None
    began: float | None = None
    running: bool = False
    reporting: bool = False
    stop_reason: Failure | None = None


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
        self._attempts: dict[AttemptKey, _Attempt] = {}
        self._cancelled: OrderedDict[AttemptKey, CancelTask] = OrderedDict()
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._commit_lock = asyncio.Lock()
        self._fatal: BaseException | None = None
        self._started = time.monotonic()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tracker: OffsetTracker | None = None
        self._partition: TopicPartition | None = None
        self._breaker_changes: deque[BreakerStateChanged] = deque()
        self._breaker_moved = asyncio.Event()
        self._breaker_recorded = False
        self.breaker = AsyncBreaker(
            breaker_name(config.agent_id),
            fail_max=config.breaker_fail_max,
            reset_timeout=config.breaker_reset_timeout,
            neutral=(BrokerError,),  # Kafka trouble says nothing about the agent's endpoint
            listeners=[ChangeListener(self.me, self._on_breaker_change)],
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down gracefully."""
        async with self._clients():
            await self._take_partition()
            await self._publish(self._description(AgentRegistered))
            # After registering (so it does not delay it), before taking work: the Agent Manager
            # already routes by the published state; this agent's own calls must agree with it.
            await self._restore_breaker()
            log.info(
                "agent ready",
                agent_id=self.config.agent_id,
                kind=self.config.kind,
                capabilities=[c.name for c in self.runner.capabilities],
                partition=self._tp.partition,
            )
            helpers = [
                asyncio.create_task(self._heartbeats()),
                asyncio.create_task(self.breaker.watch()),
                asyncio.create_task(self._publish_breaker_changes()),
            ]
            try:
                await self._consume(stop)
                await self._shut_down()
            finally:
                for helper in helpers:
                    helper.cancel()
                for helper in helpers:
                    with contextlib.suppress(asyncio.CancelledError):
                        await helper
                await self._close_runner()
            if self._fatal is not None:
                raise self._fatal
            await self._flush_breaker_changes()
            await self._publish(
                AgentTerminated(
                    **meta(self.me, correlation_id=self.config.agent_id),
                    agent_id=self.config.agent_id,
                    reason="stopped",
                    exit_code=0,
                )
            )
            await self._send(self.settings.topic("agents"), self.config.agent_id.encode(), None)
            if self._breaker_recorded and self.breaker.state == "closed":
                # Nothing to remember: keep the compacted topic to the breakers that matter.
                await self._send(self.settings.topic("breakers"), self.breaker.name.encode(), None)
            log.info("agent terminated", agent_id=self.config.agent_id)

    @contextlib.asynccontextmanager
    async def _clients(self) -> AsyncIterator[None]:
        kwargs = client_kwargs(self.settings)
        producer = AIOKafkaProducer(
            **kwargs,
            acks="all",
            max_request_size=max(1_048_576, self.settings.max_event_bytes + 65_536),
        )
        consumer = AIOKafkaConsumer(
            **kwargs,
            group_id=f"mesh-agent-{self.config.agent_id}",
            enable_auto_commit=False,
            auto_offset_reset="latest",
            isolation_level="read_committed",
        )
        try:
            with kafka_errors(self.settings, "connect the agent to Kafka"):
                await producer.start()
                await consumer.start()
            self._producer, self._consumer = producer, consumer
            yield
        finally:
            await stop_clients(consumer, producer)

    async def _take_partition(self) -> None:
        consumer = self._kafka_consumer
        topic = self.settings.topic("tasks.assigned")
        partitions = await partitions_of(self._kafka_producer, self.settings, "tasks.assigned")
        tp = TopicPartition(topic, partition_for(self.config.agent_id, partitions))
        consumer.assign([tp])
        with kafka_errors(self.settings, f"read the committed offset of {topic}"):
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_end(tp)
                committed = await consumer.position(tp)
                await consumer.commit({tp: committed})
            else:
                consumer.seek(tp, committed)
        self._partition = tp
        self._tracker = OffsetTracker(committed)

    async def _consume(self, stop: asyncio.Event) -> None:
        consumer, tp, tracker = self._kafka_consumer, self._tp, self._offsets
        paused = False
        while not stop.is_set() and self._fatal is None:
            with kafka_errors(self.settings, "read assignments"):
                batch = await consumer.getmany(tp, timeout_ms=_POLL_MS)
            for record in batch.get(tp, ()):
                tracker.taken(record.offset)
                await self._handle(record)
            crowded = len(self._attempts) >= self.config.backlog
            if crowded and not paused:
                consumer.pause(tp)
            elif paused and not crowded:
                consumer.resume(tp)
            paused = crowded
            await self._commit()

    async def _shut_down(self) -> None:
        """Stop taking work, drain within the grace period, then cancel what still runs."""
        log.info("agent draining", agent_id=self.config.agent_id, attempts=len(self._attempts))
        with contextlib.suppress(BrokerError):
            await self._publish(self._description(AgentUpdated, status="draining"))
        stopping = Failure(
            "agent_stopping", f"agent {self.config.agent_id!r} is shutting down", retriable=True
        )
        for attempt in list(self._attempts.values()):
            if not attempt.running:
                self._stop_attempt(attempt, stopping)
        running = [a.task for a in self._attempts.values() if a.task is not None]
        if running:
            await asyncio.wait(running, timeout=self.config.grace_period)
        for attempt in list(self._attempts.values()):
            self._stop_attempt(attempt, stopping)
        remaining = [a.task for a in self._attempts.values() if a.task is not None]
        if remaining:
            await asyncio.wait(remaining)
        await self._commit()

    # -- records -----------------------------------------------------------------------------

    async def _handle(self, record: Any) -> None:
        if record.key != self.config.agent_id.encode():
            self._offsets.finished(record.offset)  # another agent's, on the same partition
            return
        try:
            event = self.mapper.decode(record.value, record.headers)
            if not isinstance(event, TaskAssigned | CancelTask):
                raise EventError(f"{event.type} does not belong on tasks.assigned")
            if event.agent_id != self.config.agent_id:
                raise EventError(f"keyed to this agent but addressed to {event.agent_id!r}")
        except EventError as exc:
            log.warning("undecodable assignment sent to the dead-letter topic", error=str(exc))
            key, value, headers = dead_letter(
                record, exc, COMPONENT, producer=self.me, max_event_bytes=self._dlq_limit
            )
            await self._send(self.settings.topic("dlq"), key, value, headers)
            self._offsets.finished(record.offset)
            return
        if isinstance(event, CancelTask):
            self._on_cancel(event)
            self._offsets.finished(record.offset)
            return
        attempt_key = (event.workflow_id, event.task_id, event.attempt)
        if attempt_key in self._attempts:
            log.info("duplicate assignment ignored", task_id=event.task_id, attempt=event.attempt)
            self._offsets.finished(record.offset)
            return
        attempt = _Attempt(attempt_key, record.offset, event)
        self._attempts[attempt_key] = attempt
        cancel = self._cancelled.pop(attempt_key, None)
        if cancel is not None:
            attempt.stop_reason = _cancelled(cancel)
        attempt.task = asyncio.create_task(self._run_attempt(attempt))

    def _on_cancel(self, cancel: CancelTask) -> None:
        key = (cancel.workflow_id, cancel.task_id, cancel.attempt)
        attempt = self._attempts.get(key)
        if attempt is None:
            # Remembered in case the assignment comes later (e.g. redelivered after a restart).
            self._cancelled[key] = cancel
            while len(self._cancelled) > _REMEMBERED_CANCELS:
                self._cancelled.popitem(last=False)
            log.info("nothing to cancel", task_id=cancel.task_id, attempt=cancel.attempt)
            return
        log.info("cancelling attempt", task_id=cancel.task_id, attempt=cancel.attempt)
        self._stop_attempt(attempt, _cancelled(cancel))

    def _stop_attempt(self, attempt: _Attempt, reason: Failure) -> None:
        if attempt.reporting or attempt.stop_reason is not None:
            return
        attempt.stop_reason = reason
        if attempt.execution is not None:
            attempt.execution.cancel()

    # -- attempts ----------------------------------------------------------------------------

    async def _run_attempt(self, attempt: _Attempt) -> None:
        """Run, report, then release the offset. Never cancelled itself: cancelling targets
        the inner execution, so that the outcome of a cancelled attempt is still reported."""
        assigned = attempt.assigned
        with structlog.contextvars.bound_contextvars(
            workflow_id=assigned.workflow_id,
            correlation_id=assigned.correlation_id,
            task_id=assigned.task_id,
            attempt=assigned.attempt,
        ):
            # Set when a CancelTask came before the assignment: the attempt never runs.
            outcome: Outcome | None = attempt.stop_reason
            if outcome is None:
                attempt.execution = asyncio.create_task(self._execute(attempt))
                await asyncio.wait([attempt.execution])
                outcome = self._outcome_of(attempt, attempt.execution)
                if outcome is None:
                    return
            attempt.reporting = True
            duration = time.monotonic() - attempt.began if attempt.began is not None else None
            try:
                await self._report(assigned, outcome, duration)
            except BrokerError as exc:
                self._give_up(exc)  # the offset stays uncommitted: the attempt runs again later
                return
            self._attempts.pop(attempt.key, None)
            self._offsets.finished(attempt.offset)
        await self._commit()

    async def _execute(self, attempt: _Attempt) -> Outcome:
        async with self._slots:
            try:
                return await self.breaker.judged(counted, self._start_and_run, attempt)
            except BreakerOpen as exc:
                log.info("attempt refused by the circuit breaker", error=str(exc))
                return refused(str(exc))

    async def _start_and_run(self, attempt: _Attempt) -> Outcome:
        """Inside the breaker: admitted, so the attempt really starts."""
        attempt.running = True
        attempt.began = time.monotonic()
        await self._publish(self._started_event(attempt.assigned))
        log.info("attempt started")
        return await self.runner.run(attempt.assigned, self._progress_for(attempt.assigned))

    def _outcome_of(self, attempt: _Attempt, execution: asyncio.Task[Outcome]) -> Outcome | None:
        if execution.cancelled():
            return attempt.stop_reason or Failure("cancelled", "the attempt was cancelled", False)
        exc = execution.exception()
        if exc is None:
            return execution.result()
        if isinstance(exc, BrokerError):
            self._give_up(exc)
            return None
        # A runner bug: report it rather than leave the attempt hanging.
        log.error("runner failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        return Failure("agent_error", f"{type(exc).__name__}: {exc}", retriable=True)

    def _give_up(self, exc: BaseException) -> None:
        log.error("cannot deliver results; stopping", error=str(exc))
        if self._fatal is None:
            self._fatal = exc

    async def _report(
        self, assigned: TaskAssigned, outcome: Outcome, duration: float | None
    ) -> None:
        if isinstance(outcome, Success):
            failure = await self._complete(assigned, outcome.output, duration)
            if failure is None:
                return
            outcome = failure
        failed = TaskFailed(
            **meta(self.me, causation=assigned),
            workflow_id=assigned.workflow_id,
            task_id=assigned.task_id,
            attempt=assigned.attempt,
            agent_id=self.config.agent_id,
            error_kind=_error_kind(outcome.kind),
            message=outcome.message[:100_000] or outcome.kind,
            retriable=outcome.retriable,
            duration_seconds=duration,
        )
        try:
            await self._publish(failed)
        except EventTooLarge:  # a long message under a small max_event_bytes
            failed = failed.model_copy(update={"message": failed.message[:500]})
            await self._publish(failed)
        log.info(
            "attempt failed",
            error_kind=failed.error_kind,
            retriable=failed.retriable,
            duration_seconds=duration,
        )

    async def _complete(
        self, assigned: TaskAssigned, output: dict[str, Any], duration: float | None
    ) -> Failure | None:
        """Publish TaskCompleted; or the failure to report when the output cannot be sent."""
        while True:
            try:
                done = TaskCompleted(
                    **meta(self.me, causation=assigned),
                    workflow_id=assigned.workflow_id,
                    task_id=assigned.task_id,
                    attempt=assigned.attempt,
                    agent_id=self.config.agent_id,
                    output=output,
                    duration_seconds=duration,
                )
                await self._publish(done)
            except ValidationError as exc:
                first = exc.errors(include_url=False, include_input=False)[0]
                where = ".".join(str(part) for part in first["loc"])
                why = f"the output is not a JSON object ({where}: {first['msg']})"
                return Failure("bad_output", why, retriable=False)
            except EventTooLarge as exc:
                smaller = shrink_output(output)  # command output: keep less of each stream
                if smaller is None:
                    return Failure("output_too_large", str(exc), retriable=False)
                output = smaller
                continue
            log.info("attempt completed", duration_seconds=duration)
            return None

    def _started_event(self, assigned: TaskAssigned) -> TaskStarted:
        return TaskStarted(
            **meta(self.me, causation=assigned),
            workflow_id=assigned.workflow_id,
            task_id=assigned.task_id,
            attempt=assigned.attempt,
            agent_id=self.config.agent_id,
        )

    def _progress_for(self, assigned: TaskAssigned) -> Any:
        async def progress(percent: float | None, message: str, details: dict[str, Any]) -> None:
            try:
                event = TaskProgress(
                    **meta(self.me, causation=assigned),
                    workflow_id=assigned.workflow_id,
                    task_id=assigned.task_id,
                    attempt=assigned.attempt,
                    agent_id=self.config.agent_id,
                    percent=percent,
                    message=message,
                    details=details,
                )
                await self._publish(event)
            except (ValidationError, EventError, BrokerError) as exc:
                log.warning("progress not published", error=str(exc).splitlines()[0])

        return progress

    # -- the circuit breaker ------------------------------------------------------------------

    async def _restore_breaker(self) -> None:
        """Resume the state last published under this agent's breaker (a restart)."""
        topic = "breakers"
        partitions = await partitions_of(self._kafka_producer, self.settings, topic)
        last = await last_state(self.settings, self.breaker.name, partitions)
        if last is None:
            return
        self._breaker_recorded = True
        self.breaker.restore(last.new_state, failures=last.failure_count, opened_at=last.opened_at)
        if last.new_state != "closed":
            log.warning(
                "circuit breaker resumed",
                breaker=self.breaker.name,
                state=last.new_state,
                opened_at=last.opened_at.isoformat() if last.opened_at else None,
            )

    def _on_breaker_change(self, event: BreakerStateChanged) -> None:
        """pybreaker's listener, called inside the transition: log, and queue the event."""
        logged = log.warning if event.new_state == "open" else log.info
        logged(
            "circuit breaker state changed",
            breaker=event.name,
            old_state=event.old_state,
            new_state=event.new_state,
            failure_count=event.failure_count,
            reason=event.reason or None,
        )
        self._breaker_changes.append(event)
        self._breaker_moved.set()

    async def _publish_breaker_changes(self) -> None:
        """Publish breaker changes in order, each until the broker has it."""
        while True:
            await self._breaker_moved.wait()
            self._breaker_moved.clear()
            while self._breaker_changes:
                try:
                    await self._publish(self._breaker_changes[0])
                except BrokerError as exc:
                    log.warning("breaker state not published; retrying", error=str(exc))
                    await asyncio.sleep(_BREAKER_RETRY_SECONDS)
                    continue
                self._breaker_changes.popleft()
                self._breaker_recorded = True

    async def _flush_breaker_changes(self) -> None:
        """On shutdown: publish what is still queued (bounded, so a dead broker cannot hang it)."""
        try:
            async with asyncio.timeout(_BREAKER_FLUSH_SECONDS):
                while self._breaker_changes:
                    await self._publish(self._breaker_changes[0])
                    self._breaker_changes.popleft()
                    self._breaker_recorded = True
        except (TimeoutError, BrokerError) as exc:
            log.warning("breaker state not published on shutdown", error=str(exc))

    async def _close_runner(self) -> None:
        close = getattr(self.runner, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await uninterrupted(close())  # an HTTP pool closed half-way leaks its sockets

    # -- heartbeats and registry -------------------------------------------------------------

    async def _heartbeats(self) -> None:
        interval = self.config.heartbeat_interval
        while True:
            running = sum(1 for a in self._attempts.values() if a.running)
            beat = AgentHeartbeat(
                **meta(self.me, correlation_id=self.config.agent_id),
                agent_id=self.config.agent_id,
                health="healthy" if self._fatal is None else "unhealthy",
                running_tasks=running,
                load=min(1.0, running / self.config.max_concurrency),
                resources_free=free_resources(),
                uptime_seconds=time.monotonic() - self._started,
                interval_seconds=interval,
            )
            try:
                await self._publish(beat)
            except BrokerError as exc:
                log.warning("heartbeat not published", error=str(exc))
            await asyncio.sleep(interval)

    def _description(self, cls: type[AgentRegistered | AgentUpdated], **extra: Any) -> Event:
        labels = {"pid": str(os.getpid()), **self.config.labels}
        return cls(
            **meta(self.me, correlation_id=self.config.agent_id),
            agent_id=self.config.agent_id,
            kind=self.config.kind,
            capabilities=self.runner.capabilities,
            max_concurrency=self.config.max_concurrency,
            version=mesh_version(),
            host=host_name(),
            resources=host_resources(),
            labels=labels,
            **extra,
        )

    # -- Kafka -------------------------------------------------------------------------------

    async def _publish(self, event: Event) -> None:
        """Produce ``event`` to its channel and wait for the broker's acknowledgement."""
        topic = self.settings.topic(_CHANNEL[type(event)])
        key, value, headers = self.mapper.encode(event)
        if isinstance(event, TaskStarted | TaskProgress | TaskCompleted | TaskFailed):
            key = event.workflow_id.encode()
        await self._send(topic, key, value, headers)

    async def _send(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        with kafka_errors(self.settings, f"produce to {topic}"):
            await self._kafka_producer.send_and_wait(topic, value, key=key, headers=headers)

    async def _commit(self) -> None:
        async with self._commit_lock:
            position = self._offsets.committable()
            if position is None:
                return
            try:
                await self._kafka_consumer.commit({self._tp: position})
            except KafkaError as exc:
                log.warning("offset commit failed; will retry", error=str(exc))
                return
            self._offsets.committed(position)

    @property
    def _dlq_limit(self) -> int:
        return self.settings.max_event_bytes

    @property
    def _kafka_producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "the worker is not running"
        return self._producer

    @property
    def _kafka_consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "the worker is not running"
        return self._consumer

    @property
    def _offsets(self) -> OffsetTracker:
        assert self._tracker is not None, "the worker is not running"
        return self._tracker

    @property
    def _tp(self) -> TopicPartition:
        assert self._partition is not None, "the worker is not running"
        return self._partition


_CHANNEL: dict[type[Event], str] = {
    AgentRegistered: "agents",
    AgentUpdated: "agents",
    AgentTerminated: "agents",
    AgentHeartbeat: "agents.heartbeats",
    BreakerStateChanged: "breakers",
    TaskStarted: "tasks.results",
    TaskProgress: "tasks.results",
    TaskCompleted: "tasks.results",
    TaskFailed: "tasks.results",
}


def _cancelled(cancel: CancelTask) -> Failure:
    why = f": {cancel.reason}" if cancel.reason else ""
    return Failure("cancelled", f"the attempt was cancelled{why}", retriable=False)


def _error_kind(kind: str) -> str:
    cleaned = _NAME_INVALID.sub("_", kind)[:100]
    return cleaned if cleaned and cleaned[0] not in ".:/@+-" else "task_error"


__all__ = ["AgentWorker", "WorkerConfig"]
