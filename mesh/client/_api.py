"""``mesh.Client``: the sixteen API methods of the product's design, over Kafka request/reply.

One client holds one producer and one consumer of ``replies`` for its lifetime. A call publishes a
request with a fresh correlation id — an ``ApiCall`` on ``calls`` for the components' queries and
operations, a workflow command on ``commands``, a lifecycle request on ``agents.commands`` — and
awaits the ``Reply`` with that id, which the consumer (positioned at the end of ``replies`` before
the first call) hands over. No answer within the timeout is a ``NoAnswer`` that names the
component to start; an answer with an error is a ``CallFailed`` with the component's message.

    async with mesh.Client() as client:
        plan = await client.plan_task(request)
        run = await client.start_workflow(plan)
        final = await run.wait()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import JsonValue

from mesh._aio import cancel_and_wait
from mesh.errors import CallFailed, EventError, MeshError, NoAnswer
from mesh.events import (
    ApiCall,
    ApiComponent,
    Capability,
    Event,
    ExecutionPlan,
    Mapper,
    PauseWorkflow,
    PlanCreated,
    Reply,
    ResumeWorkflow,
    SpawnAgents,
    TaskRequest,
    TerminateAgent,
    WorkflowEvent,
    meta,
    uuid7,
)
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, kafka_errors
from mesh.kafka.partitions import topic_partitions
from mesh.settings import Settings
from mesh.workflows import WorkflowState, evolve

from ._submit import FINAL_TYPES, cli_producer, follow_history, history_cursor, new_workflow_id

DEFAULT_TIMEOUT = 30.0

_NAMES = {
    "task-planner": ("Task Planner", "mesh run planner"),
    "workflow-manager": ("Workflow Manager", "mesh run workflows"),
    "agent-manager": ("Agent Manager", "mesh run agents"),
    "resource-allocator": ("Resource Allocator", "mesh run resources"),
}
"""Component → how people call it, and the command that runs it."""


@dataclass
class WorkflowRun:
    """A workflow the client started: follow its events, or wait for its end."""

    client: Client
    workflow_id: str
    _cursor: Any = field(repr=False)

    async def events(self) -> AsyncIterator[WorkflowEvent]:
        """The workflow's history events from its start, live, until it ends."""
        async for event in follow_history(
            self.client.settings, self.workflow_id, self._cursor, idle_timeout=None
        ):
            yield event

    async def wait(self, within: float | None = None) -> WorkflowState:
        """The workflow's state once it completed, failed or was cancelled."""
        state: WorkflowState | None = None
        async with asyncio.timeout(within):
            async for event in self.events():
                state = evolve(state, event)
                if event.type in FINAL_TYPES:
                    break
        if state is None:
            raise MeshError(f"workflow {self.workflow_id} ended without a history")
        return state


