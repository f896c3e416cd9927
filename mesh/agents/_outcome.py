"""What running an attempt yields, and the interface every kind of agent implements.

A runner never talks to Kafka: it turns a ``TaskAssigned`` into a :data:`Outcome`, and the worker
publishes it. That keeps command and Python agents testable without a broker and lets the worker
own delivery (started → completed/failed → commit) in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mesh.events import Capability, OutputStream, TaskAssigned


@dataclass(frozen=True)
class Success:
    """The attempt succeeded with this output (a JSON object)."""

    output: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """The attempt failed; ``kind`` is matched against the retry policy's ``non_retryable``.

    ``infrastructure`` says whether the failure is the agent's (its endpoint, its program) rather
    than the task's own verdict, i.e. whether the agent's circuit breaker counts it; None lets
    ``retriable`` decide (see :mod:`mesh.agents._breaker`).
    """

    kind: str
    message: str
    retriable: bool
    infrastructure: bool | None = None
    output: dict[str, Any] = field(default_factory=dict)
    """What the attempt printed before it failed (a command's streams), kept in ``TaskFailed``."""


Outcome = Success | Failure

ProgressFn = Callable[[float | None, str, dict[str, Any]], Awaitable[None]]
"""Publishes a TaskProgress for the running attempt: ``(percent, message, details)``."""

OutputFn = Callable[[OutputStream, str], None]
"""Hands text the running attempt printed on a stream to be published as ``TaskOutput`` chunks;
returns at once (batched and published later, see :mod:`mesh.agents._stream`)."""


class Runner(Protocol):
    """Runs attempts for one kind of agent; raises only ``CancelledError`` (when cancelled)."""

    @property
    def capabilities(self) -> tuple[Capability, ...]:
        """What this runner can do (registered with the agent)."""
        ...

    async def run(self, assigned: TaskAssigned, progress: ProgressFn, output: OutputFn) -> Outcome:
        """Run one attempt to its outcome, handing what it prints to ``output``."""
        ...


def time_limit(assigned: TaskAssigned, agent_limit: float | None, now: datetime) -> float | None:
    """Seconds the attempt may take: the least of the agent's limit, the task's and the deadline.

    ``None`` means no limit; zero or less means the deadline has already passed.
    """
    limits = [agent_limit, assigned.spec.timeout_seconds]
    if assigned.deadline is not None:
        limits.append((assigned.deadline - now).total_seconds())
    present = [limit for limit in limits if limit is not None]
    return min(present) if present else None


def timed_out(limit: float) -> Failure:
    """The failure of an attempt that ran out of time (retriable: the retry policy decides)."""
    return Failure("timeout", f"the attempt did not finish within {limit:g} s", retriable=True)


__all__ = [
    "Failure",
    "Outcome",
    "OutputFn",
    "ProgressFn",
    "Runner",
    "Success",
    "time_limit",
    "timed_out",
]
