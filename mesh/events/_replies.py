"""Replies for request/reply calls of the client API, on ``replies`` (keyed by correlation id).

A client publishes a command with a fresh ``correlation_id`` and awaits the ``Reply`` with the same
id; the key makes all replies to one call land in one partition.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, JsonValue, model_validator

from mesh.events._envelope import Event, Frozen
from mesh.events._types import Name, Text


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
