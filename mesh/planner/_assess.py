"""Turning tasks into an assessed plan: validated, fitted to resource limits, optimised, costed.

A :class:`Candidate` is one decomposition of a request with everything needed to compare it to
another (makespan, cost, stages, slack); the search in ``_search`` compares candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from mesh.errors import PlanningError
from mesh.events import ExecutionPlan, TaskSpec
from mesh.planner._estimates import Floats
from mesh.planner._graph import AgentKinds, dependencies, validate_tasks
from mesh.planner._htn import Decomposition
from mesh.planner._learning import Learning, tag_of
from mesh.planner._optimize import optimize_tasks, replace_plan
from mesh.planner._request import RequestSpec
from mesh.planner._resources import (
    RESOURCE_FIELDS,
    ResourceEstimate,
    estimate_from_schedule,
    peaks,
    resource_matrix,
)
from mesh.planner._schedule import Indexed, schedule, stages_of
from mesh.planner._templates import DEFAULT_DURATION_SECONDS, Primitive, TemplateLibrary

MAX_PLAN_TASKS = 10_000
"""``ExecutionPlan.tasks`` holds at most this many tasks."""

EPS = 1e-9


@dataclass(frozen=True)
class Candidate:
    """One way to do a request, assessed."""

    decomposition: Decomposition
    plan: ExecutionPlan
    estimate: ResourceEstimate
    stages: tuple[tuple[str, ...], ...]
    slack: Mapping[str, float]
    before: float
    """Makespan of the unoptimised order (what the optimisation bought)."""
    warnings: tuple[str, ...] = ()

    @property
    def makespan(self) -> float:
        return self.estimate.makespan_seconds

    @property
    def cost(self) -> float:
        return self.estimate.total_cost


class Assessor:
    """Estimates, schedules and checks plans with the learned state at hand."""

    def __init__(
        self,
        templates: TemplateLibrary,
        learning: Learning,
        *,
        agent_kinds: AgentKinds | None = None,
        samples: int = 256,
    ) -> None:
        self.templates = templates
        self.learning = learning
        self.agent_kinds = agent_kinds
        self.samples = samples

    def evaluate(self, spec: RequestSpec, decomposition: Decomposition) -> Candidate:
        """The request's plan from these tasks; PlanningError if they cannot make one."""
        tasks = decomposition.tasks
        if len(tasks) > MAX_PLAN_TASKS:
            raise PlanningError(
                "too_large",
                f"the plan has {len(tasks):,} tasks; a plan holds at most {MAX_PLAN_TASKS:,} "
                "(split the request)",
            )
        validate_tasks(tasks, agent_kinds=self.agent_kinds).raise_for_problems()
        plan = ExecutionPlan(
            plan_id=spec.workflow_id,
            workflow_type="dag",
            failure_policy=spec.limits.failure_policy,
            tasks=tasks,
            priority=spec.request.priority,
            tenant=spec.request.tenant,
            max_parallelism=spec.limits.max_parallelism,
        )
        plan, notes = self.fit_resources(spec, plan)
        candidate = self.assess(plan, decomposition, optimize=True)
        return replace(candidate, warnings=(*candidate.warnings, *notes))

    def task_estimates(self, tasks: Sequence[TaskSpec]) -> tuple[Floats, Floats, Floats, Floats]:
        """(mean seconds, cost, log mu, log sigma) per task: learned by type, else its own."""
        types: list[str] = []
        prior_d = np.empty(len(tasks))
        prior_c = np.empty(len(tasks))
        for i, task in enumerate(tasks):
            tag = tag_of(task.inputs)
            primitive = self.templates.get(tag.task_type) if tag else None
            if tag is not None and isinstance(primitive, Primitive):
                types.append(tag.task_type)
                prior_d[i], prior_c[i] = primitive.duration, primitive.cost
            else:
                types.append("")  # nothing learned for it: its own estimates are the prior
                prior_d[i] = task.estimated_duration_seconds or DEFAULT_DURATION_SECONDS
                prior_c[i] = task.estimated_cost or 0.0
        mean, mu, sigma, cost, _ = self.learning.estimator.estimate_many(types, prior_d, prior_c)
        return mean, cost, mu, sigma

    def assess(
        self, plan: ExecutionPlan, decomposition: Decomposition | None, *, optimize: bool
    ) -> Candidate:
        """Estimates filled in, optionally optimised, scheduled and costed."""
        mean, cost, mu, sigma = self.task_estimates(plan.tasks)
        by_id = {t.task_id: i for i, t in enumerate(plan.tasks)}
        if optimize:
            result, before, after = optimize_tasks(plan, mean)
        else:
            ids = [t.task_id for t in plan.tasks]
            graph = Indexed.of(ids, dependencies(plan.tasks, plan.workflow_type))
            result, before = plan, schedule(graph, mean, max_parallelism=plan.max_parallelism)
            after = before
        order = [by_id[t.task_id] for t in result.tasks]
        tasks = [
            t.model_copy(
                update={
                    "estimated_duration_seconds": float(mean[i]),
                    "estimated_cost": float(cost[i]),
                }
            )
            for t, i in zip(result.tasks, order, strict=True)
        ]
        graph = Indexed.of([t.task_id for t in tasks], dependencies(tasks, plan.workflow_type))
        estimate = estimate_from_schedule(
            tasks, graph, after, cost[order], mu[order], sigma[order], samples=self.samples
        )
        final = replace_plan(
            result,
            tasks=tasks,
            estimated_duration_seconds=estimate.makespan_seconds,
            estimated_cost=estimate.total_cost,
        )
        return Candidate(
            decomposition=decomposition or Decomposition("", "", tuple(plan.tasks), {}),
            plan=final,
            estimate=estimate,
            stages=stages_of(graph),
            slack={t: float(s) for t, s in zip(graph.ids, after.slack, strict=True)},
            before=before.makespan,
        )

    def fit_resources(
        self, spec: RequestSpec, plan: ExecutionPlan
    ) -> tuple[ExecutionPlan, tuple[str, ...]]:
        """Lower ``max_parallelism`` until every resource peak is within the request's limits."""
        limits = spec.limits.resources
        if not limits:
            return plan, ()
        usage = resource_matrix(plan.tasks)
        columns = {name: RESOURCE_FIELDS.index(name) for name in limits}
        for name, col in columns.items():
            worst = int(np.argmax(usage[:, col]))
            if usage[worst, col] > limits[name] + EPS:
                raise PlanningError(
                    "resources",
                    f"task {plan.tasks[worst].task_id!r} alone needs {usage[worst, col]:g} "
                    f"{name}, over the request's max_{name} of {limits[name]:g}",
                )
        mean, _, _, _ = self.task_estimates(plan.tasks)
        graph = Indexed.of([t.task_id for t in plan.tasks], dependencies(plan.tasks, "dag"))

        def fits(slots: int | None) -> bool:
            planned = schedule(graph, mean, max_parallelism=slots)
            peak = peaks(planned.start, planned.finish, usage)
            return all(peak[col] <= limits[name] + EPS for name, col in columns.items())

        if fits(plan.max_parallelism):
            return plan, ()
        low, high = 1, (plan.max_parallelism or len(plan.tasks)) - 1
        while low < high:  # the largest cap that fits (one task at a time always does)
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(middle) else (low, middle - 1)
        note = f"max_parallelism set to {low} so that peaks stay within " + ", ".join(
            f"max_{name} {limits[name]:g}" for name in limits
        )
        return replace_plan(plan, max_parallelism=low), (note,)
