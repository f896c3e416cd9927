"""The planner's public API: request analysis, decide(), caching, exports and layering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import mesh.planner
import mesh.planner.runtime
from mesh.errors import ConfigError, InvalidRequest, PlanningError
from mesh.events import (
    Constraint,
    PlanCreated,
    PlanRejected,
    Producer,
    Requirement,
    TaskCompleted,
    TaskRequest,
    WorkflowStarted,
    meta,
)
from mesh.planner import (
    Planner,
    PlannerConfig,
    analyse,
    load_request_file,
    parse_duration,
    request_from_document,
    workflow_id_for,
)
from mesh.settings import Settings

ME = Producer(component="test", instance="t-1")
NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def request(task_type: str = "feature", **fields: Any) -> TaskRequest:
    request_id = fields.pop("request_id", "req-1")
    return TaskRequest(
        **meta(ME, correlation_id=request_id),
        request_id=request_id,
        task_type=task_type,
        description=fields.pop("description", "Add a flag"),
        **fields,
    )


def constraints(**values: Any) -> list[Constraint]:
    return [Constraint(name=k, value=v) for k, v in values.items()]


# -- request analysis ---------------------------------------------------------------------


def test_constraints_become_typed_limits() -> None:
    spec = analyse(
        request(
            constraints=constraints(
                max_parallelism="3",
                budget=2.5,
                max_duration="2h",
                max_cpu=4,
                failure_policy="continue",
                region="eu",
            ),
            deadline=NOW + timedelta(hours=5),
            requirements=[
                Requirement(description="uses python", capability="python"),
                Requirement(description="nice docs", capability="docs", mandatory=False),
                Requirement(description="fast"),
            ],
        ),
        NOW,
    )
    limits = spec.limits
    assert limits.max_parallelism == 3
    assert limits.max_cost == 2.5
    assert limits.deadline == NOW + timedelta(hours=2)  # the earlier of deadline and duration
    assert limits.resources == {"cpu": 4.0}
    assert limits.failure_policy == "continue"
    assert spec.other_constraints == {"region": "eu"}
    assert spec.capabilities == ("python",)
    assert spec.preferred == ("docs",)
    assert spec.criteria == ("uses python", "nice docs", "fast")


def test_every_bad_constraint_is_reported_at_once() -> None:
    with pytest.raises(InvalidRequest) as caught:
        analyse(
            request(
                constraints=constraints(
                    max_parallelism=0, max_cost="lots", deadline="someday", max_paralelism=2
                )
            ),
            NOW,
        )
    problems = caught.value.problems
    assert len(problems) == 4
    assert "constraints.max_parallelism: expected a whole number >= 1, got 0" in problems
    assert "did you mean 'max_parallelism'?" in " ".join(problems)
    assert caught.value.reason.startswith("invalid_request: ")
    assert caught.value.reason.endswith("(and 3 more)")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("45s", 45.0), ("30m", 1800.0), ("2h", 7200.0), ("1d", 86400.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_workflow_id_is_a_pure_function_of_the_request_id() -> None:
    assert workflow_id_for("r-1") == workflow_id_for("r-1") != workflow_id_for("r-2")
    assert workflow_id_for("x" * 200).startswith("wf-")
    assert len(workflow_id_for("x" * 200)) == 35


# -- request files ------------------------------------------------------------------------


def test_the_example_request_file_loads() -> None:
    loaded = load_request_file(ROOT / "examples" / "feature.yaml", now=NOW)
    assert loaded.task_type == "feature"
    assert loaded.deadline == NOW + timedelta(hours=4)
    assert {c.name for c in loaded.constraints} == {"max_parallelism", "max_cost"}
    assert loaded.correlation_id == loaded.request_id
    assert Planner().plan_task(loaded, now=NOW).max_parallelism == 2


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"description": "x"}, "'type' is missing"),
        ({"type": "feature"}, "'description' is missing"),
        ({"type": "feature", "description": "x", "priorty": "high"}, "did you mean 'priority'?"),
        ({"type": "feature", "description": "x", "priority": "asap"}, "priority: must be 'low'"),
        ({"type": "feature", "description": "x", "deadline": "soon"}, "deadline: cannot read time"),
        ({"type": "feature", "description": "x", "constraints": 3}, "constraints: expected a map"),
        (["type", "feature"], "expected a mapping"),
    ],
)
def test_request_file_mistakes_are_one_line_naming_the_field(document: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        request_from_document(document, "req.yaml", now=NOW)
    message = str(caught.value)
    assert message.startswith("req.yaml: ")
    assert expected in message
    assert "\n" not in message


# -- decide -------------------------------------------------------------------------------


def test_decide_gives_a_plan_for_the_deterministic_workflow() -> None:
    event = Planner().decide(request(request_id="abc"), ME, now=NOW)
    assert isinstance(event, PlanCreated)
    assert event.plan is not None
    assert event.workflow_id == event.plan.plan_id == workflow_id_for("abc")
    assert event.correlation_id == "abc"
    assert event.plan.estimated_duration_seconds
    assert event.plan.estimated_cost


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"task_type": "deploy"}, "unknown_type: no template for request type 'deploy'"),
        ({"deadline": NOW + timedelta(minutes=5)}, "deadline: impossible deadline"),
        ({"constraints": constraints(max_parallelism=-1)}, "invalid_request: constraints.max_p"),
    ],
)
def test_decide_rejects_with_a_specific_reason(fields: dict[str, Any], reason: str) -> None:
    event = Planner().decide(request(**fields), ME, now=NOW)
    assert isinstance(event, PlanRejected)
    assert event.reason.startswith(reason)
    assert event.workflow_id == workflow_id_for("req-1")


def test_plan_tasks_validates_what_an_agent_proposes() -> None:
    """The unknown-type hook's path: tasks from elsewhere get the same checks."""
    from mesh.events import TaskSpec

    tasks = [
        TaskSpec(task_id="a", name="a", depends_on=["b"]),
        TaskSpec(task_id="b", name="b", depends_on=["a"]),
    ]
    with pytest.raises(PlanningError, match=r"^cycle: (a → b → a|b → a → b)$"):
        Planner().plan_tasks(request("deploy"), tasks)
    report = Planner().plan_tasks(request("deploy"), [TaskSpec(task_id="a", name="a")])
    assert report.plan.tasks[0].estimated_duration_seconds == 60.0


