"""Agent templates: named recipes for ``mesh agent run`` that ``spawn_agent`` starts by name.

A template fixes an agent's kind, capabilities and command; a spawn request may override any
field (``config``). Templates come from YAML files (``agents/templates.yaml`` in the working
directory by default, or ``mesh run agents --templates PATH``)::

    templates:
      llm-coder:                      # a core development agent: an LLM coding CLI
        kind: command
        role: core
        capabilities: ["code#python", review]
        argv: [claude, -p, "{prompt}"]  # any CLI; {prompt} is one argv element, no shell
        timeout: 1800

In a command agent's argv, ``{prompt}`` is the task's prompt followed by each upstream task's
output under a heading (``mesh.agents`` renders it), so an LLM CLI sees the work it builds on;
``{inputs.<task>.stdout}``, ``{inputs.<task>.json.<path>}`` and ``{context.<key>}`` place one
value, and ``$MESH_INPUTS_FILE`` holds all of them.

The base kinds ``command``, ``python`` and ``http`` are always there, empty: the request's
``config`` then says everything. Turning a template into argv is pure and checked here, so a bad
request is refused with a reason before any process starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mesh.agents import check_template
from mesh.errors import ArgvTemplateError, ConfigError, TemplateRefused
from mesh.events import Capability

Role = Literal["core", "specialised", "utility", "hybrid"]
"""What the product calls the agent: core development, specialised (capability-tagged),
utility, or hybrid (several capabilities)."""

DEFAULT_TEMPLATES = Path("agents") / "templates.yaml"
"""Read when no ``--templates`` is given, if it exists (like ``resources/pools.yaml``)."""

Kind = Literal["command", "python", "http"]

BASE_KINDS: tuple[Kind, ...] = ("command", "python", "http")

_Name = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
]


def parse_capability(text: str) -> Capability:
    """``NAME``, ``NAME=LEVEL`` or ``NAME=LEVEL#TAG#TAG``, as ``mesh agent run --capability``."""
    head, *tags = text.split("#")
    name, _, level = head.partition("=")
    try:
        return Capability(
            name=name.strip(),
            level=int(level) if level.strip() else None,
            tags=tuple(tag.strip() for tag in tags),
        )
    except (ValueError, ValidationError) as exc:
        raise ValueError(
            f"bad capability {text!r}: use NAME, NAME=LEVEL (0-10) or NAME=LEVEL#TAG#TAG"
        ) from exc


class AgentTemplate(BaseModel):
    """How to start one kind of agent; every field maps onto a ``mesh agent run`` flag."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: _Name
    kind: Kind
    role: Role = "utility"
    description: str = ""
    capabilities: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    allow_task_command: bool = False
    module: str | None = None
    max_concurrency: int = Field(default=1, ge=1, le=1_000)
    heartbeat_interval: float = Field(default=5.0, gt=0)
    grace_period: float = Field(default=10.0, ge=0)
    timeout: float | None = Field(default=None, gt=0)
    workdir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    breaker_fail_max: int | None = Field(default=None, ge=1)
    breaker_reset_timeout: float | None = Field(default=None, gt=0)

    @field_validator("capabilities")
    @classmethod
    def _capabilities_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            parse_capability(text)
        return value

    @field_validator("argv")
    @classmethod
    def _argv_renders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for element in value:
            try:
                check_template(element)
            except ArgvTemplateError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _complete(self) -> AgentTemplate:
        if self.kind != "http" and (self.url or self.headers):
            raise ValueError("url and headers are for http agents")
        if self.kind == "http":
            if not self.url:
                raise ValueError("an http agent needs url (e.g. http://127.0.0.1:8000/run)")
            if not self.capabilities:
                raise ValueError("an http agent needs at least one capability")
            extra = [f for f in ("argv", "env", "workdir", "module") if getattr(self, f)]
            if self.allow_task_command:
                extra.append("allow_task_command")
            if extra:
                raise ValueError(f"{', '.join(extra)} are not for http agents")
        elif self.kind == "python":
            if not self.module:
                raise ValueError("a python agent needs module (e.g. mesh.agents.demo)")
            extra = [f for f in ("capabilities", "argv", "env", "workdir") if getattr(self, f)]
            if self.allow_task_command:
                extra.append("allow_task_command")
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} are for command agents (a python agent's capabilities "
                    "come from its @agent functions)"
                )
        else:
            if self.module:
                raise ValueError("module is for python agents")
            if not self.capabilities:
                raise ValueError("a command agent needs at least one capability")
            if not self.argv and not self.allow_task_command:
                raise ValueError("a command agent needs argv, or allow_task_command: true")
        return self

    def with_config(self, config: Mapping[str, Any]) -> AgentTemplate:
        """This template with a spawn request's overrides, validated as a whole."""
        if "name" in config or "kind" in config:
            raise TemplateRefused("config may not change a template's name or kind")
        return _validated({**self.model_dump(), **config}, f"template {self.name!r}")

    def run_args(self, agent_id: str) -> list[str]:
        """``mesh agent run`` arguments for instance ``agent_id`` (``--opt=value``, so an argv
        element that starts with ``-`` stays a value)."""
        args = ["agent", "run", f"--kind={self.kind}", f"--id={agent_id}"]
        args += [f"--max-concurrency={self.max_concurrency}"]
        args += [f"--heartbeat-interval={self.heartbeat_interval:g}"]
        args += [f"--grace-period={self.grace_period:g}"]
        if self.timeout is not None:
            args.append(f"--timeout={self.timeout:g}")
        if self.breaker_fail_max is not None:
            args.append(f"--breaker-fail-max={self.breaker_fail_max}")
        if self.breaker_reset_timeout is not None:
            args.append(f"--breaker-reset-timeout={self.breaker_reset_timeout:g}")
        if self.kind == "python":
            return [*args, f"--module={self.module}"]
        args += [f"--capability={text}" for text in self.capabilities]
        if self.kind == "http":
            args.append(f"--url={self.url}")
            return args + [f"--header={name}: {value}" for name, value in self.headers.items()]
        args += [f"--argv={element}" for element in self.argv]
        args += [f"--env={key}={value}" for key, value in self.env.items()]
        if self.workdir:
            args.append(f"--workdir={self.workdir}")
        if self.allow_task_command:
            args.append("--allow-task-command")
        return args


