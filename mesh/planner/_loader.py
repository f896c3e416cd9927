"""Reading template files: YAML/JSON → the library's task definitions, with readable errors.

The file format is validated by pydantic models (unknown keys are errors, so a typo such as
``duraton`` fails instead of silently using the default); every error is one line naming the
file and the field path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh.errors import PlanTemplateError
from mesh.events import CapabilityRequirement, Resources, RetryPolicy
from mesh.planner._expr import parse_conditions
from mesh.planner._templates import (
    DEFAULT_DURATION_SECONDS,
    Compound,
    Method,
    Primitive,
    Step,
    TaskDef,
    TemplateLibrary,
)
from mesh.times import parse_duration


class _Loose(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _StepModel(_Loose):
    id: str = Field(min_length=1, pattern=r"^[^\s.]+$")
    task: str = Field(min_length=1)
    after: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict, alias="with")
    for_each: Any = None
    when: Any = None


class _MethodModel(_Loose):
    name: str = Field(min_length=1)
    description: str = ""
    when: Any = None
    steps: list[_StepModel] = Field(min_length=1)


class _CompoundModel(_Loose):
    description: str = ""
    methods: list[_MethodModel] = Field(min_length=1)


class _PrimitiveModel(_Loose):
    name: str | None = None
    description: str = ""
    capabilities: list[str | CapabilityRequirement] = Field(default_factory=list)
    inherit_capabilities: bool = False
    duration: float | str | None = None
    cost: float = Field(default=0.0, ge=0)
    resources: Resources = Field(default_factory=Resources)
    timeout: float | str | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    prompt: str | None = None
    command: list[str] | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)


class _FileModel(_Loose):
    version: int | str = 1
    description: str = ""
    tasks: dict[str, dict[str, Any]] = Field(min_length=1)


def builtin_dir() -> Path:
    """Where the built-in templates live (package data)."""
    return Path(str(resources.files("mesh.planner") / "templates"))


def load_library(dirs: Iterable[Path | str] = (), *, builtins: bool = True) -> TemplateLibrary:
    """Built-in templates, then each directory's ``*.yaml``/``*.yml``/``*.json`` in name order."""
    tasks: dict[str, TaskDef] = {}
    raw: dict[str, Any] = {}
    sources = [builtin_dir()] if builtins else []
    sources.extend(Path(d) for d in dirs)
    for directory in sources:
        if not directory.is_dir():
            raise PlanTemplateError(f"template directory {directory} does not exist")
        files = sorted(
            p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
        )
        seen_here: dict[str, str] = {}
        for path in files:
            for name, (task, data) in load_file(path).items():
                if name in seen_here:
                    raise PlanTemplateError(
                        f"{path}: task {name!r} is also defined in {seen_here[name]}"
                    )
                seen_here[name] = path.name
                tasks[name] = task
                raw[name] = data
    return TemplateLibrary(tasks, raw)


def load_file(path: Path) -> dict[str, tuple[TaskDef, Any]]:
    """The task definitions of one file; PlanTemplateError (one line) if it is malformed."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PlanTemplateError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PlanTemplateError(f"{path}:{line} not valid YAML/JSON: {problem}") from exc
    model = _validated(_FileModel, data, path, "")
    found: dict[str, tuple[TaskDef, Any]] = {}
    for name, body in model.tasks.items():
        where = f"tasks.{name}"
        if "methods" in body:
            found[name] = (_compound(name, body, path, where), body)
        else:
            found[name] = (_primitive(name, body, path, where), body)
    return found


def _validated(model: type[Any], data: Any, path: Path, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in first["loc"])
        loc = loc.replace(".[", "[")
        full = ".".join(part for part in (where, loc) if part) or "(file)"
        raise PlanTemplateError(f"{path}: {full}: {first['msg']}") from None


def _compound(name: str, body: Any, path: Path, where: str) -> Compound:
    model: _CompoundModel = _validated(_CompoundModel, body, path, where)
    methods = []
    names: set[str] = set()
    for i, m in enumerate(model.methods):
        at = f"{path}: {where}.methods[{i}]"
        if m.name in names:
            raise PlanTemplateError(f"{at}.name: method {m.name!r} appears twice")
        names.add(m.name)
        ids: set[str] = set()
        steps = []
        for j, s in enumerate(m.steps):
            if s.id in ids:
                raise PlanTemplateError(f"{at}.steps[{j}].id: step {s.id!r} appears twice")
            ids.add(s.id)
            steps.append(
                Step(
                    id=s.id,
                    task=s.task,
                    after=tuple(s.after),
                    params=s.params,
                    for_each=s.for_each,
                    when=parse_conditions(s.when, f"{at}.steps[{j}].when"),
                )
            )
        methods.append(
            Method(
                name=m.name,
                steps=tuple(steps),
                when=parse_conditions(m.when, f"{at}.when"),
                description=m.description,
            )
        )
    return Compound(name, tuple(methods), model.description, path.name)


def _primitive(name: str, body: Any, path: Path, where: str) -> Primitive:
    model: _PrimitiveModel = _validated(_PrimitiveModel, body, path, where)
    try:
        duration = (
            parse_duration(model.duration)
            if model.duration is not None
            else DEFAULT_DURATION_SECONDS
        )
        timeout = parse_duration(model.timeout) if model.timeout is not None else None
    except ValueError as exc:
        raise PlanTemplateError(f"{path}: {where}: {exc}") from None
    return Primitive(
        name=name,
        title=model.name,
        capabilities=_capabilities(model.capabilities),
        inherit_capabilities=model.inherit_capabilities,
        duration=duration,
        cost=model.cost,
        resources=model.resources,
        timeout=timeout,
        retry=model.retry,
        prompt=model.prompt,
        command=tuple(model.command) if model.command is not None else None,
        inputs=model.inputs,
        description=model.description,
        source=path.name,
    )


def _capabilities(
    items: Sequence[str | CapabilityRequirement],
) -> tuple[CapabilityRequirement, ...]:
    return tuple(CapabilityRequirement(name=c) if isinstance(c, str) else c for c in items)
