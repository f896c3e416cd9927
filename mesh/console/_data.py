"""What the console's pages and controls read and do, through the mesh's public APIs.

Workflows come from ``mesh.replay`` (live state, history, replay), agents from
``mesh.client.agent_states``, resources from the allocator rebuilt by
``mesh.resources.runtime.read_allocator``, dead letters and groups from ``mesh.inspect``, and
every control goes through ``mesh.Client`` so the Workflow Manager's answer (a refusal too) is
what the page shows.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import JsonValue

from mesh.client import CallFailed, Client, CommandKind, NoAnswer, agent_states
from mesh.console._layout import LayoutCache
from mesh.console._views import attempts_of, step_dict, task_briefs, task_detail, workflow_row
from mesh.errors import ConfigError, MeshError, UnknownWorkflow
from mesh.events import (
    ExternalEvent,
    Mapper,
    Producer,
    meta,
    uuid7,
)
from mesh.inspect import (
    LETTER_FIELDS,
    describe_original,
    find,
    parse_filter,
    parse_position,
    read_letters,
    redrive,
    select,
    whole_letter,
)
from mesh.inspect import group_infos as read_groups
from mesh.replay import Recorded, Stepper, diff_states, live_state, read_history, timeline_of
from mesh.resources.runtime import read_allocator
from mesh.settings import Settings
from mesh.workflows import Folding, WorkflowState

HISTORY_TTL_SECONDS = 3.0
"""How long a read history serves replay requests (a slider sends many in a row)."""

MAX_DIFFERENCES = 200


@dataclass
class _Cached:
    at: float
    records: list[Recorded]
    partition: int
    stepper: Stepper


class Workflows:
    """One workflow's views: its DAG, live state, history, a task, the replay after event N."""

    def __init__(self, settings: Settings, layouts: LayoutCache | None = None) -> None:
        self.settings = settings
        self.layouts = layouts or LayoutCache()
        self._histories: dict[str, _Cached] = {}

    async def view(self, workflow_id: str) -> dict[str, Any]:
        """Where the workflow stands now, and the position its live stream goes on from."""
        topic = self.settings.topic("workflow.events")
        try:
            live = await live_state(self.settings, workflow_id)
        except UnknownWorkflow:
            return {"workflow_id": workflow_id, "started": False, "topic": topic, "after": -1}
        state = live.state
        return {
            "workflow_id": workflow_id,
            "started": True,
            "topic": topic,
            "partition": live.partition,
            "after": live.end_offset - 1,
            "workflow": workflow_row(state, datetime.now(UTC)),
            "plan": {
                "plan_id": state.plan.plan_id,
                "workflow_type": state.plan.workflow_type,
                "failure_policy": state.plan.failure_policy,
                "priority": state.plan.priority,
                "tenant": state.plan.tenant,
                "max_parallelism": state.plan.max_parallelism,
            },
            "tasks": task_briefs(state),
        }

    async def svg(self, workflow_id: str) -> str:
        """The DAG of the workflow's plan (laid out once per plan)."""
        state = (await live_state(self.settings, workflow_id)).state
        return self.dag(state)

    def dag(self, state: WorkflowState) -> str:
        graph = Folding(state).graph
        names = {spec.task_id: spec.name for spec in state.plan.tasks}
        deps = {spec.task_id: graph.deps[spec.task_id] for spec in state.plan.tasks}
        return self.layouts.svg(state.plan.plan_id, deps, names)

    async def _history(self, workflow_id: str, *, fresh: bool = False) -> _Cached:
        cached = self._histories.get(workflow_id)
        if cached is not None and not fresh and time.monotonic() - cached.at < HISTORY_TTL_SECONDS:
            return cached
        history = await read_history(self.settings, workflow_id, with_snapshot=False)
        cached = _Cached(
            time.monotonic(),
            history.records,
            history.partition,
            Stepper([r.event for r in history.records]),
        )
        self._histories[workflow_id] = cached
        if len(self._histories) > 32:
            self._histories.pop(next(iter(self._histories)))
        return cached

    async def history(self, workflow_id: str) -> dict[str, Any]:
        """Every history event with its position and state change, and every attempt."""
        cached = await self._history(workflow_id, fresh=True)
        steps = timeline_of(cached.records)
        now = datetime.now(UTC)
        return {
            "workflow_id": workflow_id,
            "partition": cached.partition,
            "steps": [
                step_dict(step, f"{cached.partition}:{item.offset}")
                for step, item in zip(steps, cached.records, strict=True)
            ],
            "attempts": [a.as_dict(now) for a in attempts_of(cached.records)],
            "started_at": cached.records[0].event.occurred_at.isoformat(),
            "now": now.isoformat(),
        }

    async def task(self, workflow_id: str, task_id: str, *, full: bool = False) -> dict[str, Any]:
        """The task panel: spec, state, output (a preview unless ``full``), every attempt."""
        live = await live_state(self.settings, workflow_id)
        if task_id not in live.state.tasks:
            raise ConfigError(f"workflow {workflow_id} has no task {task_id!r}")
        cached = await self._history(workflow_id)
        attempts = attempts_of(cached.records)
        return task_detail(live.state, task_id, attempts, datetime.now(UTC), full=full)

    async def replay(self, workflow_id: str, event: int) -> dict[str, Any]:
        """The workflow after its first ``event`` history events (the fold of ``mesh replay
        --until-event``), and every field where the live state differs from it."""
        cached = await self._history(workflow_id)
        stepper = cached.stepper
        if not 1 <= event <= stepper.total:
            raise ConfigError(f"event {event} is out of range 1…{stepper.total}")
        replayed = stepper.state_at(event)
        live = await live_state(self.settings, workflow_id)
        found = diff_states(live.state, replayed)
        item = cached.records[event - 1]
        return {
            "workflow_id": workflow_id,
            "event": event,
            "total": stepper.total,
            "type": item.event.type,
            "position": f"{cached.partition}:{item.offset}",
            "time": item.event.occurred_at.isoformat(),
            "workflow_status": replayed.status,
            "tasks": task_briefs(replayed),
            "live_sequence": live.state.sequence,
            "replayed_sequence": replayed.sequence,
            "differences": [d.as_dict() for d in found[:MAX_DIFFERENCES]],
            "difference_count": len(found),
        }


