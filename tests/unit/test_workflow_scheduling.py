"""Which tasks the decider schedules, in what order, and what their TaskReady carries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mesh.errors import DecisionError
from mesh.events import PlanCreated, TaskReady, meta
from mesh.workflows import decide, dispatches
from tests.unit.test_workflow_harness import CLIENT, REQUEST, T0, Flow, plan, spec, types


def test_plan_created_starts_the_workflow_and_schedules_the_roots() -> None:
    """PlanCreated → WorkflowStarted carrying the plan, then attempt 1 of each free task."""
    flow = Flow(plan(spec("a"), spec("b"), spec("c", "a", "b")))
    assert types(flow.history) == ["workflow.started", "task.scheduled:a", "task.scheduled:b"]
    started = flow.history[0]
    assert getattr(started, "plan", None) == flow.plan
    assert [e.sequence for e in flow.history] == [1, 2, 3]
    assert all(getattr(e, "attempt", 1) == 1 for e in flow.history)
    assert flow.workflow_status() == "running"
    assert flow.status("c") == "pending"
    assert flow.ready_ids() == ["a", "b"]


def test_new_events_are_caused_by_the_input_and_stamped_by_the_manager() -> None:
    """The manager's events carry the input's correlation, its event id as cause, ctx's time."""
    flow = Flow(plan(spec("a")))
    for event in flow.history:
        assert event.causation_id == flow.created.event_id
        assert event.correlation_id == REQUEST
        assert event.occurred_at == flow.now
        assert event.producer.component == "workflow-manager"
    ready = flow.ready()[0]
    assert ready.causation_id == flow.history[1].event_id
    assert ready.key == "wf-1"


def test_diamond_passes_outputs_to_dependants() -> None:
    """A → B, C → D: B and C get A's output, D gets both of theirs under `upstream`."""
    flow = Flow(
        plan(spec("a"), spec("b", "a"), spec("c", "a"), spec("d", "b", "c", inputs={"k": 1}))
    )
    flow.succeed("a", {"x": 1})
    assert flow.ready_ids() == ["a", "b", "c"]
    assert flow.ready()[1].task.inputs == {"upstream": {"a": {"x": 1}}}
    flow.succeed("b", {"y": 2})
    assert flow.ready_ids() == ["a", "b", "c"]  # D still waits for C
    flow.succeed("c", {"z": 3})
    ready_d = flow.ready()[-1]
    assert ready_d.task_id == "d"
    assert ready_d.task.inputs == {"k": 1, "upstream": {"b": {"y": 2}, "c": {"z": 3}}}
    events = flow.succeed("d")
    assert types(events)[-1] == "workflow.completed"
    assert flow.workflow_status() == "completed"
    completed = events[-1]
    assert getattr(completed, "completed_tasks", None) == 4


def test_sequential_runs_in_plan_order_and_chains_outputs() -> None:
    """In a sequential plan each task waits for the one before it, whatever depends_on says."""
    flow = Flow(plan(spec("one"), spec("two"), spec("three"), kind="sequential"))
    assert flow.ready_ids() == ["one"]
    flow.succeed("one", {"n": 1})
    assert flow.ready_ids() == ["one", "two"]
    assert flow.ready()[-1].task.inputs == {"upstream": {"one": {"n": 1}}}
    flow.succeed("two")
    assert flow.ready_ids() == ["one", "two", "three"]
    flow.succeed("three")
    assert flow.workflow_status() == "completed"


def test_parallel_schedules_everything_at_once_ignoring_depends_on() -> None:
    """A parallel plan's tasks are all independent."""
    flow = Flow(plan(spec("a"), spec("b", "a"), spec("c"), kind="parallel"))
    assert flow.ready_ids() == ["a", "b", "c"]
    assert flow.ready()[1].task.inputs == {"upstream": {}}


def test_ready_carries_priority_tenant_and_the_spec() -> None:
    """TaskReady takes priority and tenant from the plan and the rest from the task's spec."""
    flow = Flow(
        plan(spec("a", timeout_seconds=9, prompt="do it"), priority="high", tenant="team-x")
    )
    ready = flow.ready()[0]
    assert (ready.priority, ready.tenant, ready.attempt) == ("high", "team-x", 1)
    assert ready.task.prompt == "do it"
    assert ready.task.timeout_seconds == 9


def test_max_parallelism_caps_attempts_in_flight() -> None:
    """With max_parallelism 2 only two attempts are out; each finished one frees a slot."""
    flow = Flow(plan(*(spec(t) for t in "abcde"), max_parallelism=2))
    assert flow.ready_ids() == ["a", "b"]
    assert flow.s.runnable == ("c", "d", "e")
    flow.assign("a")
    flow.start("a")
    assert flow.ready_ids() == ["a", "b"]  # assigned and running still hold their slot
    flow.complete("a")
    assert flow.ready_ids() == ["a", "b", "c"]
    flow.fail("b", retriable=False)  # fail_fast: the workflow fails, nothing more is scheduled
    assert flow.workflow_status() == "failed"
    assert flow.ready_ids() == ["a", "b", "c"]


