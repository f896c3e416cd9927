"""The Python-agent SDK: decorated functions, dispatch by capability, outcomes of exceptions."""

from __future__ import annotations

import asyncio
import threading
import types
from typing import Any

import pytest

from mesh.agents import (
    Failure,
    PythonRunner,
    Success,
    TaskContext,
    TaskError,
    agent,
    agents_in,
    load_agents,
)
from mesh.agents._sdk import failure_of, union_capabilities
from mesh.errors import BrokerUnavailable, ConfigError, InvalidEvent
from mesh.events import (
    Capability,
    CapabilityRequirement,
    Producer,
    TaskAssigned,
    TaskSpec,
    meta,
)

Progress = tuple[float | None, str, dict[str, Any]]


def assigned(
    *names: str, prompt: str | None = "hello", inputs: dict[str, Any] | None = None, **req: Any
) -> TaskAssigned:
    return TaskAssigned(
        **meta(Producer(component="test", instance="t"), correlation_id="req-1"),
        workflow_id="wf-1",
        task_id="T",
        attempt=3,
        agent_id="py-1",
        task=TaskSpec(
            task_id="T",
            name="t",
            prompt=prompt,
            inputs=inputs or {},
            capabilities=[CapabilityRequirement(name=n, **req) for n in names],
        ),
    )


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Progress] = []

    async def __call__(self, percent: float | None, message: str, details: dict[str, Any]) -> None:
        self.calls.append((percent, message, details))


def module_with(**functions: Any) -> types.ModuleType:
    module = types.ModuleType("fake_agents")
    for name, value in functions.items():
        setattr(module, name, value)
    return module


@agent(capabilities=["summarise"])
async def summarise(ctx: TaskContext) -> dict[str, Any]:
    await ctx.progress(50, "half way", step=1)
    return {
        "task_id": ctx.task_id,
        "workflow_id": ctx.workflow_id,
        "attempt": ctx.attempt,
        "prompt": ctx.prompt,
        "inputs": dict(ctx.inputs),
        "agent_id": ctx.agent_id,
    }


@agent(capabilities=["summarise", "translate"])
async def both(ctx: TaskContext) -> dict[str, Any]:
    return {"by": "both"}


@agent(capabilities=[Capability(name="review", level=7, tags=("python",))])
async def reviewer(ctx: TaskContext) -> dict[str, Any]:
    return {"by": "reviewer"}


@agent(capabilities=["sync"])
def sync_worker(ctx: TaskContext) -> dict[str, Any]:
    ctx.progress_threadsafe(10, "from a thread")
    ctx.output("printed in a thread\n")
    return {"thread": threading.current_thread().name, "main": threading.main_thread().name}


def test_decorator_leaves_the_function_callable_and_collects_it_in_order() -> None:
    module = module_with(a=summarise, b=both, c=reviewer, helper=len, d=sync_worker)
    assert [f.name for f in agents_in(module)] == ["summarise", "both", "reviewer", "sync_worker"]
    assert asyncio.iscoroutinefunction(summarise)


def test_agent_needs_capabilities() -> None:
    with pytest.raises(ValueError, match="capability"):
        agent(capabilities=[])


def test_registered_capabilities_are_the_union_once_each() -> None:
    runner = PythonRunner(agents_in(module_with(a=summarise, b=both)))
    assert [c.name for c in runner.capabilities] == ["summarise", "translate"]
    assert union_capabilities([]) == ()


async def test_first_covering_function_runs_with_the_task_context() -> None:
    progress = Recorder()
    runner = PythonRunner([summarise.__mesh_agent__, both.__mesh_agent__])  # type: ignore[attr-defined]
    outcome = await runner.run(assigned("summarise", inputs={"x": 1}), progress)
    assert outcome == Success(
        {
            "task_id": "T",
            "workflow_id": "wf-1",
            "attempt": 3,
            "prompt": "hello",
            "inputs": {"x": 1},
            "agent_id": "py-1",
        }
    )
    assert progress.calls == [(50, "half way", {"step": 1})]


async def test_a_function_must_cover_every_required_capability() -> None:
    runner = PythonRunner(agents_in(module_with(a=summarise, b=both)))
    assert await runner.run(assigned("summarise", "translate"), Recorder()) == Success(
        {"by": "both"}
    )