def _producer() -> Producer:
    return Producer(component="console", instance=f"{socket.gethostname()}-{os.getpid()}"[:200])


class Controls:
    """Pause, resume, cancel, retry and signal through one :class:`mesh.Client`, opened on
    first use and opened again if it lost its connection."""

    def __init__(self, settings: Settings, *, timeout: float = 15.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._me = _producer()

    async def _connected(self) -> Client:
        async with self._lock:
            if self._client is None:
                client = Client(self.settings, timeout=self.timeout)
                await client.start()
                self._client = client
            return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def run(
        self,
        action: str,
        workflow_id: str,
        *,
        task_id: str | None = None,
        name: str | None = None,
        payload: dict[str, JsonValue] | None = None,
        reason: str = "",
    ) -> dict[str, Any]:
        """Carry out a control and wait for the Workflow Manager's answer: ``{ok, result}``, or
        ``{ok: false, error}`` for a refusal, no answer or a broker failure; ConfigError for an
        unknown or incomplete control."""
        reason = reason or "from the console"
        if action == "signal" and not name:
            raise ConfigError("a signal needs a name")
        if action == "retry" and not task_id:
            raise ConfigError("retry needs a task id")
        if action not in ("pause", "resume", "cancel", "retry", "signal"):
            raise ConfigError(f"unknown control {action!r}")
        try:
            client = await self._connected()
            if action == "signal":
                assert name is not None
                envelope = meta(self._me, correlation_id=f"console-signal-{uuid7().hex[:20]}")
                event = ExternalEvent(
                    **envelope, workflow_id=workflow_id, name=name, payload=payload or {}
                )
                result: Any = await client.request(event, "commands", who="workflow-manager")
            else:
                kind: CommandKind = action  # type: ignore[assignment]  # checked above
                result = await client.command(kind, workflow_id, reason=reason, task_id=task_id)
        except (CallFailed, NoAnswer) as exc:
            return {"ok": False, "error": str(exc), "kind": type(exc).__name__}
        except MeshError as exc:  # the connection went: the next control opens a new one
            await self.close()
            return {"ok": False, "error": str(exc), "kind": type(exc).__name__}
        return {"ok": True, "result": result}


async def agents(settings: Settings) -> dict[str, Any]:
    """Registered agents with health, breaker, load and last heartbeat."""
    reports = await agent_states(settings)
    rows = []
    for report in reports:
        data = report.as_json()
        data["outstanding"] = report.state.outstanding
        rows.append(data)
    return {"agents": rows, "at": datetime.now(UTC).isoformat()}


async def resources(settings: Settings) -> dict[str, Any]:
    """Pools, usage, queued requests, quotas and costs from the allocator's ledger."""
    allocator = await read_allocator(settings)
    usage = allocator.get_resource_usage().to_dict()
    queued = []
    for allocation_id, waiting in sorted(
        allocator.ledger.waiting.items(), key=lambda item: item[1].arrival
    ):
        request = waiting.request
        queued.append(
            {
                "allocation_id": allocation_id,
                "workflow_id": getattr(request, "workflow_id", None),
                "task_id": getattr(request, "task_id", None),
                "tenant": getattr(request, "tenant", None),
                "resources": request.resources.model_dump(),
                "since": waiting.arrival[0].isoformat(),
                "queued": waiting.queued,
            }
        )
    return {**usage, "queued": queued}


async def costs(settings: Settings) -> dict[str, float]:
    """What each workflow has cost so far (released allocations plus what live ones accrued)."""
    allocator = await read_allocator(settings)
    usage = allocator.get_resource_usage()
    return {w.workflow_id: w.cost for w in usage.workflows}


async def dead_letters(settings: Settings, where: str | None = None) -> dict[str, Any]:
    """Every dead letter (optionally filtered), and counts per origin and reason."""
    letters = await read_letters(settings)
    chosen = select(letters, settings, parse_filter(where, known=LETTER_FIELDS) if where else None)
    rows = [item.summary() for item in chosen]
    counts = Counter(
        (
            row.get("original_topic") or "(not a dead letter)",
            row.get("component") or "",
            row["reason"] or "",
        )
        for row in rows
    )
    return {
        "topic": letters.topic,
        "count": len(rows),
        "groups": [
            {"origin": origin, "component": component, "reason": reason, "count": count}
            for (origin, component, reason), count in counts.most_common()
        ],
        "letters": rows,
    }


async def dead_letter(settings: Settings, position: str) -> dict[str, Any]:
    """One dead letter whole, with its original record decoded."""
    partition, offset = parse_position(position)
    letters = await read_letters(settings)
    item = find(letters, partition, offset)
    if item.letter is None:
        return {**item.summary(), "letter": None, "original": None}
    whole, original = await whole_letter(settings, item)
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    return {
        **item.summary(),
        "letter": whole.model_dump(mode="json", exclude={"original_value_base64"}),
        "original": describe_original(original, mapper),
    }


async def redrive_letters(settings: Settings, where: str | None, dry_run: bool) -> dict[str, Any]:
    """Send matching dead letters back to their topics (or say which would go, dry run)."""
    chosen = parse_filter(where, known=LETTER_FIELDS) if where else None
    result = await redrive(settings, chosen, dry_run=dry_run)
    return result.as_json()


async def groups(settings: Settings) -> dict[str, Any]:
    """Lag of each component's consumer group."""
    return {"groups": [info.as_json() for info in await read_groups(settings)]}
