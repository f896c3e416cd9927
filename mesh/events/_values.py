"""Value objects that several flows share: resources, retry policy, capabilities, priority."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from mesh.events._envelope import Frozen
from mesh.events._types import Name, Seq

Priority = Literal["low", "normal", "high", "critical"]
"""How urgently work should run; the allocator's priority policy orders by it."""


class Resources(Frozen):
    """A resource vector (CPU, memory, network, storage, GPU); zero means "none needed"."""

    cpu: float = Field(default=0.0, ge=0, description="CPU cores (fractions allowed).")
    memory_mb: int = Field(default=0, ge=0, description="Memory in MiB.")
    network_mbps: float = Field(default=0.0, ge=0, description="Network bandwidth in Mbit/s.")
    storage_mb: int = Field(default=0, ge=0, description="Scratch storage in MiB.")
    gpu: int = Field(default=0, ge=0, description="Whole GPU units.")


class Backoff(Frozen):
    """Exponential back-off between attempts: initial * multiplier^(attempt-1), capped at max."""

    initial_seconds: float = Field(default=1.0, gt=0, description="Delay before the 2nd attempt.")
    max_seconds: float = Field(default=300.0, gt=0, description="Upper bound of any one delay.")
    multiplier: float = Field(default=2.0, ge=1, description="Growth factor per attempt.")

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> Backoff:
        if self.max_seconds < self.initial_seconds:
            raise ValueError("max_seconds must be >= initial_seconds")
        return self


class RetryPolicy(Frozen):
    """When and how often a failed task is tried again (after Temporal's `RetryPolicy`)."""

    max_attempts: int = Field(
        default=3, ge=1, le=100, description="Attempts in total, including the first; 1 = no retry."
    )
    backoff: Backoff = Field(default_factory=Backoff, description="Delay between attempts.")
    jitter: float = Field(
        default=0.1, ge=0, le=1, description="Fraction of each delay that is randomised (0–1)."
    )
    non_retryable: Seq[Name] = Field(
        default=(),
        max_length=50,
        description="Error kinds that fail the task at once, whatever attempts remain.",
    )


class Capability(Frozen):
    """Something an agent can do, optionally with a skill level and tags."""

    name: Name = Field(description="Capability name, e.g. `python`, `code-review`.")
    level: int | None = Field(
        default=None, ge=0, le=10, description="Skill level 0–10, if the agent grades itself."
    )
    tags: Seq[Name] = Field(
        default=(), max_length=20, description="Free tags, e.g. `gpu`, `eu-west`, `model:large`."
    )


class CapabilityRequirement(Frozen):
    """What a task needs from an agent: a capability, a minimum level and tags it must carry."""

    name: Name = Field(description="Required capability name.")
    min_level: int | None = Field(
        default=None, ge=0, le=10, description="Lowest acceptable level; none = any level."
    )
    tags: Seq[Name] = Field(
        default=(), max_length=20, description="Tags the agent's capability must all carry."
    )

    def met_by(self, capability: Capability) -> bool:
        """True if ``capability`` satisfies this requirement: same name, enough level, all tags.

        An agent that does not grade itself (no level) does not meet a minimum level.
        """
        if capability.name != self.name:
            return False
        if self.min_level is not None and (
            capability.level is None or capability.level < self.min_level
        ):
            return False
        return set(self.tags) <= set(capability.tags)


def covers(
    requirements: Sequence[CapabilityRequirement], capabilities: Sequence[Capability]
) -> bool:
    """True if every requirement is met by one of ``capabilities`` (no requirements: any agent).

    The Agent Manager places by it and the Python SDK picks the function by it, so an agent is
    only sent work one of its functions accepts."""
    return all(any(req.met_by(cap) for cap in capabilities) for req in requirements)
