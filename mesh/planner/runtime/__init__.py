"""The Task Planner's runtime: a FastStream app on ``requests`` (``mesh run planner``) and its
API handlers on ``calls``; the planning itself is the pure :mod:`mesh.planner`."""

from mesh.planner.runtime._app import (
    COMPONENT,
    PlannerService,
    UnknownTypeHook,
    planner_router,
    run_planner,
)

__all__ = ["COMPONENT", "PlannerService", "UnknownTypeHook", "planner_router", "run_planner"]
