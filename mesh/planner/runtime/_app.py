"""The planner component: a FastStream app with one KafkaRouter (``mesh run planner``).

- ``requests`` (consumer group, manual commit after handling): each TaskRequest becomes a
  PlanCreated or a PlanRejected on ``plans``, keyed by the workflow id. That id is derived from
  the request id, so a redelivered request yields a plan for the same workflow, which the
  Workflow Manager ignores as a repeat (at-least-once in, idempotent effect out). A record that
  is not a readable TaskRequest goes to ``dlq``; a readable one that cannot be planned gets a
  PlanRejected, since a client waiting on its workflow id needs an answer.
- ``workflow.events`` (no group, from the earliest offset, on every start): the history is
  folded into the estimator and the bandit, so every replica rebuilds the same learned state
  from Kafka alone. Requests wait (up to ``catch_up_timeout``) until that replay has reached the
  end offsets seen at start, and ``planner ready`` is logged then.

Both are FastStream subscribers on the component's one router (``mesh.kafka.faststream``), as is
the API's ``calls`` server: records are decoded and encoded only by ``mesh.events.Mapper``, the
subscribers' decoder, which never raises — a record it refuses (deep JSON, not UTF-8, too large,
an unknown version, no key) is dead-lettered once and the partition moves on. Handlers take the
decoded event and the raw record, since a dead letter needs the record's topic, partition and
offset.

Extension point: ``unknown_type_hook`` (off by default) is awaited for a request whose type no
template knows; it may return tasks (e.g. after asking a planner agent through the mesh with a
TaskReady for a ``plan`` capability and awaiting its TaskCompleted) which are then validated and
optimised like any other plan, or None to reject as usual.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from mesh._aio import cancel_and_wait
from mesh.errors import EventTooLarge, InvalidEvent, MeshError, PlanningError
from mesh.events import (
    Encoded,
    Event,
    ExecutionPlan,
    PlanCreated,
    PlanRejected,
    Producer,
    TaskRequest,
    TaskSpec,
    meta,
)
from mesh.kafka import ConsumedRecord
from mesh.kafka.calls import CallServer, Handler
from mesh.kafka.calls import to_json as _as_json
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import kafka_errors
from mesh.kafka.dlq import skipped
from mesh.kafka.faststream import EventRouter, faststream_broker, start_broker
from mesh.kafka.faults import mark_serving
from mesh.kafka.reader import end_offsets
from mesh.log import bind_event_context, get_logger
from mesh.planner._api import Planner, rejection
from mesh.planner._request import workflow_id_for
from mesh.planner._requestfile import request_from_document
from mesh.settings import Settings

COMPONENT = "task-planner"
DEFAULT_GROUP = "mesh-planner"

UnknownTypeHook = Callable[[TaskRequest], Awaitable[Sequence[TaskSpec] | None]]
"""Asked to decompose a request of an unknown type; returns tasks, or None to reject it."""

log = get_logger("mesh.planner")


class PlannerService:
    """The planner component: broker, router, planner, and the history catch-up state."""

    def __init__(
        self,
        settings: Settings,
        *,
        planner: Planner | None = None,
        group_id: str = DEFAULT_GROUP,
        instance: str | None = None,
        unknown_type_hook: UnknownTypeHook | None = None,
        catch_up_timeout: float = 60.0,
    ) -> None:
        self.settings = settings
        self.planner = planner or Planner.from_settings(settings)
        self.group_id = group_id
        self.producer = Producer(component=COMPONENT, instance=instance or _instance())
        self.unknown_type_hook = unknown_type_hook
        self.catch_up_timeout = catch_up_timeout
        self.caught_up = asyncio.Event()
        self._folded = asyncio.Condition()
        self._announcer: asyncio.Task[None] | None = None
        self._targets: dict[int, int] | None = None
        self._positions: dict[int, int] = {}
        self.calls = CallServer(
            settings,
            "task-planner",
            self.api_handlers(),
            me=self.producer,
            group_id=f"{group_id}-calls",
        )
        self.router = planner_router(self)
        self.mapper = self.router.mapper
        self.broker = faststream_broker(settings)
        self.broker.include_router(self.router)

    async def start(self) -> None:
        """Connect, subscribe, and learn where the history ends (for the catch-up signal)."""
        for problem in self.planner.templates.problems():
            log.warning("template problem", problem=problem)
        try:
            with kafka_errors(self.settings, "start the planner"):
                await start_broker(self.broker, self.settings)
                self._targets = await end_offsets(self.settings, "workflow.events")
        except BaseException:
            await self.stop()
            raise
        self._check_caught_up()
        log.info(
            "planner starting",
            group_id=self.group_id,
            history_to_replay=sum(self._targets.values()),
        )
        self._announcer = asyncio.get_running_loop().create_task(self._announce())

    async def stop(self) -> None:
        try:
            announcer, self._announcer = self._announcer, None
            await cancel_and_wait(announcer)
        finally:  # even when cancelled meanwhile
            await stop_clients(self.broker)

    async def _announce(self) -> None:
        await self.caught_up.wait()
        mark_serving()
        log.info(
            "planner ready",
            learned=self.planner.learning.version,
            types=list(self.planner.templates.types),
        )

    # -- the API over Kafka (ApiCall on calls → Reply) ---------------------------------------

    def api_handlers(self) -> dict[str, Handler]:
        """``plan_task``, ``validate_plan``, ``optimize_plan``, ``estimate_resources``."""
        planner = self.planner

        async def plan_task(args: dict[str, Any]) -> Any:
            return planner.plan_task(_api_request(args.get("request")))

        async def validate_plan(args: dict[str, Any]) -> Any:
            result = planner.validate_plan(_api_plan(args.get("plan")))
            found = _as_json(result)
            return {"valid": result.valid, **(found if isinstance(found, dict) else {})}

        async def optimize_plan(args: dict[str, Any]) -> Any:
            return planner.optimize_plan(_api_plan(args.get("plan")))

        async def estimate_resources(args: dict[str, Any]) -> Any:
            return planner.estimate_resources(_api_plan(args.get("plan")))

        return {
            "plan_task": plan_task,
            "validate_plan": validate_plan,
            "optimize_plan": optimize_plan,
            "estimate_resources": estimate_resources,
        }

    # -- handlers (called by the router) -----------------------------------------------------

    async def on_request(self, event: Event, record: ConsumedRecord) -> None:
        """Plan one request; publish the outcome (or dead-letter the record)."""
        if not isinstance(event, TaskRequest):
            error = InvalidEvent(f"expected a request.submitted event, got {event.type}")
            await self.router.dead_letter(record, error)
            return
        workflow_id = workflow_id_for(event.request_id)
        bind_event_context(workflow_id=workflow_id, correlation_id=event.correlation_id)
        await self._wait_caught_up()
        try:
            outcome = await self._decide(event)
            encoded = self.mapper.encode(outcome)
        except EventTooLarge as exc:
            outcome = rejection(event, self.producer, PlanningError("too_large", str(exc)))
            encoded = self.mapper.encode(outcome)
        except MeshError as exc:
            if exc.retriable:  # e.g. the broker went away under the hook: redeliver, try again
                raise
            outcome, encoded = await self._give_up(record, event, exc)
        except Exception as exc:  # a planner bug: answer the client, keep the record for redrive
            outcome, encoded = await self._give_up(record, event, exc)
        await self.router.send("plans", encoded)
        if isinstance(outcome, PlanCreated):
            tasks = len(outcome.plan.tasks) if outcome.plan is not None else None
            log.info("plan created", request_id=event.request_id, tasks=tasks)
        else:
            log.info("plan rejected", request_id=event.request_id, reason=outcome.reason)

    async def _give_up(
        self, record: ConsumedRecord, request: TaskRequest, error: Exception
    ) -> tuple[PlanRejected, Encoded]:
        log.exception("planning failed", request_id=request.request_id)
        await self.router.dead_letter(record, error)
        outcome = rejection(
            request, self.producer, PlanningError("internal", f"{type(error).__name__}: {error}")
        )
        return outcome, self.mapper.encode(outcome)

    async def _decide(self, request: TaskRequest) -> PlanCreated | PlanRejected:
        outcome = self.planner.decide(request, self.producer)
        hook = self.unknown_type_hook
        if hook is None or not (
            isinstance(outcome, PlanRejected) and outcome.reason.startswith("unknown_type:")
        ):
            return outcome
        tasks = await hook(request)
        if not tasks:
            return outcome
        try:
            report = self.planner.plan_tasks(request, tasks)
        except PlanningError as exc:
            return rejection(request, self.producer, exc)
        return PlanCreated(
            **meta(self.producer, causation=request),
            workflow_id=workflow_id_for(request.request_id),
            request_id=request.request_id,
            plan=report.plan,
        )

    async def on_history(self, event: Event, record: ConsumedRecord) -> None:
        """Fold one history event into the learned state."""
        self.planner.observe(event)
        await self._passed(record)

    async def on_unreadable_history(self, record: ConsumedRecord, error: Exception) -> None:
        """Skip a history record the mapper refuses (its owner dead-letters it), but count it
        as passed, so catching up does not wait for it."""
        skipped(COMPONENT, record, error)
        await self._passed(record)

    async def _passed(self, record: ConsumedRecord) -> None:
        self._positions[record.partition] = record.offset + 1
        self._check_caught_up()
        async with self._folded:
            self._folded.notify_all()

    async def learned(self, version: int) -> None:
        """Return once the learned state has reached ``version`` (for tests and probes)."""
        async with self._folded:
            await self._folded.wait_for(lambda: self.planner.learning.version >= version)

    def _check_caught_up(self) -> None:
        if self._targets is None or self.caught_up.is_set():
            return
        if all(self._positions.get(p, 0) >= end for p, end in self._targets.items()):
            self.caught_up.set()

    async def _wait_caught_up(self) -> None:
        if self.caught_up.is_set():
            return
        try:
            await asyncio.wait_for(self.caught_up.wait(), self.catch_up_timeout)
        except TimeoutError:
            log.warning("history replay not finished; planning with what is learned so far")
            self.caught_up.set()


def planner_router(service: PlannerService) -> EventRouter:
    """The component's one router: requests in, plans out; history in, for learning; calls."""
    router = EventRouter(
        service.settings, component=COMPONENT, me=service.producer, publishes=("plans", "replies")
    )
    router.events(
        "requests",
        group_id=service.group_id,
        title="requests",
        description="TaskRequest from clients",
    )(service.on_request)
    router.events(
        "workflow.events",
        group_id=None,
        unreadable=service.on_unreadable_history,
        title="workflow.events",
        description="The history the planner learns durations and method outcomes from",
    )(service.on_history)
    service.calls.subscribe(router)
    return router


def _api_request(data: Any) -> TaskRequest:
    """A whole TaskRequest event, or a plain request document (type, description …)."""
    if not isinstance(data, dict):
        raise ValueError("'request' must be an object")
    if "event_id" in data:
        return TaskRequest.model_validate_json(json.dumps(data))
    return request_from_document(data, "request")


def _api_plan(data: Any) -> ExecutionPlan:
    if not isinstance(data, dict):
        raise ValueError("'plan' must be an object")
    return ExecutionPlan.model_validate_json(json.dumps(data))


def _instance() -> str:
    return f"{''.join(socket.gethostname().split()) or 'host'}-{os.getpid()}"


async def run_planner(
    settings: Settings,
    stop: asyncio.Event,
    *,
    planner: Planner | None = None,
    unknown_type_hook: UnknownTypeHook | None = None,
    group_id: str = DEFAULT_GROUP,
    instance: str | None = None,
) -> None:
    """Run the planner until ``stop`` is set."""
    service = PlannerService(
        settings,
        planner=planner,
        group_id=group_id,
        instance=instance,
        unknown_type_hook=unknown_type_hook,
    )
    await service.start()
    try:
        await stop.wait()
    finally:
        await service.stop()