async def test_levels_and_tags_count_when_matching() -> None:
    runner = PythonRunner(agents_in(module_with(c=reviewer)))
    ok = await runner.run(assigned("review", min_level=5, tags=["python"]), Recorder())
    assert ok == Success({"by": "reviewer"})
    too_high = await runner.run(assigned("review", min_level=8), Recorder())
    assert isinstance(too_high, Failure)
    assert (too_high.kind, too_high.retriable) == ("no_handler", False)


async def test_no_covering_function_is_a_non_retriable_failure() -> None:
    runner = PythonRunner(agents_in(module_with(a=summarise)))
    outcome = await runner.run(assigned("paint"), Recorder())
    assert outcome == Failure(
        "no_handler", "no agent function covers the capabilities [paint]", False
    )


async def test_plain_functions_run_in_a_thread_and_can_report_progress() -> None:
    progress = Recorder()
    runner = PythonRunner(agents_in(module_with(d=sync_worker)))
    printed: list[tuple[str, str]] = []
    outcome = await runner.run(assigned("sync"), progress, lambda s, t: printed.append((s, t)))
    assert isinstance(outcome, Success)
    assert outcome.output["thread"] != outcome.output["main"]
    assert progress.calls == [(10, "from a thread", {})]
    assert printed == [("text", "printed in a thread\n")]


@pytest.mark.parametrize(
    ("returned", "output"),
    [(None, {}), ({"a": 1}, {"a": 1}), ("text", {"result": "text"}), ([1, 2], {"result": [1, 2]})],
)
async def test_return_values_become_an_output_object(returned: Any, output: Any) -> None:
    @agent(capabilities=["r"])
    async def give(ctx: TaskContext) -> Any:
        return returned

    outcome = await PythonRunner(agents_in(module_with(g=give))).run(assigned("r"), Recorder())
    assert outcome == Success(output)


@pytest.mark.parametrize(
    ("error", "kind", "retriable"),
    [
        (ValueError("bad value"), "ValueError", True),
        (KeyError("k"), "KeyError", True),
        (TaskError("nope"), "task_error", False),
        (TaskError("later", kind="rate_limited", retriable=True), "rate_limited", True),
        (InvalidEvent("broken"), "InvalidEvent", False),
        (BrokerUnavailable("down"), "BrokerUnavailable", True),
    ],
)
async def test_exceptions_become_failures(error: Exception, kind: str, retriable: bool) -> None:
    @agent(capabilities=["x"])
    async def explode(ctx: TaskContext) -> dict[str, Any]:
        raise error

    outcome = await PythonRunner(agents_in(module_with(e=explode))).run(assigned("x"), Recorder())
    assert isinstance(outcome, Failure)
    assert (outcome.kind, outcome.retriable) == (kind, retriable)
    assert outcome.message.startswith(type(error).__name__)


def test_failure_messages_are_bounded() -> None:
    failure = failure_of(RuntimeError("x" * 100_000))
    assert len(failure.message) <= 4_000


async def test_the_task_timeout_applies_to_functions() -> None:
    @agent(capabilities=["slow"])
    async def slow(ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(60)
        return {}

    runner = PythonRunner(agents_in(module_with(s=slow)), timeout=0.1)
    outcome = await runner.run(assigned("slow"), Recorder())
    assert isinstance(outcome, Failure)
    assert (outcome.kind, outcome.retriable) == ("timeout", True)


def test_load_agents_imports_the_demo_and_example_modules() -> None:
    demo = {f.name for f in load_agents("mesh.agents.demo")}
    assert {"noop", "echo", "concat"} <= demo
    example = {f.name for f in load_agents("examples.agents")}
    assert demo <= example
    assert {"word_count", "shout"} <= example


def test_load_agents_explains_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="cannot import"):
        load_agents("no_such_module_4242")
    with pytest.raises(ConfigError, match="no functions decorated"):
        load_agents("json")


async def test_demo_concat_joins_upstream_outputs_in_task_order() -> None:
    runner = PythonRunner(load_agents("mesh.agents.demo"))
    upstream = {"B": {"stdout": "from B\n"}, "A": {"text": "from A"}, "C": {"other": 1}}
    outcome = await runner.run(assigned("concat", inputs={"upstream": upstream}), Recorder())
    assert outcome == Success({"text": "from A\nfrom B\n{'other': 1}", "count": 3})
