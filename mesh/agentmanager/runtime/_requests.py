"""Lifecycle requests from ``agents.commands`` (``SpawnAgents``, ``TerminateAgent``) turned into
calls of :class:`~mesh.agentmanager.runtime._lifecycle.AgentLifecycle`, and their outcome into a
``Reply``.

A request older than the lifecycle's ``expire_after`` gets no reply: its sender has given up.
(Records that do not decode, or are not lifecycle requests, never get here: the
``agents.commands`` subscriber dead-letters them.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import JsonValue

from mesh.errors import MeshError, TemplateRefused
from mesh.events import Event, Reply, ReplyError, SpawnAgents, TerminateAgent, meta
from mesh.log import get_logger

if TYPE_CHECKING:
    from mesh.agentmanager.runtime._lifecycle import AgentLifecycle

log = get_logger("mesh.agentmanager.lifecycle")


async def answer(lifecycle: AgentLifecycle, request: SpawnAgents | TerminateAgent) -> Reply | None:
    """Carry out ``request``; the reply to send, or None."""
    age = (datetime.now(UTC) - request.occurred_at).total_seconds()
    if age > lifecycle.expire_after:
        log.warning("expired lifecycle request skipped", type=request.type, age_seconds=age)
        return None
    try:
        result = await perform(lifecycle, request)
    except (MeshError, TemplateRefused) as exc:
        return _failure(lifecycle, request, exc)
    except Exception as exc:  # an OS error starting a process: answer rather than hang
        log.error("lifecycle request failed", type=request.type, error=str(exc))
        return _failure(lifecycle, request, exc)
    return Reply(**meta(lifecycle.me, causation=request), ok=True, result=result)


async def perform(lifecycle: AgentLifecycle, request: SpawnAgents | TerminateAgent) -> JsonValue:
    """Carry out one request; its reply's result."""
    if isinstance(request, SpawnAgents):
        spawned = await lifecycle.spawn_agent(
            request.template, request.config, count=request.count, name=request.name
        )
        return {"agents": [s.as_json() for s in spawned]}
    done = await lifecycle.terminate_agent(request.agent_id, grace=request.grace_seconds)
    return done.as_json()


def _failure(lifecycle: AgentLifecycle, request: Event, exc: BaseException) -> Reply:
    error = ReplyError(
        kind=type(exc).__name__,
        message=str(exc)[:2_000] or type(exc).__name__,
        retriable=bool(getattr(exc, "retriable", False)),
    )
    return Reply(**meta(lifecycle.me, causation=request), ok=False, error=error)


__all__ = ["answer", "perform"]