class Client:
    """An async client of a running mesh (see the module's docstring)."""

    def __init__(self, settings: Settings | None = None, *, timeout: float = DEFAULT_TIMEOUT):
        self.settings = settings or Settings()
        self.timeout = timeout
        self._me = cli_producer()
        self._mapper = Mapper(max_event_bytes=self.settings.max_event_bytes)
        self._waiting: dict[str, asyncio.Future[Reply]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
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
            with kafka_errors(self.settings, "connect the client"):
                await self._producer.start()
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

    # -- the request/reply primitive ---------------------------------------------------------

    async def request(
        self, event: Event, channel: str, *, who: str, within: float | None = None
    ) -> JsonValue:
        """Publish ``event`` on ``channel`` and return the result of its ``Reply``."""
        if self._producer is None or self._reader is None:
            raise MeshError("the client is not started; use 'async with Client(...)'")
        if self._reader.done():
            raise MeshError("the client lost its connection to Kafka; open a new one")
        within = within if within is not None else self.timeout
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[event.correlation_id] = future
        try:
            key, value, headers = self._mapper.encode(event)
            with kafka_errors(self.settings, f"publish to {channel}"):
                await self._producer.send_and_wait(
                    self.settings.topic(channel), value, key=key, headers=headers
                )
            try:
                reply = await asyncio.wait_for(future, within)
            except TimeoutError:
                name, command = _NAMES.get(who, (who, f"mesh run {who}"))
                raise NoAnswer(
                    f"no {name} answered within {within:g} s; is '{command}' (or mesh dev) "
                    "running against this cluster and topic prefix?"
                ) from None
        finally:
            self._waiting.pop(event.correlation_id, None)
        if not reply.ok:
            assert reply.error is not None
            raise CallFailed(
                f"{_NAMES.get(who, (who,))[0]}: {reply.error.message}",
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
            **meta(self._me, correlation_id=_call_id(method)),
            component=component,
            method=method,
            args=json.loads(json.dumps(dict(args or {}), default=str)),
            timeout_ms=max(1, int(within * 1000)),
        )
        return await self.request(event, "calls", who=component, within=within)

    # -- Task Planner ----------------------------------------------------------------------

    async def plan_task(self, request: TaskRequest | Mapping[str, Any]) -> ExecutionPlan:
        """The planner's validated, optimised plan for ``request`` (nothing is run)."""
        result = await self.call("task-planner", "plan_task", {"request": _request(request)})
        return ExecutionPlan.model_validate_json(json.dumps(result))

    async def validate_plan(self, plan: ExecutionPlan) -> dict[str, Any]:
        """``{valid, problems, warnings, stages}`` for ``plan``."""
        return _object(await self.call("task-planner", "validate_plan", {"plan": _plan(plan)}))

    async def optimize_plan(self, plan: ExecutionPlan) -> ExecutionPlan:
        """The same work, reordered, never with a longer estimated makespan."""
        result = await self.call("task-planner", "optimize_plan", {"plan": _plan(plan)})
        return ExecutionPlan.model_validate_json(json.dumps(result))

    async def estimate_resources(self, plan: ExecutionPlan) -> dict[str, Any]:
        """Peaks, resource-seconds, cost and makespan band of ``plan``."""
        return _object(await self.call("task-planner", "estimate_resources", {"plan": _plan(plan)}))

    # -- Workflow Manager ------------------------------------------------------------------

    async def start_workflow(
        self, plan: ExecutionPlan, *, workflow_id: str | None = None, request_id: str | None = None
    ) -> WorkflowRun:
        """Publish ``plan`` for the Workflow Manager to run; a handle to follow or await it."""
        workflow_id = workflow_id or new_workflow_id()
        cursor = await history_cursor(self.settings, workflow_id, from_end=True)
        event = PlanCreated(
            **meta(self._me, correlation_id=request_id or f"req-{workflow_id}"),
            workflow_id=workflow_id,
            request_id=request_id or f"req-{workflow_id}",
            plan=plan,
        )
        await self._publish(event, "plans")
        return WorkflowRun(self, workflow_id, cursor)

    async def submit(self, request: TaskRequest | Mapping[str, Any]) -> WorkflowRun:
        """Plan ``request`` through the planner and run it: ``plan_task`` + ``start_workflow``."""
        plan = await self.plan_task(request)
        return await self.start_workflow(plan)

    async def pause_workflow(self, workflow_id: str, reason: str = "") -> dict[str, Any]:
        """Pause: no new task starts until resumed (running ones finish)."""
        event = PauseWorkflow(
            **meta(self._me, correlation_id=_call_id("pause")),
            workflow_id=workflow_id,
            reason=reason,
        )
        return _object(await self.request(event, "commands", who="workflow-manager"))

    async def resume_workflow(self, workflow_id: str, reason: str = "") -> dict[str, Any]:
        """Resume a paused workflow."""
        event = ResumeWorkflow(
            **meta(self._me, correlation_id=_call_id("resume")),
            workflow_id=workflow_id,
            reason=reason,
        )
        return _object(await self.request(event, "commands", who="workflow-manager"))

    async def get_workflow_status(self, workflow_id: str) -> dict[str, Any]:
        """The workflow's status and every task's state, rebuilt from its history."""
        result = await self.call(
            "workflow-manager", "get_workflow_status", {"workflow_id": workflow_id}
        )
        return _object(result)

    # -- Agent Manager ---------------------------------------------------------------------

    async def spawn_agent(
        self,
        kind: str,
        config: Mapping[str, Any] | None = None,
        *,
        count: int = 1,
        name: str | None = None,
        within: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Start ``count`` agent processes of ``kind`` (a template name); their ids and pids."""
        event = SpawnAgents(
            **meta(self._me, correlation_id=_call_id("spawn")),
            template=kind,
            count=count,
            name=name,
            config=json.loads(json.dumps(dict(config or {}), default=str)),
        )
        result = _object(
            await self.request(event, "agents.commands", who="agent-manager", within=within)
        )
        agents = result.get("agents")
        return [dict(a) for a in agents if isinstance(a, dict)] if isinstance(agents, list) else []

    async def terminate_agent(
        self, agent_id: str, *, grace: float = 10.0, reason: str = ""
    ) -> dict[str, Any]:
        """Stop an agent gracefully, then forcefully after ``grace`` seconds."""
        event = TerminateAgent(
            **meta(self._me, correlation_id=_call_id("terminate")),
            agent_id=agent_id,
            grace_seconds=grace,
            reason=reason,
        )
        result = await self.request(
            event, "agents.commands", who="agent-manager", within=max(self.timeout, grace + 10)
        )
        return _object(result)

    async def get_agent_health(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        """Health of one agent, or of every registered agent."""
        args = {"agent_id": agent_id} if agent_id is not None else {}
        result = await self.call("agent-manager", "get_agent_health", args)
        return [dict(a) for a in result if isinstance(a, dict)] if isinstance(result, list) else []

    async def match_capabilities(
        self, requirements: Sequence[Capability | str | Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Agents able to take a task needing ``requirements``, best candidate first."""
        wanted = [
            r.model_dump(mode="json", exclude_none=True)
            if isinstance(r, Capability)
            else ({"name": r} if isinstance(r, str) else dict(r))
            for r in requirements
        ]
        result = await self.call("agent-manager", "match_capabilities", {"required": wanted})
        return [dict(a) for a in result if isinstance(a, dict)] if isinstance(result, list) else []

    # -- Resource Allocator ----------------------------------------------------------------

    async def allocate_resources(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Ask for resources: ``{decision: allocated|queued|denied, ...}`` with the reason."""
        return _object(
            await self.call("resource-allocator", "allocate_resources", {"request": dict(request)})
        )

    async def release_resources(self, allocation_id: str) -> dict[str, Any]:
        """Give an allocation back."""
        result = await self.call(
            "resource-allocator", "release_resources", {"allocation_id": allocation_id}
        )
        return _object(result)

    async def get_resource_usage(self) -> dict[str, Any]:
        """What every pool and tenant holds, what waits, what workflows cost."""
        return _object(await self.call("resource-allocator", "get_resource_usage"))

    async def set_quotas(self, quotas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Replace tenants' quotas (tenant → ``{cpu, memory_mb, …, max_allocations}``)."""
        return _object(
            await self.call("resource-allocator", "set_quotas", {"quotas": dict(quotas)})
        )

    # -- helpers ---------------------------------------------------------------------------

    async def _publish(self, event: Event, channel: str) -> None:
        if self._producer is None:
            raise MeshError("the client is not started; use 'async with Client(...)'")
        key, value, headers = self._mapper.encode(event)
        with kafka_errors(self.settings, f"publish to {channel}"):
            await self._producer.send_and_wait(
                self.settings.topic(channel), value, key=key, headers=headers
            )


def _call_id(method: str) -> str:
    return f"{method.replace('_', '-')}-{uuid7().hex[:20]}"


def _request(request: TaskRequest | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(request, TaskRequest):
        return request.model_dump(mode="json")
    return json.loads(json.dumps(dict(request), default=str))  # type: ignore[no-any-return]


def _plan(plan: ExecutionPlan) -> dict[str, Any]:
    return plan.model_dump(mode="json")


def _object(result: JsonValue) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise MeshError(f"expected an object in the reply, got {type(result).__name__}")
    return dict(result)


__all__ = ["Client", "WorkflowRun"]