def test_max_parallelism_with_continue_runs_everything_eventually() -> None:
    """A slot freed by a failure goes to the next task in plan order."""
    flow = Flow(plan(*(spec(t) for t in "abc"), max_parallelism=1, failure_policy="continue"))
    flow.fail("a", retriable=False)
    assert flow.ready_ids() == ["a", "b"]
    flow.succeed("b")
    flow.succeed("c")
    assert flow.workflow_status() == "failed"  # a failed for good
    assert flow.s.failed_task_ids == ("a",)


def test_event_driven_task_waits_for_its_trigger_and_gets_the_payload() -> None:
    """A triggered task runs only after its dependencies and an ExternalEvent of its name."""
    flow = Flow(plan(spec("prep"), spec("deploy", "prep", trigger="approved"), kind="event_driven"))
    assert flow.ready_ids() == ["prep"]
    flow.succeed("prep", {"built": True})
    assert flow.ready_ids() == ["prep"]
    assert flow.status("deploy") == "pending"
    assert flow.external("other") == []  # nobody waits for it: nothing recorded
    events = flow.external("approved", {"by": "alice"})
    assert types(events) == ["workflow.external_event", "task.scheduled:deploy"]
    assert events[0].sequence == flow.history[-2].sequence
    ready = flow.ready()[-1]
    assert ready.task.inputs == {"upstream": {"prep": {"built": True}}, "event": {"by": "alice"}}
    assert flow.external("approved", {"by": "bob"}) == []  # already triggered


def test_trigger_that_comes_before_the_dependencies_is_kept() -> None:
    """An ExternalEvent may arrive early; the task starts as soon as its dependencies are done."""
    flow = Flow(plan(spec("prep"), spec("go", "prep", trigger="tick"), kind="event_driven"))
    assert types(flow.external("tick", {"n": 1})) == ["workflow.external_event"]
    events = flow.succeed("prep")
    assert types(events) == ["task.completed:prep", "task.scheduled:go"]
    assert flow.ready()[-1].task.inputs["event"] == {"n": 1}


def test_trigger_timeout_fails_the_task() -> None:
    """A trigger that does not come within timeout_seconds fails the task (trigger_timeout)."""
    flow = Flow(
        plan(
            spec("prep"),
            spec("wait", "prep", trigger="go", timeout_seconds=60),
            kind="event_driven",
        )
    )
    flow.advance(10)
    flow.succeed("prep")  # the wait starts when the task is otherwise ready
    assert flow.task("wait").wait_deadline == T0 + timedelta(seconds=70)
    assert flow.s.next_timer() == T0 + timedelta(seconds=70)
    flow.advance(59)
    assert flow.tick() == []
    flow.advance(1)
    events = flow.tick()
    assert types(events) == ["task.failed:wait", "workflow.failed"]
    failed = events[0]
    assert getattr(failed, "error_kind", None) == "trigger_timeout"
    assert getattr(failed, "retriable", None) is False
    assert getattr(failed, "agent_id", "x") is None
    assert flow.status("wait") == "failed"
    assert flow.external("go") == []  # too late


def test_triggers_are_ignored_outside_event_driven_plans() -> None:
    """Only event-driven workflows wait for triggers."""
    flow = Flow(plan(spec("a", trigger="go")))
    assert flow.ready_ids() == ["a"]


def test_second_plan_created_is_a_no_op() -> None:
    """A redelivered PlanCreated for an existing workflow records nothing."""
    flow = Flow(plan(spec("a")))
    assert flow.run(flow.created) == []
    other = PlanCreated(
        **meta(CLIENT, correlation_id=REQUEST),
        workflow_id="wf-1",
        request_id=REQUEST,
        plan=plan(spec("z")),
    )
    assert flow.run(other) == []


def test_a_cyclic_plan_is_rejected() -> None:
    """A plan whose dependencies form a cycle could never run: DecisionError."""
    cyclic = plan(spec("a", "b"), spec("b", "a"))
    created = PlanCreated(
        **meta(CLIENT, correlation_id=REQUEST), workflow_id="wf-9", request_id=REQUEST, plan=cyclic
    )
    with pytest.raises(DecisionError, match="cycle"):
        decide(None, created, Flow(plan(spec("x"))).ctx())


def test_sequential_plan_with_backward_dependency_is_a_cycle() -> None:
    """The implicit sequential chain plus an explicit dependency on a later task is a cycle."""
    created = PlanCreated(
        **meta(CLIENT, correlation_id=REQUEST),
        workflow_id="wf-9",
        request_id=REQUEST,
        plan=plan(spec("a", "b"), spec("b"), kind="sequential"),
    )
    with pytest.raises(DecisionError, match="cycle"):
        decide(None, created, Flow(plan(spec("x"))).ctx())


def test_started_without_assigned_and_late_assigned() -> None:
    """TaskStarted may come before (or without) TaskAssigned; a late TaskAssigned is a no-op."""
    flow = Flow(plan(spec("a")))
    assert types(flow.start("a")) == ["task.started:a"]
    assert flow.status("a") == "running"
    assert flow.assign("a") == []
    assert flow.task("a").agent_id == "agent-1"


def test_ready_is_not_dispatched_for_a_task_no_longer_out() -> None:
    """dispatches sends TaskReady only for attempts that are still current and out."""
    flow = Flow(plan(spec("a")))
    scheduled = flow.history[1]
    assert [type(e) for e in dispatches(flow.s, [scheduled], flow.ctx())] == [TaskReady]
    flow.cancel()
    assert dispatches(flow.s, [scheduled], flow.ctx()) == []
