"""``mesh.Client``: the API of the mesh's four components, over Kafka.

The product's API methods (plan_task … set_quotas) plus what a user does with a workflow —
``submit`` a request, start a plan, pause, resume, cancel, retry, signal — all go through the one
connection of :class:`~mesh.client._connection.Connection`: published events, and replies
awaited by correlation id. The command line is a thin layer over this class.

    async with mesh.Client() as client:
        run = await client.submit({"type": "bugfix", "description": "Fix the login timeout"})
        final = await run.wait()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import JsonValue

from mesh.errors import (
    CallFailed,
    InvalidRequest,
    MeshError,
    NoAnswer,
    RequestRejected,
    WorkflowExists,
)
from mesh.events import (
    CancelWorkflow,
    Capability,
    ExecutionPlan,
    ExternalEvent,
    PauseWorkflow,
    PlanCreated,
    PlanRejected,
    ResumeWorkflow,
    RetryTask,
    SpawnAgents,
    TaskRequest,
    TerminateAgent,
    WorkflowEvent,
    meta,
)
from mesh.kafka.history import recorded_status
from mesh.planner import analyse, request_from_document, workflow_id_for

from ._connection import Connection, call_id
from ._history import (
    HistoryCursor,
    WorkflowRun,
    follow_key,
    history_cursor,
    key_cursor,
    new_workflow_id,
)
from ._planfile import PLACEHOLDER_PLAN_ID

CommandKind = Literal["pause", "resume", "cancel", "retry"]
"""The workflow commands the Workflow Manager answers (``signal`` is published only)."""


class Client(Connection):
    """An async client of a running mesh (see the module's docstring)."""

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

    async def submit(
        self,
        request: TaskRequest | Mapping[str, Any],
        *,
        planned: bool = True,
        within: float | None = None,
    ) -> WorkflowRun:
        """Publish ``request`` on ``requests`` for the Task Planner; a handle on its workflow.

        A mapping is read as a request file is (``type``, ``description``, ``id`` …). The request
        id is the request's own, else a fresh one; the workflow id is derived from it
        (:func:`mesh.planner.workflow_id_for`), so a request published twice runs once. Its
        constraints are checked as the planner will check them, and a request that fails that
        is a ``RequestRejected`` before anything is published. With
        ``planned`` (the default), wait up to ``within`` seconds (the client's timeout) for the
        planner's answer: ``RequestRejected`` if it refused, ``NoAnswer`` if none came; the
        run's ``plan`` is the plan that runs.
        """
        if not isinstance(request, TaskRequest):
            request = request_from_document(request, "request", self._me)
        try:  # what the planner would reject at once is refused before anything is published
            analyse(request)
        except InvalidRequest as exc:
            raise RequestRejected(
                request.request_id, exc.reason, exc.problems, published=False
            ) from None
        workflow_id = workflow_id_for(request.request_id)
        plans = await key_cursor(self.settings, "plans", workflow_id, from_end=True)
        # The same request again is the same workflow: if it started before, follow that one
        # from its start (the Workflow Manager ignores the repeated plan).
        again = await recorded_status(self.settings, workflow_id) is not None
        history = await history_cursor(self.settings, workflow_id, from_end=not again)
        await self.publish(request, "requests")
        run = WorkflowRun(self.settings, workflow_id, history, request.request_id, repeated=again)
        if planned:
            answer = await self._plan_for(workflow_id, plans, within)
            if isinstance(answer, PlanRejected):
                raise RequestRejected(request.request_id, answer.reason, answer.problems)
            run.plan = answer.plan
        return run

    async def _plan_for(
        self, workflow_id: str, plans: HistoryCursor, within: float | None
    ) -> PlanCreated | PlanRejected:
        within = within if within is not None else self.timeout
        try:
            async with (
                asyncio.timeout(within),
                contextlib.aclosing(follow_key(self.settings, workflow_id, plans)) as answers,
            ):
                async for event in answers:
                    if isinstance(event, PlanCreated | PlanRejected):
                        return event
        except TimeoutError:
            pass
        raise NoAnswer(
            f"no plan for workflow {workflow_id} within {within:.0f} s; is the planner running "
            "(mesh dev / mesh run planner)?"
        )

    async def start_workflow(
        self, plan: ExecutionPlan, *, workflow_id: str | None = None, request_id: str | None = None
    ) -> WorkflowRun:
        """Publish ``plan`` for the Workflow Manager to run (no planner); a handle on it.

        A plan whose id is the placeholder ``plan`` (a plan file without a workflow id) is named
        after the workflow. A ``workflow_id`` that an existing workflow has is refused
        (``WorkflowExists``) before anything is published: the Workflow Manager would take the
        plan for a repeat and ignore it.
        """
        if workflow_id is not None:
            status = await recorded_status(self.settings, workflow_id)
            if status is not None:
                raise WorkflowExists(workflow_id, status)
        workflow_id = workflow_id or new_workflow_id()
        request_id = request_id or f"req-{workflow_id}"
        if plan.plan_id == PLACEHOLDER_PLAN_ID:
            plan = plan.model_copy(update={"plan_id": workflow_id})
        cursor = await history_cursor(self.settings, workflow_id, from_end=True)
        # A plan too large for one event goes by reference (stored before the event names it).
        plan_ref = await self.store_plan(plan, correlation_id=request_id)
        event = PlanCreated(
            **meta(self._me, correlation_id=request_id),
            workflow_id=workflow_id,
            request_id=request_id,
            plan=plan if plan_ref is None else None,
            plan_ref=plan_ref,
        )
        await self.publish(event, "plans")
        return WorkflowRun(self.settings, workflow_id, cursor, request_id, plan)

    async def command(
        self,
        kind: CommandKind,
        workflow_id: str,
        *,
        reason: str = "",
        task_id: str | None = None,
        within: float | None = None,
    ) -> dict[str, Any]:
        """Publish a workflow command and return the Workflow Manager's answer
        (``{workflow_id, status, recorded}``); ``CallFailed`` if it refused."""
        event = self._command(kind, workflow_id, reason, task_id)
        return _object(await self.request(event, "commands", who="workflow-manager", within=within))

    async def send_command(
        self, kind: CommandKind, workflow_id: str, *, reason: str = "", task_id: str | None = None
    ) -> WorkflowEvent:
        """Publish a workflow command without waiting for the answer; the command published."""
        event = self._command(kind, workflow_id, reason, task_id)
        await self.publish(event, "commands")
        return event

    def _command(
        self, kind: CommandKind, workflow_id: str, reason: str, task_id: str | None
    ) -> WorkflowEvent:
        # A fresh correlation id per command: the Workflow Manager's reply carries it.
        envelope = meta(self._me, correlation_id=call_id(f"cmd-{kind}"))
        if kind == "pause":
            return PauseWorkflow(**envelope, workflow_id=workflow_id, reason=reason)
        if kind == "resume":
            return ResumeWorkflow(**envelope, workflow_id=workflow_id, reason=reason)
        if kind == "cancel":
            return CancelWorkflow(**envelope, workflow_id=workflow_id, reason=reason)
        if kind == "retry" and task_id is not None:
            return RetryTask(**envelope, workflow_id=workflow_id, task_id=task_id, reason=reason)
        raise ValueError(f"unknown command {kind!r} (retry needs a task id)")

    async def pause_workflow(self, workflow_id: str, reason: str = "") -> dict[str, Any]:
        """Pause: no new task starts until resumed (running ones finish)."""
        return await self.command("pause", workflow_id, reason=reason)

    async def resume_workflow(self, workflow_id: str, reason: str = "") -> dict[str, Any]:
        """Resume a paused workflow."""
        return await self.command("resume", workflow_id, reason=reason)

    async def cancel_workflow(self, workflow_id: str, reason: str = "") -> dict[str, Any]:
        """Cancel the workflow; running tasks are told to stop."""
        return await self.command("cancel", workflow_id, reason=reason)

    async def retry_task(self, workflow_id: str, task_id: str, reason: str = "") -> dict[str, Any]:
        """Run a failed task again, even if its retry policy is spent."""
        return await self.command("retry", workflow_id, reason=reason, task_id=task_id)

    async def signal(
        self, workflow_id: str, name: str, payload: Mapping[str, Any] | None = None
    ) -> ExternalEvent:
        """Publish the named event that event-driven tasks of ``workflow_id`` wait for."""
        event = ExternalEvent(
            **meta(self._me, correlation_id=f"evt-{workflow_id}"),
            workflow_id=workflow_id,
            name=name,
            payload=json.loads(json.dumps(dict(payload or {}), default=str)),
        )
        await self.publish(event, "commands")
        return event

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
        """Start ``count`` agent processes of ``kind`` (a template name); their ids, pids and
        host (``CallFailed`` if the Agent Manager refused, or answered with no agent)."""
        event = SpawnAgents(
            **meta(self._me, correlation_id=call_id("spawn")),
            template=kind,
            count=count,
            name=name,
            config=json.loads(json.dumps(dict(config or {}), default=str)),
        )
        result = _object(
            await self.request(event, "agents.commands", who="agent-manager", within=within)
        )
        agents = result.get("agents")
        spawned = (
            [dict(a) for a in agents if isinstance(a, dict)] if isinstance(agents, list) else []
        )
        if not spawned:
            raise CallFailed("the Agent Manager's reply lists no agents")
        return spawned

    async def terminate_agent(
        self, agent_id: str, *, grace: float = 10.0, reason: str = ""
    ) -> dict[str, Any]:
        """Stop an agent gracefully, then forcefully after ``grace`` seconds."""
        event = TerminateAgent(
            **meta(self._me, correlation_id=call_id("terminate")),
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


__all__ = ["Client", "CommandKind"]
