"""Reading a request file whose plan is given explicitly (``mesh submit FILE``).

The file is YAML or JSON and mirrors ``ExecutionPlan`` with a few conveniences for people writing
it by hand: ``id`` for ``task_id``, ``name`` defaulting to the id, capabilities as plain strings.
Errors name the file and the field path in one line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mesh.errors import ConfigError
from mesh.events import ExecutionPlan, validation_message

PLACEHOLDER_PLAN_ID = "plan"
"""The id of a plan whose file names no workflow; it takes the workflow's id when it starts."""


@dataclass(frozen=True)
class PlanRequest:
    """A plan to run, with the ids the file chose (or none)."""

    plan: ExecutionPlan
    workflow_id: str | None
    request_id: str | None
    description: str


def load_plan_file(path: Path | str, *, text: str | None = None) -> PlanRequest:
    """Parse and validate a plan file (``text`` instead of reading ``path``, e.g. stdin)."""
    source = str(path)
    try:
        raw = text if text is not None else Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it ({exc.strerror or exc})") from exc
    try:
        data = json.loads(raw) if source.endswith(".json") else yaml.safe_load(raw)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}:{line} is not valid YAML/JSON: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'tasks' list at the top")
    plan_data = data.get("plan", data)
    if not isinstance(plan_data, dict):
        raise ConfigError(f"{source}: 'plan' must be a mapping with a 'tasks' list")
    workflow_id = _opt_str(data.get("workflow_id"))
    try:
        plan = ExecutionPlan.model_validate(_normalise(plan_data, workflow_id))
    except ValidationError as exc:
        what = validation_message(exc, ExecutionPlan, aliases={"id": "task_id"})
        raise ConfigError(f"{source}: {what}") from exc
    return PlanRequest(
        plan=plan,
        workflow_id=workflow_id,
        request_id=_opt_str(data.get("request_id")),
        description=str(data.get("description", "")),
    )


_FILE_ONLY_KEYS = {"workflow_id", "request_id", "description", "plan"}


def _normalise(data: dict[str, Any], workflow_id: str | None) -> dict[str, Any]:
    plan = {k: v for k, v in data.items() if k not in _FILE_ONLY_KEYS}
    plan.setdefault("plan_id", workflow_id or PLACEHOLDER_PLAN_ID)
    plan.setdefault("workflow_type", "dag")
    tasks = plan.get("tasks")
    if isinstance(tasks, list):
        plan["tasks"] = [_normalise_task(task) for task in tasks]
    return plan


def _normalise_task(task: Any) -> Any:
    if not isinstance(task, dict):
        return task
    task = dict(task)
    if "id" in task and "task_id" not in task:
        task["task_id"] = task.pop("id")
    if "task_id" in task:
        task["task_id"] = str(task["task_id"])
        task.setdefault("name", task["task_id"])
    capabilities = task.get("capabilities")
    if isinstance(capabilities, list):
        task["capabilities"] = [{"name": c} if isinstance(c, str) else c for c in capabilities]
    if isinstance(task.get("command"), list):
        task["command"] = [str(part) for part in task["command"]]
    if isinstance(task.get("depends_on"), list):
        task["depends_on"] = [str(dep) for dep in task["depends_on"]]
    return task


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
