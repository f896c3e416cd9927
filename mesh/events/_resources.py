"""The Resource Allocator's ledger, on ``resources`` (compacted).

Keys carry a kind prefix (``pool:``, ``allocation:``, ``quota:``, ``forecast:``) because pools,
allocations, quotas and forecasts share one compacted topic: without it a pool and an allocation
with the same id would overwrite each other in compaction.

Every record is self-contained, so that the last record per key (all compaction keeps) is enough
to rebuild the ledger: a queued request repeats what was asked, an allocation names its node and
rate, a release carries what the allocation cost.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mesh.events._envelope import Event, Frozen
from mesh.events._plans import TaskSpec
from mesh.events._types import Id, Name, Seq, ShortText, UtcDatetime
from mesh.events._values import Priority, Resources

PolicyName = Literal["fair", "priority", "demand", "predictive"]
"""How contended capacity is shared: dominant resource fairness, priority order, weights from
queued demand, or fairness that also reserves capacity for forecast work."""

PlacementName = Literal["cheapest", "best_fit"]
"""Which feasible node wins: the cheapest that meets the deadline, or the tightest fit."""


class UnitCosts(Frozen):
    """Price of one unit of each resource for one hour (same units as :class:`Resources`)."""

    cpu: float = Field(default=0.0, ge=0, description="Per CPU core-hour.")
    memory_mb: float = Field(default=0.0, ge=0, description="Per MiB-hour of memory.")
    network_mbps: float = Field(default=0.0, ge=0, description="Per Mbit/s-hour of bandwidth.")
    storage_mb: float = Field(default=0.0, ge=0, description="Per MiB-hour of storage.")
    gpu: float = Field(default=0.0, ge=0, description="Per GPU-hour.")


class PoolNode(Frozen):
    """One machine (or slot) of a pool: what it offers and what it costs."""

    node_id: Id = Field(description="The node, unique within its pool.")
    capacity: Resources = Field(description="Resources the node offers.")
    cost_per_hour: float = Field(
        default=0.0,
        ge=0,
        description="Cost of the whole node per hour; an allocation pays its dominant share.",
    )
    unit_costs: UnitCosts = Field(
        default_factory=UnitCosts, description="Cost per unit-hour of each resource."
    )
    speed: float = Field(
        default=1.0,
        gt=0,
        description="Relative speed (2 = twice as fast); divides estimated durations.",
    )
    labels: dict[Name, ShortText] = Field(
        default_factory=dict, max_length=50, description="Free labels, e.g. GPU model."
    )


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
    nodes: Seq[PoolNode] = Field(
        default=(),
        max_length=2_000,
        description="The pool's nodes; none = one node holding the whole `capacity`.",
    )
    policy: PolicyName | None = Field(
        default=None, description="How contended capacity is shared; none = the allocator's."
    )
    placement: PlacementName | None = Field(
        default=None, description="Which feasible node wins; none = the allocator's default."
    )
    preempt: bool = Field(
        default=False,
        description="Under `priority`: newer higher-priority requests overtake queued ones.",
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


class _Wanted(_ForTask):
    """What a request asks for beyond the amounts: repeated while it waits, so that the last
    record per key still holds the whole request after compaction."""

    resources: Resources = Field(description="What is needed.")
    priority: Priority = Field(default="normal", description="Priority of the work.")
    deadline: UtcDatetime | None = Field(
        default=None, description="When the work must be done; placement keeps to it if it can."
    )
    estimated_duration_seconds: float | None = Field(
        default=None, ge=0, description="Expected run time (the planner's estimate), if known."
    )
    pool_id: Id | None = Field(default=None, description="Only this pool; none = any pool.")
    task: TaskSpec | None = Field(
        default=None, description="The task to place, forwarded to the allocation."
    )


class ResourceRequested(_Wanted):
    """Someone needs resources (a ready task attempt, or a direct API call)."""

    type: Literal["resource.requested"] = "resource.requested"
    schema_version: Literal[1] = 1


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
    node_id: Id | None = Field(default=None, description="The node within the pool, if any.")
    cost_per_hour: float | None = Field(
        default=None, ge=0, description="What the allocation costs per hour on that node."
    )


class ResourceQueued(_Wanted):
    """The request cannot be met now; it waits for capacity."""

    type: Literal["resource.queued"] = "resource.queued"
    schema_version: Literal[1] = 1

    position: int | None = Field(default=None, ge=0, description="Place in the queue, if known.")
    requested_at: UtcDatetime | None = Field(
        default=None,
        description="When the request was made; keeps the queue's order when it is rebuilt.",
    )
    reason: ShortText = Field(
        default="", description="Why it waits, e.g. `no pool has 2 GPUs free`."
    )
    code: Name | None = Field(
        default=None, description="Why, for machines: `capacity`, `quota` or `reserved`."
    )


class ResourceDenied(_ForTask):
    """The request will never be met (over quota, larger than any pool …)."""

    type: Literal["resource.denied"] = "resource.denied"
    schema_version: Literal[1] = 1

    resources: Resources = Field(description="What was asked for.")
    reason: ShortText = Field(min_length=1, description="Why, in one line.")
    code: Name | None = Field(
        default=None,
        description="Why, for machines: `quota`, `too_large`, `unknown_pool` or `withdrawn`.",
    )


class ResourceReleased(_AllocationEvent):
    """An allocation's resources went back to their pool."""

    type: Literal["resource.released"] = "resource.released"
    schema_version: Literal[1] = 1

    pool_id: Id = Field(description="The pool the resources return to.")
    resources: Resources = Field(description="What was released.")
    node_id: Id | None = Field(default=None, description="The node they return to, if any.")
    workflow_id: Id | None = Field(default=None, description="Workflow of the attempt, if any.")
    task_id: Id | None = Field(default=None, description="Task of the attempt, if any.")
    attempt: int | None = Field(default=None, ge=1, description="Attempt number, if any.")
    tenant: Name | None = Field(default=None, description="Quota the allocation counted against.")
    cost: float | None = Field(
        default=None, ge=0, description="What the allocation cost from grant to release."
    )
    reason: ShortText = Field(default="", description="Why, e.g. `task completed`.")


