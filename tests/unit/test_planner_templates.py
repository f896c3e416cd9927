"""Built-in templates plan, validate and run; the template language does what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mesh.agents._templates import render_argv, values_for
from mesh.errors import ConfigError, PlanningError, PlanTemplateError
from mesh.events import ExecutionPlan, Producer, TaskRequest, meta
from mesh.planner import Planner, PlannerConfig, analyse, load_library, validate_tasks
from mesh.planner._htn import first_method

ME = Producer(component="test", instance="t-1")
TEMPLATE_CAPABILITIES = {"design", "code", "test", "review", "docs", "data"}
"""The capability names the built-ins use (documented in templates/common.yaml)."""

# A context that makes every method of every built-in type applicable somewhere.
RICH_CONTEXT: dict[str, Any] = {
    "repository": ".",
    "size": "small",
    "stacktrace": "Traceback: KeyError 'x' in status.py line 3",
    "files": ["mesh/status.py", "tests/test_status.py"],
    "modules": [{"name": "core", "submodules": ["io", {"name": "net", "submodules": ["tcp"]}]}],
    "sections": ["install", "usage"],
    "sources": ["orders", "users"],
    "incremental": True,
}


def _request(task_type: str, **fields: Any) -> TaskRequest:
    request_id = fields.pop("request_id", f"req-{task_type}")
    fields.setdefault("description", f"Do the {task_type} work {{carefully}}")
    return TaskRequest(
        **meta(ME, correlation_id=request_id),
        request_id=request_id,
        task_type=task_type,
        **fields,
    )


def _every_root_method() -> list[tuple[str, str]]:
    library = load_library()
    return [
        (name, method.name)
        for name in library.types
        for method in library.tasks[name].methods  # type: ignore[union-attr]
    ]


def test_builtin_types_are_the_six_promised() -> None:
    assert set(load_library().types) == {
        "feature",
        "bugfix",
        "review",
        "refactor",
        "documentation",
        "data_pipeline",
    }


@pytest.mark.parametrize(("task_type", "method"), _every_root_method())
def test_every_method_of_every_builtin_plans_validates_and_runs(
    task_type: str, method: str, tmp_path: Path
) -> None:
    """Each method gives a valid DAG whose commands run with plain python3, in dependency order,
    with upstream outputs passed the way the Workflow Manager passes them."""
    planner = Planner()
    spec = analyse(_request(task_type, context=RICH_CONTEXT))
    decomposition = planner.decomposer.decompose(spec, first_method, {"": method})
    assert [m for p, m in decomposition.choices if p.path == ""] in ([method], [])
    assert validate_tasks(decomposition.tasks).valid
    plan = ExecutionPlan(plan_id="p", workflow_type="dag", tasks=decomposition.tasks)
    assert planner.validate_plan(plan).valid
    outputs: dict[str, dict[str, Any]] = {}
    stages = planner.validate_plan(plan).stages
    for stage in stages:
        for task_id in stage:
            task = plan.task(task_id)
            assert {c.name for c in task.capabilities} <= TEMPLATE_CAPABILITIES
            assert task.prompt
            assert task.command
            assert task.command[0] == "python3"
            upstream = {dep: outputs[dep] for dep in task.depends_on}
            values = values_for(
                prompt=task.prompt,
                task_id=task_id,
                workflow_id="wf-test",
                attempt=1,
                inputs={**task.inputs, "upstream": upstream},
            )
            argv = [sys.executable, *render_argv(task.command, values)[1:]]
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=30, check=False, cwd=tmp_path
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip()
            outputs[task_id] = {"exit_code": 0, "stdout": done.stdout, "stderr": ""}
    assert set(outputs) == {t.task_id for t in plan.tasks}


def test_demo_capability_map_fits_the_demo_agents() -> None:
    """With `*=shell` every built-in plan runs on mesh dev's command agents (capability shell)."""
    planner = Planner(
        config=PlannerConfig(capability_map={"*": "shell"}, agent_kinds={"command": ["shell"]})
    )
    for task_type, method in _every_root_method():
        spec = analyse(_request(task_type, context=RICH_CONTEXT))
        tasks = planner.decomposer.decompose(spec, first_method, {"": method}).tasks
        assert {c.name for t in tasks for c in t.capabilities} == {"shell"}
    plan = planner.plan_task(_request("feature"))
    assert planner.validate_plan(plan).valid


