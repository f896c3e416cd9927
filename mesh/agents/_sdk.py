"""The Python-agent SDK: decorate functions, and ``mesh agent run --kind python`` serves them.

::

    from mesh.agents import TaskContext, TaskError, agent

    @agent(capabilities=["summarise"])
    async def summarise(ctx: TaskContext) -> dict[str, object]:
        await ctx.progress(50, "reading")
        ctx.output("read the prompt\n")   # streamed: `mesh logs WF TASK`
        if not ctx.prompt:
            raise TaskError("nothing to summarise", kind="empty_prompt")
        return {"summary": ctx.prompt[:100]}

``ctx.inputs`` holds the task's inputs with the upstream outputs (``ctx.upstream("design")``)
and the request's context (``ctx.context``); ``ctx.prompt`` has its ``{inputs…}`` and
``{context…}`` placeholders filled (one naming a missing input fails the attempt as
``bad_template`` before the function runs).

A task goes to the first function (in module order) whose capabilities cover the task's
requirements. Plain ``def`` functions run in a worker thread so they cannot stall the agent's
heartbeats. An exception fails the attempt with its class name as ``error_kind``; it is retriable
unless it is a ``MeshError`` that says otherwise (``TaskError(..., retriable=False)``, the default).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, TypeVar

from mesh.agents._outcome import (
    Failure,
    Outcome,
    OutputFn,
    ProgressFn,
    Success,
    time_limit,
    timed_out,
)
from mesh.agents._stream import no_output
from mesh.agents._templates import attempt_values
from mesh.errors import ArgvTemplateError, ConfigError, MeshError, TaskError
from mesh.events import Capability, CapabilityRequirement, TaskAssigned, TaskSpec, covers

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__mesh_agent__"
_MAX_MESSAGE = 4_000


class TaskContext:
    """What an agent function sees of its attempt, and how it reports progress."""

    def __init__(
        self,
        assigned: TaskAssigned,
        progress: ProgressFn,
        loop: asyncio.AbstractEventLoop | None = None,
        output: OutputFn = no_output,
    ) -> None:
        self._assigned = assigned
        self._progress = progress
        self._loop = loop
        self._output = output
        # Rendered here, so a prompt naming a missing input fails the attempt before it runs.
        self._values = attempt_values(assigned)

    @property
    def task(self) -> TaskSpec:
        """The whole task spec (name, capabilities, resources …)."""
        return self._assigned.spec

    @property
    def task_id(self) -> str:
        return self._assigned.task_id

    @property
    def workflow_id(self) -> str:
        return self._assigned.workflow_id

    @property
    def attempt(self) -> int:
        return self._assigned.attempt

    @property
    def agent_id(self) -> str:
        return self._assigned.agent_id

    @property
    def prompt(self) -> str | None:
        """The task's prompt with its ``{inputs…}`` and ``{context…}`` placeholders filled."""
        prompt: str | None = self._values["prompt"]
        return prompt

    @property
    def inputs(self) -> Mapping[str, Any]:
        """The task's inputs: the plan's, plus ``upstream`` (dependency id → its output, as the
        Workflow Manager passes them), ``event`` for a triggered task, ``context`` from the
        planner."""
        return self._assigned.spec.inputs

    @property
    def context(self) -> Mapping[str, Any]:
        """The request's context (``inputs.context``; empty when the plan has none)."""
        context: Mapping[str, Any] = self._values["context"]
        return context

    def upstream(self, task_id: str) -> Mapping[str, Any]:
        """The output of the upstream task ``task_id``; a non-retriable ``TaskError``
        (``missing_input``) naming the tasks there are when it is not one."""
        upstream = self.inputs.get("upstream")
        upstream = upstream if isinstance(upstream, Mapping) else {}
        output = upstream.get(task_id)
        if not isinstance(output, Mapping):
            names = ", ".join(sorted(upstream)) or "none"
            raise TaskError(
                f"task {self.task_id!r} has no upstream task {task_id!r} (upstream: {names})",
                kind="missing_input",
            )
        return output

    async def progress(
        self, percent: float | None = None, message: str = "", **details: Any
    ) -> None:
        """Publish a TaskProgress for this attempt (informational)."""
        await self._progress(percent, message, details)

    def output(self, text: str) -> None:
        """Stream ``text`` (``mesh logs`` shows it while the attempt runs); returns at once and
        may be called from a plain ``def`` function's thread too. Lines are published together
        every fraction of a second, up to the agent's cap per attempt."""
        self._output("text", text)

    def progress_threadsafe(
        self, percent: float | None = None, message: str = "", **details: Any
    ) -> None:
        """``progress`` for a plain ``def`` function running in its worker thread."""
        if self._loop is None:
            raise RuntimeError("no event loop to report progress to")
        future = asyncio.run_coroutine_threadsafe(
            _await(self._progress(percent, message, details)), self._loop
        )
        future.result()


