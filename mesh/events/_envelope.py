"""The envelope every event carries, and the one helper that fills it.

Producers never hand-fill metadata: ``meta(producer, causation=...)`` makes a fresh time-ordered
id, stamps the UTC time and carries the correlation id down the causal chain, and its result is
unpacked into the event (``TaskCompleted(**meta(me, causation=assigned), workflow_id=...)``) so that
mypy still checks every event field by name.
"""

from __future__ import annotations

from abc import abstractmethod
from datetime import UTC, datetime
from typing import Any, ClassVar, TypedDict
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from mesh.events._ids import uuid7
from mesh.events._types import EventId, Id, Name, UtcDatetime

_ENVELOPE_DOCS = {
    "type": "Event type; selects the schema. Also sent as the `mesh-type` header.",
    "schema_version": (
        "Version of this type's schema. Also sent as the `mesh-schema-version` header."
    ),
}


def _schema_extra(schema: dict[str, Any], cls: type[Any]) -> None:
    # `type` and `schema_version` have defaults so that Python code need not repeat them, but on
    # the wire they are required: they pick the schema. Say so in every generated schema.
    properties = schema.get("properties", {})
    required = schema.setdefault("required", [])
    for name, doc in _ENVELOPE_DOCS.items():
        if name in properties:
            properties[name].setdefault("description", doc)
            properties[name].pop("default", None)
            if name not in required:
                required.insert(0 if name == "type" else 1, name)


class Frozen(BaseModel):
    """Base of every value carried inside an event: immutable, strict, no unknown fields."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", allow_inf_nan=False)


class Producer(Frozen):
    """Which component and which replica of it wrote the event."""

    component: Name = Field(description="Component name, e.g. `workflow-manager` or `agent`.")
    instance: Id = Field(description="Replica or process id, e.g. `wm-0` or `host-4242`.")


class Event(BaseModel):
    """The envelope shared by all events; each concrete class fixes ``type`` and the version.

    Frozen and strict so that an event, once made, is exactly what is on the wire; ``extra`` is
    forbidden so that a typo in a non-Python producer fails loudly instead of being dropped.
    """

    # allow_inf_nan=False: JSON has no NaN or Infinity, so such a value could not round-trip.
    model_config = ConfigDict(
        frozen=True,
        strict=True,
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra=_schema_extra,
    )

    event_id: EventId = Field(
        description="Unique, time-ordered id (UUIDv7). Also sent as the `mesh-event-id` header."
    )
    type: str = Field(description=_ENVELOPE_DOCS["type"])
    schema_version: int = Field(description=_ENVELOPE_DOCS["schema_version"])
    occurred_at: UtcDatetime = Field(
        description="When the fact happened, RFC 3339 with a UTC offset (normalised to UTC)."
    )
    correlation_id: Id = Field(
        description="Id of the originating request; shared by every event it led to. "
        "Also sent as the `mesh-correlation-id` header."
    )
    causation_id: UUID | None = Field(
        default=None, description="`event_id` of the event that caused this one, if any."
    )
    producer: Producer = Field(description="The component and replica that wrote the event.")

    #: Human description of the Kafka key, for the catalog and the AsyncAPI document.
    key_doc: ClassVar[str] = ""

    @property
    @abstractmethod
    def key(self) -> str:
        """The subject this event is about, used as the Kafka key (workflow id, agent id …)."""

    @classmethod
    def event_type(cls) -> str:
        """The ``type`` this class fixes (its Literal default)."""
        # __pydantic_fields__, not model_fields: the same dict without pydantic's property
        # machinery, and decoding asks for every record.
        default = cls.__pydantic_fields__["type"].default
        if not isinstance(default, str):
            raise TypeError(f"{cls.__name__} does not fix its `type` with a Literal default")
        return default

    @classmethod
    def event_version(cls) -> int:
        """The ``schema_version`` this class fixes (its Literal default)."""
        default = cls.__pydantic_fields__["schema_version"].default
        if not isinstance(default, int) or isinstance(default, bool):
            raise TypeError(f"{cls.__name__} does not fix `schema_version` with a Literal default")
        return default


class WorkflowEvent(Event):
    """An event about one workflow: keyed by its id, so its events stay ordered in one partition."""

    key_doc: ClassVar[str] = "workflow id"

    workflow_id: Id = Field(description="The workflow this event is about (the Kafka key).")
    sequence: int | None = Field(
        default=None,
        ge=1,
        description="Position in the workflow's history (1 = first event). Set when the Workflow "
        "Manager records the event in `workflow.events`; absent elsewhere.",
    )

    @property
    def key(self) -> str:
        return self.workflow_id


class Meta(TypedDict):
    """The envelope fields a producer fills for every event (see :func:`meta`)."""

    event_id: UUID
    occurred_at: datetime
    correlation_id: str
    causation_id: UUID | None
    producer: Producer


def meta(
    producer: Producer,
    *,
    causation: Event | None = None,
    correlation_id: str | None = None,
    occurred_at: datetime | None = None,
    event_id: UUID | None = None,
) -> Meta:
    """Envelope fields for a new event: fresh id, now in UTC, correlation carried from the cause.

    Give ``causation`` (the event being handled) or, at the start of a chain, ``correlation_id``
    (usually the request id). An explicit ``correlation_id`` wins over the cause's.
    ``occurred_at`` and ``event_id`` are for tests and deterministic replays.
    """
    if correlation_id is None:
        if causation is None:
            raise ValueError("meta() needs the causing event or a correlation_id")
        correlation_id = causation.correlation_id
    return Meta(
        event_id=event_id if event_id is not None else uuid7(),
        occurred_at=occurred_at if occurred_at is not None else datetime.now(UTC),
        correlation_id=correlation_id,
        causation_id=causation.event_id if causation is not None else None,
        producer=producer,
    )


class TaskEvent(WorkflowEvent):
    """An event about one attempt of one task of a workflow (still keyed by the workflow)."""

    task_id: Id = Field(description="The task, as named in the plan.")
    attempt: int = Field(ge=1, description="Attempt number: 1 for the first run, 2 for a retry …")
