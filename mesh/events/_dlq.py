"""Dead letters, on ``dlq``: what could not be processed, where it came from, and why.

The reason is also readable without decoding: the mapper's errors are one line each, so the
component writing the dead letter can copy ``error_message`` into a header as well.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mesh.events._envelope import Event
from mesh.events._types import Name, ShortText, Text


class DeadLetter(Event):
    """A record a component gave up on, with its origin and the error."""

    type: Literal["dlq.dead_letter"] = "dlq.dead_letter"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "original key (or `<topic>/<partition>/<offset>` if it had none)"

    original_topic: str = Field(min_length=1, max_length=249, description="Topic it was read from.")
    original_partition: int = Field(ge=0, description="Partition it was read from.")
    original_offset: int = Field(ge=0, description="Offset it was read at.")
    original_key: str | None = Field(
        default=None, max_length=10_000, description="Its key as UTF-8 text, if it had one."
    )
    original_headers: dict[str, str] = Field(
        default_factory=dict, max_length=100, description="Its headers, values as UTF-8 text."
    )
    original_value_base64: str | None = Field(
        default=None,
        description="Its value, base64-encoded, when that fits under the size limit; otherwise "
        "read it from the original topic, partition and offset.",
    )
    error_class: Name = Field(description="Error class, e.g. `InvalidEvent`, `UnknownEventType`.")
    error_message: Text = Field(description="What went wrong, in one readable line.")
    component: Name = Field(description="Component that gave up, e.g. `workflow-manager`.")
    attempts: int = Field(default=1, ge=1, description="Times processing was tried.")
    note: ShortText = Field(default="", description="Anything else worth knowing.")

    @property
    def key(self) -> str:
        if self.original_key is not None:
            return self.original_key
        return f"{self.original_topic}/{self.original_partition}/{self.original_offset}"