@dataclass(frozen=True)
class AgentFunction:
    """A decorated function and the capabilities it serves."""

    name: str
    capabilities: tuple[Capability, ...]
    func: Callable[[TaskContext], Any]

    def handles(self, requirements: Sequence[CapabilityRequirement]) -> bool:
        return covers(requirements, self.capabilities)


def agent(*, capabilities: Sequence[str | Capability], name: str | None = None) -> Callable[[F], F]:
    """Mark ``async def f(ctx: TaskContext) -> dict`` (or a plain ``def``) as an agent function.

    ``capabilities`` are names (``"summarise"``) or ``Capability`` objects with a level and tags.
    The function itself is returned unchanged, so it stays callable in tests.
    """
    if not capabilities:
        raise ValueError("@agent needs at least one capability")
    parsed = tuple(c if isinstance(c, Capability) else Capability(name=c) for c in capabilities)

    def mark(func: F) -> F:
        setattr(func, _MARK, AgentFunction(name or func.__name__, parsed, func))
        return func

    return mark


def agents_in(module: ModuleType) -> list[AgentFunction]:
    """The agent functions defined or imported in ``module``, in definition order."""
    found: list[AgentFunction] = []
    for value in vars(module).values():
        marked = getattr(value, _MARK, None)
        if isinstance(marked, AgentFunction) and marked not in found:
            found.append(marked)
    return found


def load_agents(module_name: str) -> list[AgentFunction]:
    """Import ``module_name`` (the working directory is importable, as with ``python -m``)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import agent module {module_name!r}: {exc}") from exc
    functions = agents_in(module)
    if not functions:
        raise ConfigError(f"module {module_name!r} has no functions decorated with @agent")
    return functions


def union_capabilities(functions: Sequence[AgentFunction]) -> tuple[Capability, ...]:
    """Every capability of the functions, once each (what the agent registers)."""
    seen: list[Capability] = []
    for function in functions:
        seen.extend(cap for cap in function.capabilities if cap not in seen)
    return tuple(seen)


class PythonRunner:
    """Runs each attempt with the first function that covers the task's requirements."""

    def __init__(self, functions: Sequence[AgentFunction], *, timeout: float | None = None) -> None:
        if not functions:
            raise ConfigError("a Python agent needs at least one @agent function")
        self.functions = tuple(functions)
        self.timeout = timeout

    @property
    def capabilities(self) -> tuple[Capability, ...]:
        return union_capabilities(self.functions)

    def function_for(self, task: TaskSpec) -> AgentFunction | None:
        return next((f for f in self.functions if f.handles(task.capabilities)), None)

    async def run(
        self, assigned: TaskAssigned, progress: ProgressFn, output: OutputFn = no_output
    ) -> Outcome:
        function = self.function_for(assigned.spec)
        if function is None:
            names = ", ".join(req.name for req in assigned.spec.capabilities)
            return Failure(
                "no_handler", f"no agent function covers the capabilities [{names}]", False
            )
        limit = time_limit(assigned, self.timeout, datetime.now(UTC))
        if limit is not None and limit <= 0:
            return Failure("timeout", "the attempt's deadline passed before it started", True)
        try:
            ctx = TaskContext(assigned, progress, asyncio.get_running_loop(), output)
        except ArgvTemplateError as exc:
            return Failure(ArgvTemplateError.kind, str(exc), retriable=False)
        try:
            async with asyncio.timeout(limit):
                result = await _call(function.func, ctx)
        except TimeoutError:
            assert limit is not None
            return timed_out(limit)
        except Exception as exc:  # the function's own failure, reported, never raised
            return failure_of(exc)
        if result is None:
            return Success({})
        if isinstance(result, dict):
            return Success(result)
        return Success({"result": result})


async def _call(func: Callable[[TaskContext], Any], ctx: TaskContext) -> Any:
    if inspect.iscoroutinefunction(func):
        return await func(ctx)
    result = await asyncio.to_thread(func, ctx)
    if inspect.isawaitable(result):  # a plain def that returned a coroutine
        return await _await(result)
    return result


async def _await(value: Awaitable[Any]) -> Any:
    return await value


def failure_of(exc: BaseException) -> Failure:
    """Class name as the kind (or ``TaskError.kind``); retriable unless a MeshError says not."""
    kind = exc.kind if isinstance(exc, TaskError) else type(exc).__name__
    retriable = not isinstance(exc, MeshError) or exc.retriable
    text = str(exc) or type(exc).__name__
    message = f"{type(exc).__name__}: {text}"
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return Failure(kind, message, retriable)


__all__ = [
    "AgentFunction",
    "PythonRunner",
    "TaskContext",
    "agent",
    "agents_in",
    "failure_of",
    "load_agents",
    "union_capabilities",
]