class _Base:
    """A base kind: no fields of its own, the request's config says everything."""

    def __init__(self, kind: Kind) -> None:
        self.name = kind
        self.kind = kind

    def with_config(self, config: Mapping[str, Any]) -> AgentTemplate:
        if "name" in config or "kind" in config:
            raise TemplateRefused("config may not change a template's name or kind")
        return _validated({**config, "name": self.name, "kind": self.kind}, f"kind {self.kind}")


def _validated(data: Mapping[str, Any], what: str) -> AgentTemplate:
    try:
        return AgentTemplate.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise TemplateRefused(f"{what}: {where + ': ' if where else ''}{message}") from exc


class Templates:
    """Templates by name, plus the base kinds."""

    def __init__(self, templates: Iterable[AgentTemplate] = ()) -> None:
        self._templates = {t.name: t for t in templates}

    def names(self) -> list[str]:
        return sorted({*self._templates, *BASE_KINDS})

    def get(self, name: str) -> AgentTemplate | None:
        return self._templates.get(name)

    def all(self) -> list[AgentTemplate]:
        return [self._templates[name] for name in sorted(self._templates)]

    def resolve(self, name: str, config: Mapping[str, Any]) -> AgentTemplate:
        """The template ``name`` with ``config`` applied; ``TemplateRefused`` with the reason."""
        template = self._templates.get(name)
        if template is not None:
            return template.with_config(config)
        if name in BASE_KINDS:
            return _Base(next(k for k in BASE_KINDS if k == name)).with_config(config)
        known = ", ".join(self.names())
        raise TemplateRefused(f"no agent template named {name!r}; known: {known}")


def load_templates(paths: Sequence[Path] = ()) -> Templates:
    """Templates from YAML files or directories of them (later ones override earlier ones);
    none given: ``agents/templates.yaml`` if it exists."""
    if not paths:
        paths = [DEFAULT_TEMPLATES] if DEFAULT_TEMPLATES.is_file() else []
    found: dict[str, AgentTemplate] = {}
    for path in paths:
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            for template in _read(file):
                found[template.name] = template
    return Templates(found.values())


def _read(path: Path) -> list[AgentTemplate]:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read agent templates {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    entries = document.get("templates") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise ConfigError(f"{path}: expected a mapping 'templates: {{name: {{kind: ...}}}}'")
    templates = []
    for name, body in entries.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: template {name!r} must be a mapping")
        try:
            templates.append(_validated({**body, "name": name}, f"template {name!r}"))
        except TemplateRefused as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return templates


__all__ = [
    "BASE_KINDS",
    "DEFAULT_TEMPLATES",
    "AgentTemplate",
    "Kind",
    "Role",
    "Templates",
    "load_templates",
    "parse_capability",
]
