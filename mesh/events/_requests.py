"""What clients send: a request for work (the seed's ``TaskRequest``), on ``requests``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mesh.events._envelope import Event, Frozen
from mesh.events._types import Id, JsonObject, Name, Seq, ShortText, Text, UtcDatetime
from mesh.events._values import Priority


class Requirement(Frozen):
    """Something the result must satisfy; may name the capability it calls for."""

    description: ShortText = Field(min_length=1, description="What is required, in words.")
    capability: Name | None = Field(
        default=None, description="Capability the requirement calls for, if it is known."
    )
    mandatory: bool = Field(default=True, description="False for a nice-to-have.")


class Constraint(Frozen):
    """A limit on how the work may be done (budget, deadline, parallelism, placement …)."""

    name: Name = Field(description="Constraint name, e.g. `max_cost`, `max_parallelism`, `region`.")
    value: str | int | float | bool = Field(description="The limit's value.")


class TaskRequest(Event):
    """A client asks the mesh to do a piece of work; the Task Planner turns it into a plan."""

    type: Literal["request.submitted"] = "request.submitted"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "request id"

    request_id: Id = Field(description="Client-chosen id of the request (the Kafka key).")
    task_type: Name = Field(
        description="Kind of work, e.g. `feature`, `bugfix`, `review`; selects planning templates."
    )
    description: Text = Field(min_length=1, description="What to do, in words.")
    requirements: Seq[Requirement] = Field(
        default=(), max_length=200, description="What the result must satisfy."
    )
    constraints: Seq[Constraint] = Field(
        default=(), max_length=100, description="Limits on how the work may be done."
    )
    priority: Priority = Field(default="normal", description="How urgent the work is.")
    deadline: UtcDatetime | None = Field(default=None, description="When the work must be done.")
    tenant: Name = Field(
        default="default", description="Who pays: the quota the work counts against."
    )
    context: JsonObject = Field(
        default_factory=dict, description="Free-form context for planning (repository, files …)."
    )

    @property
    def key(self) -> str:
        return self.request_id
