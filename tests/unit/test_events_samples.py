"""Sample events for every registered type, built from the models' own field declarations.

Hand-written factories would silently stop covering a new event; these are derived from
``model_fields`` so that every type the registry holds gets a minimal sample (defaults only) and
a full one (every optional field set), and the tests below prove both are valid.
"""

from __future__ import annotations

import types
import typing
from collections import abc
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, get_args, get_origin

import annotated_types
import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from mesh.events import (
    REGISTRY,
    Event,
    ExecutionPlan,
    PayloadRef,
    PlanCreated,
    Producer,
    Reply,
    TaskRequest,
    TaskSpec,
    WorkflowStarted,
    meta,
)

E = TypeVar("E", bound=Event)

PRODUCER = Producer(component="test", instance="test-0")
WHEN = datetime(2030, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
_ENVELOPE = {
    "event_id",
    "type",
    "schema_version",
    "occurred_at",
    "correlation_id",
    "causation_id",
    "producer",
}


def _find(constraints: list[Any], kind: type[Any]) -> Any:
    return next((c for c in constraints if isinstance(c, kind)), None)


def _number(kind: type[Any], constraints: list[Any]) -> Any:
    ge, gt, le = (
        _find(constraints, k) for k in (annotated_types.Ge, annotated_types.Gt, annotated_types.Le)
    )
    low = ge.ge if ge is not None else (gt.gt + 1 if gt is not None else 0)
    value = low + 2  # off the lower bound, so a full sample differs from typical defaults
    if le is not None:
        value = min(value, le.le)
    return kind(value)


def _value(annotation: Any, constraints: list[Any], full: bool) -> Any:
    """A valid value for one annotation, satisfying the constraints declared on it."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        inner, *extras = get_args(annotation)
        found = [m for x in extras for m in (x.metadata if isinstance(x, FieldInfo) else [x])]
        return _value(inner, [*found, *constraints], full)
    if origin is Literal:
        return get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return _value(options[0], constraints, full)
    if origin in (tuple, abc.Sequence):
        low = _find(constraints, annotated_types.MinLen)
        count = max(low.min_length if low else 0, 1 if full else 0)
        return tuple(_value(get_args(annotation)[0], [], full) for _ in range(count))
    if origin is dict:
        key_type, value_type = get_args(annotation)
        return {_value(key_type, [], full): _value(value_type, [], full)} if full else {}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sample_model(annotation, full=full)
    if annotation is bool:
        return True
    if annotation in (int, float):
        return _number(annotation, constraints)
    if annotation is str:
        low = _find(constraints, annotated_types.MinLen)
        return "x" * max(low.min_length if low else 0, 3 if full else 1)
    if "datetime" in repr(annotation).lower():
        return WHEN + timedelta(hours=1)
    if "JsonValue" in repr(annotation):
        return {"nested": [1, 2.5, "three", None, True]} if full else None
    raise TypeError(f"no sample value for {annotation!r}")


def _special(cls: type[Any], full: bool) -> dict[str, Any]:
    """Values that cross-field validators need (a plan's dependencies, a reply's error)."""
    if cls is ExecutionPlan:
        first = sample_model(TaskSpec, full=full, task_id="a", depends_on=())
        second = sample_model(TaskSpec, full=full, task_id="b", depends_on=("a",))
        return {"tasks": (first, second)}
    if cls is TaskSpec:
        return {"depends_on": ()}
    if cls in (PlanCreated, WorkflowStarted) and not full:  # a plan, or a reference to one
        return {"plan": sample_model(ExecutionPlan)}
    if cls is PayloadRef:
        return {"sha256": "0" * 64}
    if cls is Reply and full:
        return {"ok": False}
    return {}


def sample_model(cls: type[Any], *, full: bool = False, **overrides: Any) -> Any:
    """A valid instance of a model: required fields filled; with ``full`` every field filled."""
    overrides = {**_special(cls, full), **overrides}
    values: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        if name in overrides or name in _ENVELOPE:
            continue
        if info.is_required() or full:
            values[name] = _value(info.annotation, list(info.metadata), full)
    return cls(**{**values, **overrides})


def sample_event(cls: type[E], *, full: bool = False, **overrides: Any) -> E:
    """A valid event of ``cls`` with a deterministic envelope (and a cause when ``full``)."""
    if full:
        envelope = meta(PRODUCER, causation=sample_request(), occurred_at=WHEN)
    else:
        envelope = meta(PRODUCER, correlation_id="req-1", occurred_at=WHEN)
    event: E = sample_model(cls, full=full, **{**envelope, **overrides})
    return event


def sample_request() -> TaskRequest:
    """A small, realistic request (the usual start of a causal chain)."""
    return TaskRequest(
        **meta(PRODUCER, correlation_id="req-1", occurred_at=WHEN),
        request_id="req-1",
        task_type="feature",
        description="write the thing",
    )


ALL_EVENTS = list(REGISTRY)
EVENT_IDS = [f"{c.event_type()}.v{c.event_version()}" for c in ALL_EVENTS]


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=EVENT_IDS)
@pytest.mark.parametrize("full", [False, True], ids=["minimal", "full"])
def test_every_registered_event_has_valid_samples(cls: type[Event], full: bool) -> None:
    """The factory builds a valid minimal and full sample of every registered type."""
    event = sample_event(cls, full=full)
    assert type(event) is cls
    assert event.type == cls.event_type()
    assert event.key  # every event names its subject
    if full:
        unset = [n for n, f in cls.model_fields.items() if getattr(event, n) == f.default]
        assert set(unset) <= {"type", "schema_version"}, f"full sample left {unset} at default"
