"""Circuit-breaker state changes, on ``breakers`` (compacted, keyed by breaker name).

pybreaker decides locally; publishing each change lets every replica route around an agent whose
breaker another replica opened.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mesh.events._envelope import Event
from mesh.events._types import Id, ShortText, UtcDatetime

BreakerState = Literal["closed", "open", "half_open"]
"""closed: calls flow; open: calls fail fast; half_open: one trial call decides."""


class BreakerStateChanged(Event):
    """A circuit breaker moved from one state to another."""

    type: Literal["breaker.state_changed"] = "breaker.state_changed"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "breaker name"

    name: Id = Field(description="The breaker, e.g. `agent:<agent_id>` (the Kafka key).")
    old_state: BreakerState = Field(description="State before the change.")
    new_state: BreakerState = Field(description="State after the change.")
    failure_count: int = Field(ge=0, description="Consecutive failures counted at the change.")
    opened_at: UtcDatetime | None = Field(
        default=None, description="When the breaker last opened (set while open or half-open)."
    )
    reason: ShortText = Field(default="", description="Last error seen, if it tripped.")

    @property
    def key(self) -> str:
        return self.name
