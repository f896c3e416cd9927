"""The Resource Allocator's ledger, on ``resources`` (compacted).

Keys carry a kind prefix (``pool:``, ``allocation:``, ``quota:``) because pools, allocations and
quotas share one compacted topic: without it a pool and an allocation with the same id would
overwrite each other in compaction.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mesh.events._envelope import Event
from mesh.events._plans import TaskSpec
from mesh.events._types import Id, Name, ShortText
from mesh.events._values import Priority, Resources


class PoolDeclared(Event):
    """A pool of resources exists (declared by an operator or discovered from agents)."""

    type: Literal["resource.pool_declared"] = "resource.pool_declared"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "`pool:<pool_id>`"

    pool_id: Id = Field(description="The pool.")
    capacity: Resources = Field(description="Total resources of the pool.")
    cost_per_hour: float = Field(
        default=0.0, ge=0, description="Cost of the whole pool per hour (for cost-aware placement)."
    )
    labels: dict[Name, ShortText] = Field(
        default_factory=dict, max_length=50, description="Free labels, e.g. region, GPU model."
    )

    @property
    def key(self) -> str:
        return f"pool:{self.pool_id}"


class _AllocationEvent(Event):
    key_doc: ClassVar[str] = "`allocation:<allocation_id>`"

    allocation_id: Id = Field(description="The allocation (one per task attempt or API call).")

    @property
    def key(self) -> str:
        return f"allocation:{self.allocation_id}"


class _ForTask(_AllocationEvent):
    workflow_id: Id | None = Field(default=None, description="Workflow of the attempt, if any.")
    task_id: Id | None = Field(default=None, description="Task of the attempt, if any.")
    attempt: int | None = Field(default=None, ge=1, description="Attempt number, if any.")
    tenant: Name = Field(default="default", description="Quota the allocation counts against.")


class ResourceRequested(_ForTask):
    """Someone needs resources (a ready task attempt, or a direct API call)."""

    type: Literal["resource.requested"] = "resource.requested"
    schema_version: Literal[1] = 1

    resources: Resources = Field(description="What is needed.")
    priority: Priority = Field(default="normal", description="Priority of the work.")


class ResourceAllocated(_ForTask):
    """Resources were granted from a pool; the Agent Manager may now assign the attempt."""

    type: Literal["resource.allocated"] = "resource.allocated"
    schema_version: Literal[1] = 1

    pool_id: Id = Field(description="The pool the resources come from.")
    resources: Resources = Field(description="What was granted.")
    agent_id: Id | None = Field(default=None, description="Agent chosen by placement, if any.")
    task: TaskSpec | None = Field(
        default=None,
        description="The task to place, forwarded from `task.ready` so that the Agent Manager "
        "needs no lookup.",
    )


class ResourceQueued(_ForTask):
    """The request cannot be met now; it waits for capacity."""

    type: Literal["resource.queued"] = "resource.queued"
    schema_version: Literal[1] = 1

    resources: Resources = Field(description="What is needed.")
    position: int | None = Field(default=None, ge=0, description="Place in the queue, if known.")
    reason: ShortText = Field(
        default="", description="Why it waits, e.g. `no pool has 2 GPUs free`."
    )


class ResourceDenied(_ForTask):
    """The request will never be met (over quota, larger than any pool …)."""

    type: Literal["resource.denied"] = "resource.denied"
    schema_version: Literal[1] = 1

    resources: Resources = Field(description="What was asked for.")
    reason: ShortText = Field(min_length=1, description="Why, in one line.")


class ResourceReleased(_AllocationEvent):
    """An allocation's resources went back to their pool."""

    type: Literal["resource.released"] = "resource.released"
    schema_version: Literal[1] = 1

    pool_id: Id = Field(description="The pool the resources return to.")
    resources: Resources = Field(description="What was released.")


class QuotaSet(Event):
    """A tenant's resource quota was set (replacing the previous one)."""

    type: Literal["resource.quota_set"] = "resource.quota_set"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "`quota:<tenant>`"

    tenant: Name = Field(description="Who the quota is for.")
    limits: Resources = Field(description="Most resources the tenant may hold at once.")
    max_cost_per_hour: float | None = Field(
        default=None, ge=0, description="Spending limit per hour; none = no limit."
    )

    @property
    def key(self) -> str:
        return f"quota:{self.tenant}"
