"""The Task Planner: plain requests in, validated and optimised plans out.

Pure domain (no Kafka) except :func:`run_planner` and the component in ``_app``, which are
imported lazily so that ``import mesh.planner`` never pulls in a Kafka client::

    planner = Planner.from_settings(settings)           # templates + capability map
    plan = planner.plan_task(request)                    # ExecutionPlan, or PlanningError
    event = planner.decide(request, producer)            # PlanCreated | PlanRejected
    planner.observe(history_event)                       # learn durations and method success

Layers: ``_request`` (analysis) → ``_expr``/``_templates`` (library) → ``_htn`` (decomposition)
→ ``_graph`` (validation) → ``_schedule``/``_optimize``/``_resources`` (timing, order, peaks)
→ ``_estimates``/``_bandit``/``_learning`` (what history teaches) → ``_assess``/``_search``
(comparing decompositions) → ``_cache`` → ``_api``; ``_app`` (Kafka) sits on top.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

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
from mesh.planner._errors import KINDS, InvalidRequest, PlanningError, RejectionKind, TemplateError
from mesh.planner._estimates import Estimate, Estimator, fit_lognormal
from mesh.planner._graph import AgentKinds, Problem, ValidationResult, validate_tasks
from mesh.planner._htn import PLANNER_INPUT_KEY, ChoicePoint, Decomposer, Decomposition, TaskTag
from mesh.planner._learning import Learning, tag_of
from mesh.planner._loader import builtin_dir, load_library
from mesh.planner._request import (
    KNOWN_CONSTRAINTS,
    Limits,
    RequestSpec,
    analyse,
    parse_duration,
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

if TYPE_CHECKING:
    from mesh.planner._app import PlannerService, UnknownTypeHook, planner_router
    from mesh.settings import Settings


async def run_planner(
    settings: Settings,
    stop: asyncio.Event,
    *,
    planner: Planner | None = None,
    unknown_type_hook: UnknownTypeHook | None = None,
    group_id: str = "mesh-planner",
    instance: str | None = None,
) -> None:
    """Run the planner component until ``stop`` is set (``mesh run planner``).

    Consumes ``requests``, publishes PlanCreated/PlanRejected to ``plans``, learns from
    ``workflow.events`` (replayed from the start on every start), dead-letters what it cannot
    read. Logs ``planner ready`` once it has caught up with the history.
    """
    from mesh.planner._app import run_planner as run

    await run(
        settings,
        stop,
        planner=planner,
        unknown_type_hook=unknown_type_hook,
        group_id=group_id,
        instance=instance,
    )


def __getattr__(name: str) -> Any:
    # The FastStream component is reachable as mesh.planner.PlannerService without making every
    # importer of the pure API load FastStream and aiokafka.
    if name in ("PlannerService", "UnknownTypeHook", "planner_router"):
        from mesh.planner import _app

        return getattr(_app, name)
    raise AttributeError(f"module 'mesh.planner' has no attribute {name!r}")


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
    "InvalidRequest",
    "Learning",
    "Limits",
    "MethodBandit",
    "PlanCache",
    "PlanReport",
    "Planner",
    "PlannerConfig",
    "PlannerService",
    "PlanningError",
    "Problem",
    "RejectionKind",
    "RequestSpec",
    "ResourceEstimate",
    "Schedule",
    "TaskTag",
    "TemplateError",
    "TemplateLibrary",
    "UnknownTypeHook",
    "ValidationResult",
    "analyse",
    "builtin_dir",
    "default_planner",
    "estimate_resources",
    "fit_lognormal",
    "is_request_document",
    "load_library",
    "load_request_file",
    "optimize_plan",
    "parse_duration",
    "plan_task",
    "planner_router",
    "read_document",
    "rejection",
    "request_from_document",
    "request_key",
    "run_planner",
    "tag_of",
    "validate_plan",
    "validate_tasks",
    "workflow_id_for",
]