class QuotaSet(Event):
    """A tenant's resource quota was set (replacing the previous one)."""

    type: Literal["resource.quota_set"] = "resource.quota_set"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "`quota:<tenant>`"

    tenant: Name = Field(description="Who the quota is for.")
    limits: Resources = Field(
        description="Most resources the tenant may hold at once; a zero means no limit on that "
        "resource."
    )
    max_cost_per_hour: float | None = Field(
        default=None, ge=0, description="Spending limit per hour; none = no limit."
    )
    max_allocations: int | None = Field(
        default=None, ge=0, description="Most allocations held at once; none = no limit."
    )
    policy: PolicyName | None = Field(
        default=None,
        description="The tenant's own policy (e.g. `priority` orders its requests); none = the "
        "pool's.",
    )
    preempt: bool | None = Field(
        default=None, description="Under `priority`: whether newer requests overtake queued ones."
    )

    @property
    def key(self) -> str:
        return f"quota:{self.tenant}"


class ForecastItem(Frozen):
    """One task expected to ask for resources soon."""

    task_id: Id = Field(description="The task, as named in the plan.")
    resources: Resources = Field(description="What it will need.")
    expected_at: UtcDatetime = Field(description="When it is expected to become ready.")


class ResourceForecast(Event):
    """Work expected soon (from the planner's estimates); the predictive policy reserves for it.

    The latest forecast of a workflow replaces the previous one; an empty one withdraws it.
    """

    type: Literal["resource.forecast"] = "resource.forecast"
    schema_version: Literal[1] = 1
    key_doc: ClassVar[str] = "`forecast:<workflow_id>`"

    workflow_id: Id = Field(description="The workflow whose tasks are expected.")
    tenant: Name = Field(default="default", description="Quota the tasks will count against.")
    pool_id: Id | None = Field(default=None, description="Pool to reserve in; none = any.")
    items: Seq[ForecastItem] = Field(
        default=(), max_length=10_000, description="The expected tasks; empty = withdrawn."
    )

    @property
    def key(self) -> str:
        return f"forecast:{self.workflow_id}"
