"""The planner's output is pinned: the same requests give the same plans, estimates and problems.

The golden file was written by the planner as it stood before the fast path (graphs built once,
no model copies inside optimisation, linear validation), so a speed-up that changes a plan — an
order, a dropped edge, an estimate, a problem's wording — fails here. Regenerate it only for a
deliberate change of output: ``python -m tests.unit.test_planner_golden``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mesh.events import (
    Capability,
    CapabilityRequirement,
    Constraint,
    ExecutionPlan,
    Producer,
    Requirement,
    Resources,
    TaskRequest,
    TaskSpec,
    meta,
)
from mesh.planner import Planner, PlannerConfig, PlanReport, validate_tasks
from mesh.planner._loader import load_library
from mesh.planner._templates import Compound, Method, Primitive, Step, TemplateLibrary

GOLDEN = Path(__file__).with_name("planner_golden.json")
ME = Producer(component="test", instance="t-1")
NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def _request(request_id: str, task_type: str, **fields: Any) -> TaskRequest:
    return TaskRequest(
        **meta(ME, correlation_id=request_id),
        request_id=request_id,
        task_type=task_type,
        description=fields.pop("description", "Add a --verbose flag to the CLI"),
        **fields,
    )


def _limits(**values: Any) -> list[Constraint]:
    return [Constraint(name=k, value=v) for k, v in values.items()]


def _dag_library(size: int, seed: int) -> TemplateLibrary:
    """The built-ins plus ``big``: ``size`` steps, each after up to 3 of the 30 before it, with
    two resource shapes so that peaks and the parallelism fit have something to do."""
    rng = random.Random(seed)  # noqa: S311 - a seeded shape, not cryptography
    base = load_library()
    implement = base.tasks["implement"]
    assert isinstance(implement, Primitive)
    kinds = {
        f"work_{n}": Primitive(
            name=f"work_{n}",
            title="step ${params.i}",
            capabilities=(CapabilityRequirement(name="shell"),),
            inherit_capabilities=False,
            duration=duration,
            cost=0.01 * (n + 1),
            resources=Resources(cpu=cpu, memory_mb=256 * (n + 1)),
            timeout=None,
            retry=implement.retry,
            prompt="Do step ${params.i} of ${request.description}",
            command=("python3", "-c", "print('step')", "{prompt}"),
            inputs={"i": "${params.i}"},
        )
        for n, (duration, cpu) in enumerate([(30.0, 1.0), (90.0, 2.0)])
    }
    steps = []
    for i in range(size):
        window = list(range(max(0, i - 30), i))
        after = sorted(rng.sample(window, min(len(window), rng.randint(0, 3))))
        kind = f"work_{rng.randint(0, 1)}"
        steps.append(
            Step(id=f"s{i}", task=kind, after=tuple(f"s{j}" for j in after), params={"i": i})
        )
    big = Compound("big", (Method("only", tuple(steps)),))
    return TemplateLibrary({**base.tasks, **kinds, "big": big}, {"big": size})


def _task(task_id: str, *deps: str, caps: tuple[str, ...] = ()) -> TaskSpec:
    return TaskSpec(
        task_id=task_id,
        name=task_id,
        depends_on=deps,
        capabilities=[CapabilityRequirement(name=c) for c in caps],
        estimated_duration_seconds=float(len(task_id) * 10),
    )


def _report(report: PlanReport) -> dict[str, Any]:
    estimate = asdict(report.estimate)
    estimate["peak"] = report.estimate.peak.model_dump(mode="json")
    return {
        "plan": report.plan.model_dump(mode="json"),
        "estimate": estimate,
        "stages": report.stages,
        "slack": dict(report.slack),
        "choices": [[asdict(point), chosen] for point, chosen in report.choices],
        "warnings": report.warnings,
        "template_version": report.template_version,
        "unoptimized_makespan": report.unoptimized_makespan,
    }


def _reports(planner: Planner, *requests: TaskRequest) -> list[dict[str, Any]]:
    return [_report(planner.report(r, now=NOW)) for r in requests]


def _builtin_types() -> Any:
    planner = Planner(config=PlannerConfig(cache_size=0))
    return _reports(
        planner,
        _request("f-1", "feature"),
        _request("f-2", "feature", context={"size": "small"}, constraints=_limits(budget=100)),
        _request("b-1", "bugfix", context={"stacktrace": "Traceback: boom"}),
        _request(
            "d-1",
            "data_pipeline",
            context={"sources": ["a", "b", "c"], "incremental": True},
            constraints=_limits(max_parallelism=2),
        ),
        _request("doc-1", "documentation", context={"sections": ["intro", "api", "faq"]}),
        _request(
            "r-1",
            "refactor",
            context={"modules": ["core", {"name": "io", "submodules": ["net", "disk"]}]},
            requirements=[Requirement(description="in python", capability="python")],
        ),
        _request("rv-1", "review", context={"files": ["a.py", "b.py", "c.py", "d.py"]}),
    )


def _large_dags() -> Any:
    planner = Planner(_dag_library(600, 7), config=PlannerConfig(cache_size=0, samples=64))
    return _reports(
        planner,
        _request("big-free", "big"),
        _request("big-capped", "big", constraints=_limits(max_parallelism=4)),
        _request("big-cpu", "big", constraints=_limits(max_parallelism=16, max_cpu=5)),
    )


def _given_plans() -> Any:
    planner = Planner(config=PlannerConfig(cache_size=0))
    tasks = [
        _task("a"),
        _task("bb", "a"),
        _task("c", "a"),
        _task("dddd", "a", "bb", "c"),
        _task("e", "a", "dddd"),
        _task("ff"),
    ]
    out = []
    for workflow_type in ("dag", "sequential", "parallel"):
        plan = ExecutionPlan(
            plan_id="given", workflow_type=workflow_type, tasks=tasks, max_parallelism=2
        )
        optimized = planner.optimize_plan(plan)
        estimate = asdict(planner.estimate_resources(plan))
        estimate["peak"] = estimate["peak"].model_dump(mode="json")
        out.append({"optimized": optimized.model_dump(mode="json"), "estimate": estimate})
    return out


def _problems() -> Any:
    cases = [
        [_task("a"), _task("b", "a"), _task("c", "a"), _task("d", "b", "c")],
        [_task("a"), _task("b", "a", "d"), _task("c", "b"), _task("d", "c"), _task("e", "d")],
        [_task("a", "a"), _task("b", "a"), _task("x", "y"), _task("y", "x"), _task("z", "y")],
        [_task("a", "ghost"), _task("b", "a"), _task("c"), _task("c"), _task("d", "b")],
        [_task("a", caps=("gpu",)), _task("b", "a", caps=("shell",)), _task("c", "b")],
    ]
    kinds = {"command": [Capability(name="shell")]}
    return [
        {"problems": [asdict(p) for p in result.problems], "stages": result.stages}
        for tasks in cases
        for result in (validate_tasks(tasks, agent_kinds=kinds),)
    ]


CASES: dict[str, Callable[[], Any]] = {
    "builtin_types": _builtin_types,
    "large_dags": _large_dags,
    "given_plans": _given_plans,
    "problems": _problems,
}


def _observed(name: str) -> Any:
    observed = json.loads(json.dumps(CASES[name]()))  # tuples as lists, as in the file
    if name != "large_dags":
        return observed
    # 1,800 tasks in full would make a 2 MB file: pin a digest, and numbers to read on a change
    text = json.dumps(observed, sort_keys=True)
    return {
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "makespans": [
            [r["estimate"]["makespan_seconds"], r["unoptimized_makespan"]] for r in observed
        ],
        "orders": [[t["task_id"] for t in r["plan"]["tasks"]][:50] for r in observed],
    }


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_planner_gives_the_pinned_output(name: str) -> None:
    """Plans, estimates, stages, slack and problems equal what the planner gave before."""
    expected = json.loads(GOLDEN.read_text())[name]
    assert _observed(name) == expected


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps({name: _observed(name) for name in sorted(CASES)}) + "\n")
