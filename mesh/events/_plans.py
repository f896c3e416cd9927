"""The Task Planner's output (the seed's ``ExecutionPlan``), on ``plans``."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from mesh.events._envelope import Frozen, WorkflowEvent
from mesh.events._payloads import PayloadRef
from mesh.events._types import Id, JsonObject, Name, Seq, ShortText, Text
from mesh.events._values import CapabilityRequirement, Priority, Resources, RetryPolicy

WorkflowType = Literal["sequential", "parallel", "dag", "event_driven"]
"""How the Workflow Manager orders a plan's tasks."""

FailurePolicy = Literal["fail_fast", "continue"]
"""On a task's final failure: fail the workflow at once, or skip its dependants and go on."""


class TaskSpec(Frozen):
    """One task of a plan: what to run, on what kind of agent, with which limits."""

    task_id: Id = Field(description="Id of the task, unique within its plan.")
    name: ShortText = Field(min_length=1, description="Short human name of the task.")
    capabilities: Seq[CapabilityRequirement] = Field(
        default=(), max_length=20, description="What the agent must be able to do; empty = any."
    )
    command: Seq[str] | None = Field(
        default=None, max_length=500, description="argv for a command agent (no shell)."
    )
    prompt: Text | None = Field(default=None, description="Prompt for an LLM coding agent.")
    inputs: JsonObject = Field(default_factory=dict, description="Arguments for the agent.")
    depends_on: Seq[Id] = Field(
        default=(), max_length=1_000, description="Ids of tasks that must complete first."
    )
    trigger: Name | None = Field(
        default=None,
        description="For event-driven workflows: name of the external event that makes the task "
        "ready (see `workflow.external_event`).",
    )
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Retry policy.")
    timeout_seconds: float | None = Field(
        default=None, gt=0, description="Limit of one attempt; none = no limit."
    )
    resources: Resources = Field(default_factory=Resources, description="What one attempt needs.")
    estimated_duration_seconds: float | None = Field(
        default=None, ge=0, description="Planner's estimate of one attempt's duration."
    )
    estimated_cost: float | None = Field(
        default=None, ge=0, description="Planner's estimate of one attempt's cost."
    )


class ExecutionPlan(Frozen):
    """Tasks with their dependencies, how to run them, and the planner's estimates."""

    plan_id: Id = Field(description="Id of the plan.")
    workflow_type: WorkflowType = Field(description="How the tasks are ordered.")
    failure_policy: FailurePolicy = Field(
        default="fail_fast", description="What a task's final failure does to the workflow."
    )
    tasks: Seq[TaskSpec] = Field(
        min_length=1,
        max_length=100_000,
        description="The tasks (a plan too large for one event goes by reference: `plan_ref`).",
    )
    priority: Priority = Field(default="normal", description="Priority inherited by every task.")
    tenant: Name = Field(default="default", description="Quota the plan's resources count against.")
    max_parallelism: int | None = Field(
        default=None, ge=1, description="Most tasks running at once; none = no limit."
    )
    estimated_duration_seconds: float | None = Field(
        default=None, ge=0, description="Estimated wall-clock duration (critical path)."
    )
    estimated_cost: float | None = Field(default=None, ge=0, description="Estimated total cost.")

    @model_validator(mode="after")
    def _references_resolve(self) -> ExecutionPlan:
        # Cheap structural checks that keep the event self-consistent on the wire; cycles and
        # missing capabilities are the planner's validate_plan job.
        ids = [task.task_id for task in self.tasks]
        seen: set[str] = set()
        for task_id in ids:
            if task_id in seen:
                raise ValueError(f"task id {task_id!r} appears more than once")
            seen.add(task_id)
        for task in self.tasks:
            for dep in task.depends_on:
                if dep == task.task_id:
                    raise ValueError(f"task {task.task_id!r} depends on itself")
                if dep not in seen:
                    raise ValueError(f"task {task.task_id!r} depends on unknown task {dep!r}")
        return self

    def task(self, task_id: str) -> TaskSpec:
        """The task with this id (KeyError if the plan has none)."""
        for task in self.tasks:
            if task.task_id == task_id:
                return task
        raise KeyError(task_id)


class WithPlan(WorkflowEvent):
    """An event that carries a plan inline, or a reference to it when it is too large (the
    reader fetches it from `payloads` before using it)."""

    plan: ExecutionPlan | None = Field(
        default=None, description="The plan; none when it goes by reference (`plan_ref`)."
    )
    plan_ref: PayloadRef | None = Field(
        default=None,
        description="Where the plan's JSON is on `payloads` when it is too large for one event.",
    )

    @model_validator(mode="after")
    def _plan_or_reference(self) -> Self:
        if self.plan is None and self.plan_ref is None:
            raise ValueError(f"a {self.type} needs `plan` or `plan_ref`")
        return self

    def wire_form(self) -> Self:
        """The event as it is written: without the plan when it has a reference to it."""
        if self.plan_ref is None or self.plan is None:
            return self
        return self.model_copy(update={"plan": None})


class PlanCreated(WithPlan):
    """The planner turned a request into a plan; the Workflow Manager starts a workflow from it."""

    type: Literal["plan.created"] = "plan.created"
    schema_version: Literal[1] = 1

    request_id: Id = Field(description="The request the plan answers.")


class PlanRejected(WorkflowEvent):
    """The planner could not make a valid plan for a request."""

    type: Literal["plan.rejected"] = "plan.rejected"
    schema_version: Literal[1] = 1

    request_id: Id = Field(description="The request that could not be planned.")
    reason: ShortText = Field(min_length=1, description="Why, in one line.")
    problems: Seq[ShortText] = Field(
        default=(), max_length=100, description="Each validation problem found, one per item."
    )