def test_unmapped_capabilities_are_rejected_when_agent_kinds_are_known() -> None:
    planner = Planner(config=PlannerConfig(agent_kinds={"command": ["shell"]}))
    with pytest.raises(PlanningError) as caught:
        planner.plan_task(_request("feature"))
    assert caught.value.kind == "unknown_capability"
    assert "no known agent kind offers" in caught.value.reason


def test_descriptions_cannot_inject_agent_placeholders_into_commands() -> None:
    """`${...}` values land brace-escaped in commands: the agent renders them back literally."""
    planner = Planner()
    tasks = planner.decomposer.decompose(
        analyse(_request("review", context={"files": ["{inputs.secret}.py"]})),
        first_method,
        {"": "per_file"},
    ).tasks
    task = next(t for t in tasks if t.task_id == "files[0]")
    assert task.command is not None
    values = values_for(
        prompt="p", task_id="x", workflow_id="w", attempt=1, inputs={"upstream": {}}
    )
    label = render_argv(task.command, values)[3]
    assert label == "review {inputs.secret}.py"
    assert task.name == "review {inputs.secret}.py"


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_user_directory_overrides_a_builtin_and_adds_types(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "team.yaml",
        """
tasks:
  feature:
    methods:
      - name: just_code
        steps:
          - {id: code, task: implement}
  release:
    methods:
      - name: ship
        steps:
          - {id: tag, task: tag_release, with: {version: "${context.version|0.1.0}"}}
  tag_release:
    name: "tag ${params.version}"
    capabilities: [shell]
    command: [git, tag, "v${params.version}"]
""",
    )
    library = load_library([tmp_path])
    assert "release" in library.types
    planner = Planner(library)
    assert [t.task_id for t in planner.plan_task(_request("feature")).tasks] == ["code"]
    plan = planner.plan_task(_request("release", context={"version": "2.0"}))
    assert plan.tasks[0].name == "tag 2.0"
    assert plan.tasks[0].command == ("git", "tag", "v2.0")


def test_template_version_changes_with_any_reachable_definition(tmp_path: Path) -> None:
    base = load_library()
    _write(tmp_path, "x.yaml", "tasks:\n  implement:\n    capabilities: [code]\n    duration: 1h\n")
    changed = load_library([tmp_path])
    assert base.version("feature") != changed.version("feature")
    assert base.version("data_pipeline") == changed.version("data_pipeline")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tasks: [1, 2", "not valid YAML/JSON"),
        ("tasks:\n  x:\n    methods: []\n", "tasks.x.methods: List should have at least 1 item"),
        ("tasks:\n  x:\n    capabilities: [a]\n    duraton: 5\n", "duraton: Extra inputs"),
        (
            "tasks:\n  x:\n    methods:\n      - name: m\n        when: [{path: a, bigger: 1}]\n"
            "        steps: [{id: s, task: y}]\n",
            "exactly one of equals",
        ),
        ("tasks:\n  x:\n    duration: soon\n", "expected a duration"),
    ],
)
def test_malformed_template_files_fail_with_one_line_naming_file_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_library([tmp_path])
    message = str(caught.value)
    assert isinstance(caught.value, PlanTemplateError)
    assert str(path) in message
    assert expected in message
    assert "\n" not in message