# -- cache --------------------------------------------------------------------------------


def test_identical_requests_reuse_the_cached_plan_until_something_is_learned() -> None:
    planner = Planner()
    first = planner.report(request(request_id="r1"), now=NOW)
    second = planner.report(request(request_id="r2"), now=NOW)
    assert not first.cached
    assert second.cached
    assert second.plan.plan_id == workflow_id_for("r2")
    assert second.plan.tasks == first.plan.tasks
    other = planner.report(request(request_id="r3", description="Something else"), now=NOW)
    assert not other.cached
    # A completion is new evidence: the next identical request is planned afresh.
    planner.observe(
        WorkflowStarted(
            **meta(ME, correlation_id="r1"),
            workflow_id="wf",
            sequence=1,
            request_id="r1",
            plan=first.plan,
        )
    )
    planner.observe(
        TaskCompleted(
            **meta(ME, correlation_id="r1"),
            workflow_id="wf",
            sequence=2,
            task_id=first.plan.tasks[0].task_id,
            attempt=1,
            agent_id="a",
            duration_seconds=12.0,
        )
    )
    assert not planner.report(request(request_id="r4"), now=NOW).cached
    assert planner.cache.hits == 1


def test_the_cache_is_bounded() -> None:
    planner = Planner(config=PlannerConfig(cache_size=2))
    for i in range(5):
        planner.report(request(request_id=f"r{i}", description=f"change {i}"), now=NOW)
    assert len(planner.cache) == 2


def test_a_cached_plan_is_still_checked_against_each_deadline() -> None:
    planner = Planner()
    planner.plan_task(request(request_id="r1"), now=NOW)
    with pytest.raises(PlanningError, match=r"^deadline: "):
        planner.plan_task(request(request_id="r2", deadline=NOW + timedelta(minutes=1)), now=NOW)


# -- settings, exports, layering ----------------------------------------------------------


def test_planner_settings_travel_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_PLANNER_TEMPLATES", "/a:/b")
    monkeypatch.setenv("MESH_PLANNER_CAPABILITY_MAP", "design=shell, *=shell")
    settings = Settings()
    assert settings.planner_templates == (Path("/a"), Path("/b"))
    assert settings.planner_capability_map == {"design": "shell", "*": "shell"}
    env = settings.to_env()
    assert env["MESH_PLANNER_TEMPLATES"] == "/a:/b"
    assert env["MESH_PLANNER_CAPABILITY_MAP"] == "design=shell,*=shell"


def test_exported_names_are_pinned_and_sorted() -> None:
    """The pure package exports the planning API; the Kafka component is in ``runtime``."""
    assert mesh.planner.runtime.__all__ == [
        "COMPONENT",
        "PlannerService",
        "UnknownTypeHook",
        "planner_router",
        "run_planner",
    ]
    exported = mesh.planner.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    assert {
        "Planner",
        "plan_task",
        "validate_plan",
        "optimize_plan",
        "estimate_resources",
        "workflow_id_for",
        "load_request_file",
    } <= set(exported)
    for name in exported:
        assert getattr(mesh.planner, name) is not None
