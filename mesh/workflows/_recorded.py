"""A history event with where it was recorded: what readers of ``workflow.events`` hand on."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.events import WorkflowEvent


@dataclass(frozen=True)
class Recorded:
    """A history event and where it was recorded (None when it came from elsewhere)."""

    event: WorkflowEvent
    offset: int | None = None
    timestamp_ms: int | None = None
    """The Kafka record's timestamp (what ``--until TIME`` compares)."""
    raw: bytes | None = None
    """The value as recorded (an export keeps it, with its own schema version)."""


__all__ = ["Recorded"]
