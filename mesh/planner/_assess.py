"""Turning tasks into an assessed plan: validated, fitted to resource limits, optimised, costed.

A :class:`Candidate` is one decomposition of a request with everything needed to compare it to
another (makespan, cost, stages, slack); the search in ``_search`` compares candidates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from mesh.errors import PlanningError
from mesh.events import ExecutionPlan, TaskSpec
from mesh.planner._estimates import Floats
from mesh.planner._graph import AgentKinds, dependencies, task_graph
from mesh.planner._htn import Decomposition
from mesh.planner._learning import Learning, tag_of
from mesh.planner._optimize import Optimized, optimize_order, replace_plan
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
        graph = task_graph(tasks, agent_kinds=self.agent_kinds)
        plan = ExecutionPlan(
            plan_id=spec.workflow_id,
            workflow_type="dag",
            failure_policy=spec.limits.failure_policy,
            tasks=tasks,
            priority=spec.request.priority,
            tenant=spec.request.tenant,
            max_parallelism=spec.limits.max_parallelism,
        )
        plan, notes = self.fit_resources(spec, plan, graph)
        candidate = self.assess(plan, decomposition, optimize=True, graph=graph)
        return replace(candidate, warnings=(*candidate.warnings, *notes))

    def task_estimates(self, tasks: Sequence[TaskSpec]) -> tuple[Floats, Floats, Floats, Floats]:
        """(mean seconds, cost, log mu, log sigma) per task: learned by type, else its own."""
        types: list[str] = []
        prior_d: list[float] = []
        prior_c: list[float] = []
        primitives: dict[str, Primitive | None] = {}  # one look-up per type, not per task
        for task in tasks:
            tag = tag_of(task.inputs)
            primitive = None
            if tag is not None:
                name = tag.task_type
                if name not in primitives:
                    found = self.templates.get(name)
                    primitives[name] = found if isinstance(found, Primitive) else None
                primitive = primitives[name]
            if tag is not None and primitive is not None:
                types.append(tag.task_type)
                prior_d.append(primitive.duration)
                prior_c.append(primitive.cost)
            else:
                types.append("")  # nothing learned for it: its own estimates are the prior
                prior_d.append(task.estimated_duration_seconds or DEFAULT_DURATION_SECONDS)
                prior_c.append(task.estimated_cost or 0.0)
        mean, mu, sigma, cost, _ = self.learning.estimator.estimate_many(
            types,
            np.array(prior_d, dtype=np.float64).reshape(len(tasks)),
            np.array(prior_c, dtype=np.float64).reshape(len(tasks)),
        )
        return mean, cost, mu, sigma

    def assess(
        self,
        plan: ExecutionPlan,
        decomposition: Decomposition | None,
        *,
        optimize: bool,
        graph: Indexed | None = None,
    ) -> Candidate:
        """Estimates filled in, optionally optimised, scheduled and costed.

        ``graph``: the plan's dependency graph if the caller has it (validation builds it).
        Inside, the work is on indices and arrays; each task's model is copied at most once,
        and only if its dependencies or estimates change, and the plan is validated once."""
        mean, cost, mu, sigma = self.task_estimates(plan.tasks)
        if graph is None:
            graph = _graph_of(plan)
        if optimize:
            found = optimize_order(
                graph, mean, workflow_type=plan.workflow_type, max_parallelism=plan.max_parallelism
            )
        else:
            planned = schedule(graph, mean, max_parallelism=plan.max_parallelism)
            found = Optimized.unchanged(graph, planned)
        order = found.order
        means, costs = mean.tolist(), cost.tolist()
        ids, keep = graph.ids, found.preds
        tasks = [
            _finished(
                plan.tasks[i],
                None if keep is None else [ids[p] for p in keep[i]],
                means[i],
                costs[i],
            )
            for i in order
        ]
        index = np.asarray(order, dtype=np.intp)
        after = found.after
        estimate = estimate_from_schedule(
            tasks,
            found.graph,
            after,
            cost[index],
            mu[index],
            sigma[index],
            samples=self.samples,
        )
        final = replace_plan(
            plan,
            tasks=tasks,
            estimated_duration_seconds=estimate.makespan_seconds,
            estimated_cost=estimate.total_cost,
        )
        return Candidate(
            decomposition=decomposition or Decomposition("", "", tuple(plan.tasks), {}),
            plan=final,
            estimate=estimate,
            stages=stages_of(found.graph),
            slack=dict(zip(found.graph.ids, after.slack.tolist(), strict=True)),
            before=found.before.makespan,
        )

    def fit_resources(
        self, spec: RequestSpec, plan: ExecutionPlan, graph: Indexed | None = None
    ) -> tuple[ExecutionPlan, tuple[str, ...]]:
        """Lower ``max_parallelism`` until every resource peak is within the request's limits
        (``graph``: the plan's dag, if the caller has it)."""
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
        if graph is None:
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
        return plan.model_copy(update={"max_parallelism": low}), (note,)  # assess validates


def _graph_of(plan: ExecutionPlan) -> Indexed:
    try:
        return Indexed.of(
            [t.task_id for t in plan.tasks], dependencies(plan.tasks, plan.workflow_type)
        )
    except ValueError:
        raise PlanningError(
            "cycle", "the plan's dependencies form a cycle; validate_plan names it"
        ) from None


def _finished(task: TaskSpec, deps: list[str] | None, duration: float, cost: float) -> TaskSpec:
    """``task`` with its kept dependencies and estimates: the same object if nothing changes
    (the decomposer already rendered the same estimates), else one copy."""
    changes: dict[str, object] = {}
    if deps is not None and list(task.depends_on) != deps:
        changes["depends_on"] = tuple(deps)
    if not _same(task.estimated_duration_seconds, duration):
        changes["estimated_duration_seconds"] = duration
    if not _same(task.estimated_cost, cost):
        changes["estimated_cost"] = cost
    return task.model_copy(update=changes) if changes else task


def _same(old: float | None, new: float) -> bool:
    """Equal to the last bit (-0.0 is not 0.0 on the wire)."""
    return old is not None and old == new and math.copysign(1.0, old) == math.copysign(1.0, new)
