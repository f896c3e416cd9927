"""The Task Planner: plain requests in, validated and optimised plans out.

Pure domain: no Kafka here (the FastStream component is :mod:`mesh.planner.runtime`)::

    planner = Planner.from_settings(settings)           # templates + capability map
    plan = planner.plan_task(request)                    # ExecutionPlan, or PlanningError
    event = planner.decide(request, producer)            # PlanCreated | PlanRejected
    planner.observe(history_event)                       # learn durations and method success

Layers: ``_request`` (analysis) → ``_expr``/``_templates`` (library) → ``_htn`` (decomposition)
→ ``_graph`` (validation) → ``_schedule``/``_optimize``/``_resources`` (timing, order, peaks)
→ ``_estimates``/``_bandit``/``_learning`` (what history teaches) → ``_assess``/``_search``
(comparing decompositions) → ``_cache`` → ``_api``; ``runtime`` (Kafka) sits on top.
"""

from __future__ import annotations

from mesh.errors import REJECTION_KINDS as KINDS
from mesh.errors import RejectionKind
from mesh.planner._api import (
    Planner,
    PlannerConfig,
    PlanReport,
    default_planner,
    estimate_resources,
    optimize_plan,
    plan_task,
    rejection,
    validate_plan,
)
from mesh.planner._assess import MAX_PLAN_TASKS
from mesh.planner._bandit import ArmStats, MethodBandit
from mesh.planner._cache import PlanCache, request_key
from mesh.planner._estimates import Estimate, Estimator, fit_lognormal
from mesh.planner._format import seconds as format_seconds
from mesh.planner._graph import AgentKinds, Problem, ValidationResult, validate_tasks
from mesh.planner._htn import PLANNER_INPUT_KEY, ChoicePoint, Decomposer, Decomposition, TaskTag
from mesh.planner._learning import Learning, tag_of
from mesh.planner._loader import builtin_dir, load_library
from mesh.planner._request import (
    KNOWN_CONSTRAINTS,
    Limits,
    RequestSpec,
    analyse,
    workflow_id_for,
)
from mesh.planner._requestfile import (
    is_request_document,
    load_request_file,
    read_document,
    request_from_document,
)
from mesh.planner._resources import ResourceEstimate
from mesh.planner._schedule import Schedule
from mesh.planner._templates import TemplateLibrary
from mesh.times import parse_duration

__all__ = [
    "KINDS",
    "KNOWN_CONSTRAINTS",
    "MAX_PLAN_TASKS",
    "PLANNER_INPUT_KEY",
    "AgentKinds",
    "ArmStats",
    "ChoicePoint",
    "Decomposer",
    "Decomposition",
    "Estimate",
    "Estimator",
    "Learning",
    "Limits",
    "MethodBandit",
    "PlanCache",
    "PlanReport",
    "Planner",
    "PlannerConfig",
    "Problem",
    "RejectionKind",
    "RequestSpec",
    "ResourceEstimate",
    "Schedule",
    "TaskTag",
    "TemplateLibrary",
    "ValidationResult",
    "analyse",
    "builtin_dir",
    "default_planner",
    "estimate_resources",
    "fit_lognormal",
    "format_seconds",
    "is_request_document",
    "load_library",
    "load_request_file",
    "optimize_plan",
    "parse_duration",
    "plan_task",
    "read_document",
    "rejection",
    "request_from_document",
    "request_key",
    "tag_of",
    "validate_plan",
    "validate_tasks",
    "workflow_id_for",
]
