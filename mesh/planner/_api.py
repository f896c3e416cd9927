"""The Task Planner's API: plan_task, validate_plan, optimize_plan, estimate_resources.

A :class:`Planner` holds the template library, the learned state (estimator + bandit, rebuilt
from events) and a plan cache. Planning a request is: analyse it, decompose it (the bandit picks
among methods), validate the tasks, fit them to resource limits, optimise the order, then look
for a better set of method choices — a cheaper one that is no longer, a faster one if the
deadline demands, a cheaper one if the budget demands — and reject with the numbers when none
fits. Everything here is pure (no Kafka, no clock unless ``now`` is left out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from mesh.errors import PlanningError
from mesh.events import (
    Event,
    ExecutionPlan,
    PlanCreated,
    PlanRejected,
    Producer,
    TaskRequest,
    TaskSpec,
    meta,
)
from mesh.planner import _format
from mesh.planner._assess import Assessor, Candidate
from mesh.planner._cache import PlanCache, request_key
from mesh.planner._graph import AgentKinds, ValidationResult, validate_tasks
from mesh.planner._htn import DEFAULT_MAX_DEPTH, ChoicePoint, Decomposer, Decomposition
from mesh.planner._learning import Learning
from mesh.planner._loader import load_library
from mesh.planner._optimize import replace_plan
from mesh.planner._request import RequestSpec, analyse, workflow_id_for
from mesh.planner._resources import ResourceEstimate
from mesh.planner._search import Search, check_deadline
from mesh.planner._templates import Primitive, TemplateLibrary
from mesh.settings import Settings


@dataclass(frozen=True)
class PlannerConfig:
    """How the planner plans; every field has a sensible default."""

    max_depth: int = DEFAULT_MAX_DEPTH
    cache_size: int = 256
    capability_map: Mapping[str, str] = field(default_factory=dict)
    """Template capability → capability of the agents at hand (``*`` maps all others)."""
    agent_kinds: AgentKinds | None = None
    """When given, tasks needing a capability none of these offer are rejected."""
    samples: int = 256
    """Monte Carlo draws for the makespan band (0: none)."""
    search_limit: int = 16
    """Most choice points the optimiser revisits (each try re-plans the request)."""
    task_commands: bool = True
    """Give tasks their template's ``command``. Off for pools of LLM agents that run their own
    argv with ``{prompt}`` and refuse task commands; on for command agents (``mesh dev``)."""
    cost_tolerance: float = 0.1
    """A cheaper method of no greater makespan is taken unless the bandit's draw makes it more
    than this much less likely to succeed (cost breaks ties within the bandit's uncertainty)."""


@dataclass(frozen=True)
class PlanReport:
    """A plan and everything the planner knows about it (what ``mesh plan`` shows)."""

    request_id: str
    plan: ExecutionPlan
    estimate: ResourceEstimate
    stages: tuple[tuple[str, ...], ...]
    slack: Mapping[str, float]
    choices: tuple[tuple[ChoicePoint, str], ...] = ()
    warnings: tuple[str, ...] = ()
    template_version: str = ""
    unoptimized_makespan: float = 0.0
    cached: bool = False


class Planner:
    """Templates, learned estimates, a method bandit and a plan cache behind the seed's API."""

    def __init__(
        self,
        templates: TemplateLibrary | None = None,
        *,
        learning: Learning | None = None,
        config: PlannerConfig | None = None,
    ) -> None:
        self.templates = templates if templates is not None else load_library()
        self.learning = learning or Learning()
        self.config = config or PlannerConfig()
        self.cache: PlanCache[PlanReport] = PlanCache(self.config.cache_size)
        self._primitive_estimates: dict[str, tuple[float, float]] = {}
        self._estimates_at = -1
        self.assessor = Assessor(
            self.templates,
            self.learning,
            agent_kinds=self.config.agent_kinds,
            samples=self.config.samples,
        )
        self.decomposer = Decomposer(
            self.templates,
            estimate=self._estimate_primitive,
            capability_map=self.config.capability_map,
            max_depth=self.config.max_depth,
            task_commands=self.config.task_commands,
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, learning: Learning | None = None) -> Planner:
        """Built-in templates plus ``settings.planner_templates``, and the capability map."""
        templates = load_library(settings.planner_templates)
        config = PlannerConfig(capability_map=dict(settings.planner_capability_map))
        return cls(templates, learning=learning, config=config)

    def observe(self, event: Event) -> bool:
        """Fold a history event into the learned state (False if it taught nothing new)."""
        return self.learning.apply(event)

    # -- the seed's API -------------------------------------------------------------------

    def plan_task(self, request: TaskRequest, *, now: datetime | None = None) -> ExecutionPlan:
        """The validated, optimised plan for ``request``; PlanningError says why there is none."""
        return self.report(request, now=now).plan

    def validate_plan(self, plan: ExecutionPlan) -> ValidationResult:
        """Structural problems of ``plan`` (and unmet capabilities, if agent kinds are known)."""
        return validate_tasks(
            plan.tasks, workflow_type=plan.workflow_type, agent_kinds=self.config.agent_kinds
        )

    def optimize_plan(self, plan: ExecutionPlan) -> ExecutionPlan:
        """The same work reordered and with redundant edges dropped; never a longer makespan."""
        self.validate_plan(plan).raise_for_problems()
        return self.assessor.assess(plan, None, optimize=True).plan

    def estimate_resources(self, plan: ExecutionPlan) -> ResourceEstimate:
        """Peaks, resource-seconds, cost and makespan band of ``plan`` as it stands."""
        self.validate_plan(plan).raise_for_problems()
        return self.assessor.assess(plan, None, optimize=False).estimate

    # -- planning ---------------------------------------------------------------------------

    def decide(
        self, request: TaskRequest, producer: Producer, *, now: datetime | None = None
    ) -> PlanCreated | PlanRejected:
        """The event to publish for ``request``: a plan, or a rejection with its reason."""
        workflow_id = workflow_id_for(request.request_id)
        try:
            report = self.report(request, now=now)
        except PlanningError as exc:
            return rejection(request, producer, exc)
        return PlanCreated(
            **meta(producer, causation=request),
            workflow_id=workflow_id,
            request_id=request.request_id,
            plan=report.plan,
        )

    def report(self, request: TaskRequest, *, now: datetime | None = None) -> PlanReport:
        """Plan ``request`` and say everything about the result (stages, slack, estimates)."""
        spec = analyse(request, now)
        version = self.templates.version(spec.task_type) if spec.task_type in self.templates else ""
        key = request_key(request, version, self.learning.version)
        hit = self.cache.get(key)
        if hit is not None:
            try:
                check_deadline(spec, hit.plan, hit.estimate)
                plan = replace_plan(hit.plan, plan_id=spec.workflow_id)
                return replace(hit, request_id=request.request_id, plan=plan, cached=True)
            except PlanningError:
                pass  # the cached plan misses this request's deadline: plan it afresh
        search = self._search(spec)
        report = self._finish(spec, search.run())
        if not search.hurried:  # a deadline-driven choice is not what the next request needs
            self.cache.put(key, report)
        return report

    def plan_tasks(
        self, request: TaskRequest, tasks: Sequence[TaskSpec], *, now: datetime | None = None
    ) -> PlanReport:
        """Validate, optimise and check tasks decomposed elsewhere (e.g. by a planner agent)."""
        spec = analyse(request, now)
        decomposition = Decomposition(spec.task_type, "external", tuple(tasks), {})
        search = self._search(spec)
        best = search.meet_budget(search.meet_deadline(self.assessor.evaluate(spec, decomposition)))
        return self._finish(spec, best)

    # -- steps ------------------------------------------------------------------------------

    def _search(self, spec: RequestSpec) -> Search:
        return Search(
            spec,
            self.decomposer,
            self.assessor,
            self.learning.bandit,
            search_limit=self.config.search_limit,
            cost_tolerance=self.config.cost_tolerance,
        )

    def _estimate_primitive(self, primitive: Primitive) -> tuple[float, float]:
        if self._estimates_at != self.learning.version:
            self._primitive_estimates.clear()
            self._estimates_at = self.learning.version
        found = self._primitive_estimates.get(primitive.name)
        if found is None:
            est = self.learning.estimator.estimate(
                primitive.name, primitive.duration, primitive.cost
            )
            found = self._primitive_estimates[primitive.name] = (est.mean_seconds, est.mean_cost)
        return found

    def _finish(self, spec: RequestSpec, best: Candidate) -> PlanReport:
        warnings = list(best.warnings)
        deadline = spec.limits.deadline
        if deadline is not None:
            remaining = (deadline - spec.now).total_seconds()
            p90 = best.estimate.makespan_p90_seconds
            if p90 > remaining:
                warnings.append(
                    f"deadline at risk: p90 makespan {_format.seconds(p90)} > "
                    f"{_format.seconds(remaining)} until the deadline"
                )
        offered = {c.name for t in best.plan.tasks for c in t.capabilities}
        mapping = self.config.capability_map
        for capability in spec.capabilities:
            if mapping.get(capability, mapping.get("*", capability)) not in offered:
                warnings.append(f"requirement capability {capability!r} is used by no task")
        warnings.extend(
            f"constraint {name!r} is not used by the planner" for name in spec.other_constraints
        )
        return PlanReport(
            request_id=spec.request.request_id,
            plan=best.plan,
            estimate=best.estimate,
            stages=best.stages,
            slack=best.slack,
            choices=best.decomposition.choices,
            warnings=tuple(warnings),
            template_version=best.decomposition.version,
            unoptimized_makespan=best.before,
        )


def rejection(request: TaskRequest, producer: Producer, error: PlanningError) -> PlanRejected:
    """The PlanRejected for ``request`` (reason and problems clipped to the event's bounds)."""
    return PlanRejected(
        **meta(producer, causation=request),
        workflow_id=workflow_id_for(request.request_id),
        request_id=request.request_id,
        reason=_format.clip(error.reason),
        problems=[_format.clip(p) for p in error.problems[:100]],
    )


_default: Planner | None = None


def default_planner() -> Planner:
    """A process-wide planner with the built-in templates and nothing learned yet."""
    global _default
    if _default is None:
        _default = Planner()
    return _default


def plan_task(request: TaskRequest, *, now: datetime | None = None) -> ExecutionPlan:
    """The seed's ``planTask`` on the default planner (see :meth:`Planner.plan_task`)."""
    return default_planner().plan_task(request, now=now)


def validate_plan(plan: ExecutionPlan) -> ValidationResult:
    """The seed's ``validatePlan`` on the default planner."""
    return default_planner().validate_plan(plan)


def optimize_plan(plan: ExecutionPlan) -> ExecutionPlan:
    """The seed's ``optimizePlan`` on the default planner."""
    return default_planner().optimize_plan(plan)


def estimate_resources(plan: ExecutionPlan) -> ResourceEstimate:
    """The seed's ``estimateResources`` on the default planner."""
    return default_planner().estimate_resources(plan)
