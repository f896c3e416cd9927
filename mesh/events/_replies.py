"""Request/reply calls of the client API: ``ApiCall`` on ``calls``, ``Reply`` on ``replies``.

A client publishes a call (or a workflow command) with a fresh ``correlation_id`` and awaits the
``Reply`` with the same id; both are keyed by that id, so all replies to one call land in one
partition.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, JsonValue, model_validator

from mesh.events._envelope import Event, Frozen
from mesh.events._types import JsonObject, Name, Text


class ReplyError(Frozen):
    """Why a call failed, with the same `retriable` flag as the mesh's own errors."""

    kind: Name = Field(description="Error class or kind, e.g. `UnknownWorkflow`.")
    message: Text = Field(description="What went wrong, in one readable line.")
    retriable: bool = Field(default=False, description="True if the same call may succeed later.")


class Reply(Event):
    """The answer to one request/reply call: a result when `ok`, an error otherwise."""

    type: Literal["reply.sent"] = "reply.sent"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "correlation id of the call"

    ok: bool = Field(description="True if the call succeeded.")
    result: JsonValue = Field(default=None, description="The call's result (when ok).")
    error: ReplyError | None = Field(default=None, description="The failure (when not ok).")

    @model_validator(mode="after")
    def _error_iff_not_ok(self) -> Reply:
        if self.ok and self.error is not None:
            raise ValueError("a successful reply carries no error")
        if not self.ok and self.error is None:
            raise ValueError("a failed reply must carry an error")
        return self

    @property
    def key(self) -> str:
        return self.correlation_id


ApiComponent = Literal["task-planner", "workflow-manager", "agent-manager", "resource-allocator"]
"""The components that answer calls of the client API."""


class ApiCall(Event):
    """One call of a component's API (``plan_task``, ``get_agent_health`` …), answered by a
    ``Reply`` with the same correlation id. Every replica of ``component`` reads ``calls`` in
    one consumer group, so exactly one of them answers."""

    type: Literal["api.called"] = "api.called"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "correlation id of the call"

    component: ApiComponent = Field(description="Which component answers.")
    method: Name = Field(description="The API method, e.g. `plan_task`.")
    args: JsonObject = Field(default_factory=dict, description="Its arguments, by name.")
    timeout_ms: int = Field(
        default=30_000,
        ge=1,
        le=3_600_000,
        description="How long the caller waits; a call found older than this is not answered.",
    )

    @property
    def key(self) -> str:
        return self.correlation_id
