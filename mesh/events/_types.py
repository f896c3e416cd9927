"""Field types shared by every event model.

Each alias carries its constraints so that a model's fields read as intent (``Id``, ``ShortText``)
and the generated JSON Schemas repeat the same bounds for non-Python producers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

from pydantic import UUID7, AfterValidator, AwareDatetime, Field, JsonValue, Strict
from pydantic.json_schema import WithJsonSchema

T = TypeVar("T")

_UUID7_PATTERN = (
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
)


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


if TYPE_CHECKING:  # callers may pass any sequence; validation makes it the tuple it is stored as
    Seq = Annotated[Sequence[T], ...]
else:
    Seq = Annotated[tuple[T, ...], Strict(False)]
"""An immutable sequence: a list or tuple from Python, an array from JSON; stored as a tuple.

A ``tuple`` field, not ``Sequence``: pydantic validates and serialises tuples in its core,
while a ``Sequence`` goes through Python per item (a workflow's snapshot holds thousands). Not
strict, so that a list is taken from Python producers (strict tuples take only tuples); its
items keep their own strictness (event models are strict, names and ids are patterned
strings)."""

Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S+$")]
"""An identifier used as a Kafka key or a reference: 1–200 characters, no whitespace."""

Name = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:/@+-]*$")
]
"""A machine-readable name (capability, error kind, component): letters, digits and ``_.:/@+-``."""

ShortText = Annotated[str, Field(max_length=2_000)]
"""A human-readable line or paragraph (a reason, a message)."""

Text = Annotated[str, Field(max_length=200_000)]
"""Long text (a description, a prompt, an error trace); the event size limit still applies."""

UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware instant, normalised to UTC; naive datetimes are rejected."""

EventId = Annotated[
    UUID7,
    WithJsonSchema({"type": "string", "format": "uuid", "pattern": _UUID7_PATTERN}),
]
"""A UUIDv7 (time-ordered); the JSON Schema spells the version out as a pattern."""

JsonObject = dict[str, JsonValue]
"""Free-form JSON object (inputs, outputs, context)."""
