"""Request analysis: a ``TaskRequest``'s loose requirements and constraints as typed limits.

Constraints travel as ``name: value`` pairs so that non-Python clients can send them; here each
known name gets its type and bounds, and every problem is reported at once, one readable line
each. A name the planner does not know is kept (other components may place work by it) unless it
looks like a misspelling of a known one, which is an error: a silently ignored
``max_paralelism`` would be worse than a rejection.
"""

from __future__ import annotations

import difflib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mesh.errors import ConfigError, InvalidRequest
from mesh.events import FailurePolicy, TaskRequest
from mesh.times import parse_duration, parse_time

RESOURCE_LIMITS = {
    "max_cpu": "cpu",
    "max_memory_mb": "memory_mb",
    "max_network_mbps": "network_mbps",
    "max_storage_mb": "storage_mb",
    "max_gpu": "gpu",
}
"""Constraint name → the ``Resources`` field whose peak over the schedule it caps."""

_ALIASES = {"budget": "max_cost", "max_duration": "max_duration_seconds"}
KNOWN_CONSTRAINTS = frozenset(
    {"max_parallelism", "max_cost", "deadline", "max_duration_seconds", "failure_policy"}
    | RESOURCE_LIMITS.keys()
    | _ALIASES.keys()
)

_WORKFLOW_NAMESPACE = uuid.UUID("5d6c1f0e-8f0a-4c55-9a53-3c1b7e0c4a11")


def workflow_id_for(request_id: str) -> str:
    """The workflow id the planner gives a request: the same for every delivery of it.

    Deterministic so that a redelivered request yields a plan for the same workflow, which the
    Workflow Manager then ignores as a repeat; clients compute it to follow their workflow.
    """
    return f"wf-{uuid.uuid5(_WORKFLOW_NAMESPACE, request_id).hex}"


def parse_instant(value: object, now: datetime) -> datetime:
    """An aware UTC instant from a datetime or any form :func:`mesh.times.parse_time` reads; a
    bare duration counts from ``now`` (a deadline lies ahead). ValueError if unreadable."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    try:
        return parse_time(str(value), now=now, ahead=True)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Limits:
    """The typed constraints: what a plan must respect."""

    max_parallelism: int | None = None
    max_cost: float | None = None
    deadline: datetime | None = None
    failure_policy: FailurePolicy = "fail_fast"
    resources: Mapping[str, float] = field(default_factory=dict)
    """``Resources`` field → the most that may be in use at once (from ``max_cpu`` …)."""


@dataclass(frozen=True)
class RequestSpec:
    """A request, analysed: typed requirements and limits, and the time it was planned at."""

    request: TaskRequest
    now: datetime
    capabilities: tuple[str, ...] = ()
    """Capabilities that mandatory requirements call for."""
    preferred: tuple[str, ...] = ()
    """Capabilities that optional requirements call for."""
    criteria: tuple[str, ...] = ()
    """Every requirement's description, in order (acceptance criteria for prompts)."""
    limits: Limits = field(default_factory=Limits)
    other_constraints: Mapping[str, object] = field(default_factory=dict)
    """Constraints the planner does not use (placement hints for other components)."""

    @property
    def task_type(self) -> str:
        return self.request.task_type

    @property
    def workflow_id(self) -> str:
        return workflow_id_for(self.request.request_id)

    def namespace(self) -> dict[str, Any]:
        """What templates may read: ``request.*``, ``context.*``, ``requirements.*`` …"""
        request = self.request
        bullets = "\n".join(f"- {text}" for text in self.criteria) or "- (none given)"
        return {
            "request": {
                "id": request.request_id,
                "type": request.task_type,
                "description": request.description,
                "priority": request.priority,
                "tenant": request.tenant,
                "deadline": self.limits.deadline.isoformat() if self.limits.deadline else None,
            },
            "context": dict(request.context),
            "requirements": {
                "capabilities": list(self.capabilities),
                "preferred": list(self.preferred),
                "criteria": list(self.criteria),
                "text": bullets,
            },
            "constraints": {c.name: c.value for c in request.constraints},
        }


def analyse(request: TaskRequest, now: datetime | None = None) -> RequestSpec:
    """Type the request's requirements and constraints; ``InvalidRequest`` lists every problem."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    problems: list[str] = []
    values: dict[str, Any] = {}
    other: dict[str, object] = {}
    for constraint in request.constraints:
        name = _ALIASES.get(constraint.name, constraint.name)
        if name not in KNOWN_CONSTRAINTS:
            close = difflib.get_close_matches(constraint.name, sorted(KNOWN_CONSTRAINTS), 1, 0.8)
            if close:
                problems.append(
                    f"constraints: unknown constraint {constraint.name!r}; "
                    f"did you mean {close[0]!r}?"
                )
            else:
                other[constraint.name] = constraint.value
            continue
        if name in values:
            problems.append(f"constraints: {name} is given more than once")
            continue
        try:
            values[name] = _PARSERS[name](constraint.value, now)
        except ValueError as exc:
            problems.append(f"constraints.{constraint.name}: {exc}")
    deadlines = [d for d in (request.deadline, values.get("deadline")) if d is not None]
    if "max_duration_seconds" in values:
        deadlines.append(now + timedelta(seconds=values["max_duration_seconds"]))
    if problems:
        raise InvalidRequest(problems)
    required = _unique(r.capability for r in request.requirements if r.mandatory and r.capability)
    preferred = _unique(
        r.capability for r in request.requirements if not r.mandatory and r.capability
    )
    limits = Limits(
        max_parallelism=values.get("max_parallelism"),
        max_cost=values.get("max_cost"),
        deadline=min(deadlines) if deadlines else None,
        failure_policy=values.get("failure_policy", "fail_fast"),
        resources={RESOURCE_LIMITS[k]: v for k, v in values.items() if k in RESOURCE_LIMITS},
    )
    return RequestSpec(
        request=request,
        now=now,
        capabilities=required,
        preferred=tuple(c for c in preferred if c not in required),
        criteria=tuple(r.description for r in request.requirements),
        limits=limits,
        other_constraints=other,
    )


def _unique(items: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _whole(value: object, _now: datetime) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a whole number >= 1, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"expected a whole number >= 1, got {value!r}") from None
    if number < 1:
        raise ValueError(f"expected a whole number >= 1, got {value!r}")
    return number


def _amount(value: object, _now: datetime) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number >= 0, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"expected a number >= 0, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"expected a finite number >= 0, got {value!r}")
    return number


def _policy(value: object, _now: datetime) -> str:
    if value not in ("fail_fast", "continue"):
        raise ValueError(f"expected 'fail_fast' or 'continue', got {value!r}")
    return str(value)


_PARSERS: dict[str, Callable[[object, datetime], Any]] = {
    "max_parallelism": _whole,
    "max_cost": _amount,
    "deadline": parse_instant,
    "max_duration_seconds": lambda value, _now: parse_duration(value),
    "failure_policy": _policy,
    **dict.fromkeys(RESOURCE_LIMITS, _amount),
}