def test_recursion_stops_at_the_depth_limit_with_the_chain(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "loop.yaml",
        """
tasks:
  nest:
    methods:
      - name: deeper
        steps: [{id: inner, task: nest}]
""",
    )
    planner = Planner(load_library([tmp_path]), config=PlannerConfig(max_depth=4))
    with pytest.raises(PlanningError) as caught:
        planner.plan_task(_request("nest"))
    assert caught.value.kind == "depth_limit"
    assert "nest → nest → nest → nest → nest → nest" in caught.value.reason


def test_recursion_over_a_module_tree_follows_its_shape() -> None:
    planner = Planner()
    spec = analyse(_request("refactor", context=RICH_CONTEXT))
    choices = {"": "by_module", "modules[0]": "split", "modules[0]/parts[1]": "split"}
    tasks = planner.decomposer.decompose(spec, first_method, choices).tasks
    ids = {t.task_id for t in tasks}
    assert {
        "modules[0]/parts[0]/change",
        "modules[0]/parts[1]/parts[0]/change",
        "modules[0]/parts[1]/integrate",
        "modules[0]/integrate",
    } <= ids
    by_id = {t.task_id: t for t in tasks}
    assert by_id["modules[0]/parts[0]/change"].depends_on == ("analyse",)
    assert set(by_id["modules[0]/integrate"].depends_on) == {
        "modules[0]/parts[0]/change",
        "modules[0]/parts[1]/integrate",
    }
    assert by_id["test"].depends_on == ("modules[0]/integrate",)


def test_no_applicable_method_says_what_each_needed(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "picky.yaml",
        """
tasks:
  picky:
    methods:
      - name: python_only
        when: [{path: context.language, equals: python}]
        steps: [{id: a, task: implement}]
      - name: urgent_only
        when: [{path: request.priority, in: [high, critical]}]
        steps: [{id: a, task: implement}]
""",
    )
    planner = Planner(load_library([tmp_path]))
    with pytest.raises(PlanningError) as caught:
        planner.plan_task(_request("picky", context={"language": "go"}))
    assert caught.value.kind == "no_method"
    assert 'python_only needs context.language equals "python"' in caught.value.reason
    assert 'urgent_only needs request.priority in ["high", "critical"]' in caught.value.reason
    assert planner.plan_task(_request("picky", context={"language": "python"})).tasks


def test_missing_parameter_is_a_template_rejection_naming_it(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "needs.yaml",
        "tasks:\n  needs:\n    capabilities: [code]\n    prompt: 'work on ${context.ticket}'\n",
    )
    with pytest.raises(PlanningError) as caught:
        Planner(load_library([tmp_path])).plan_task(_request("needs"))
    assert caught.value.kind == "template"
    assert "${context.ticket} is not set" in caught.value.reason


def test_an_empty_for_each_passes_dependencies_through(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "fan.yaml",
        """
tasks:
  fan:
    methods:
      - name: m
        steps:
          - {id: first, task: design}
          - {id: each, task: implement, for_each: "${context.items|[]}", after: [first]}
          - {id: last, task: review_code, after: [each]}
""",
    )
    planner = Planner(load_library([tmp_path]))
    empty = planner.plan_task(_request("fan", request_id="a"))
    assert {t.task_id: t.depends_on for t in empty.tasks} == {"first": (), "last": ("first",)}
    full = planner.plan_task(_request("fan", request_id="b", context={"items": [1, 2]}))
    deps = {t.task_id: set(t.depends_on) for t in full.tasks}
    assert deps["last"] == {"each[0]", "each[1]"}
    assert deps["each[1]"] == {"first"}
    assert json.loads(json.dumps(full.model_dump(mode="json")))  # the plan is plain JSON


def test_task_commands_can_be_left_to_the_agents() -> None:
    """For LLM agents that run their own argv with {prompt}: prompts only, no commands."""
    plan = Planner(config=PlannerConfig(task_commands=False)).plan_task(_request("feature"))
    assert all(t.command is None and t.prompt for t in plan.tasks)
