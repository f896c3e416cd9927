"""Property tests: any history the decider records replays exactly.

Hypothesis draws small plans (every workflow type, both failure policies, caps, retries,
timeouts, triggers) and a run of inputs against them — results for current and stale attempts,
failures of every kind, ticks at increasing times, pause, resume, cancel, retries of failed tasks,
external events, duplicates. Each run is driven through decide and fold as the manager would,
then its history is checked as replay uses it.
"""

from __future__ import annotations

from typing import get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.events import (
    Backoff,
    ExecutionPlan,
    FailurePolicy,
    Mapper,
    RetryPolicy,
    TaskReady,
    TaskScheduled,
    TaskSpec,
    WaitingReason,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowEvent,
    WorkflowFailed,
    WorkflowType,
)
from mesh.events import RetryTask as RetryTaskCommand
from mesh.workflows import (
    DecideContext,
    Tick,
    WorkflowInput,
    WorkflowState,
    decide,
    decide_and_fold,
    evolve,
    fold,
)
from tests.unit.test_workflow_harness import WM, Flow, check_indexes, ids

_IN_FLIGHT = ("ready", "assigned", "running")


@st.composite
def plans(draw: st.DrawFn) -> ExecutionPlan:
    """A small valid plan: a DAG over earlier tasks, with random limits and policies."""
    kind: WorkflowType = draw(st.sampled_from(get_args(WorkflowType)))
    count = draw(st.integers(1, 6))
    tasks = []
    for i in range(count):
        earlier = [f"t{j}" for j in range(i)]
        deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        trigger = (
            draw(st.sampled_from([None, None, "go", "data"])) if kind == "event_driven" else None
        )
        retry = RetryPolicy(
            max_attempts=draw(st.integers(1, 3)),
            backoff=Backoff(initial_seconds=draw(st.sampled_from([1.0, 7.0, 40.0]))),
            jitter=draw(st.sampled_from([0.0, 0.3])),
            non_retryable=("fatal",),
        )
        tasks.append(
            TaskSpec(
                task_id=f"t{i}",
                name=f"task {i}",
                depends_on=deps,
                trigger=trigger,
                retry=retry,
                timeout_seconds=draw(st.sampled_from([None, 15.0, 60.0])),
            )
        )
    return ExecutionPlan(
        plan_id="p",
        workflow_type=kind,
        failure_policy=draw(st.sampled_from(get_args(FailurePolicy))),
        max_parallelism=draw(st.sampled_from([None, 1, 2])),
        tasks=tasks,
    )


_ACTIONS = (
    *("complete",) * 5,
    *("start",) * 2,
    "assign",
    *("fail",) * 2,
    *("timer",) * 2,
    "tick",
    "reassign",
    "stale",
    "pause",
    *("resume",) * 2,
    "cancel",
    *("retry",) * 2,
    *("external",) * 2,
    "duplicate",
    "progress",
    "wait",
)
"""Weighted towards progress so that runs get far (retries, timeouts, reopening)."""


def _input(flow: Flow, data: st.DataObject, seen: list[WorkflowInput]) -> WorkflowInput | None:
    """One input for the workflow as it stands, or None when the drawn action does not apply."""
    action = data.draw(st.sampled_from(_ACTIONS))
    tasks = flow.s.tasks
    out = sorted(t for t, task in tasks.items() if task.status in _IN_FLIGHT)
    if action in {"assign", "start", "complete", "fail", "reassign", "progress", "wait"} and out:
        task_id = data.draw(st.sampled_from(out))
        if action == "assign":
            return flow.assigned(task_id, data.draw(st.sampled_from(["g1", "g2"])))
        if action == "start":
            return flow.started(task_id, data.draw(st.sampled_from(["g1", "g2"])))
        if action == "complete":
            return flow.completed(task_id, {"by": task_id, "n": len(seen)})
        if action == "fail":
            kind = data.draw(st.sampled_from(["boom", "boom", "fatal"]))
            retriable = data.draw(st.sampled_from([True, True, True, False]))
            return flow.failed(task_id, kind, retriable=retriable)
        if action == "reassign":
            flow.reassign(task_id)
            return None
        if action == "wait":
            kinds: list[WaitingReason] = ["resources", "no_capable_agent", "breaker_open"]
            kind = data.draw(st.sampled_from(kinds))
            return flow.waiting(
                task_id, kind, f"{kind} now", placed_elsewhere=kind == "breaker_open"
            )
        flow.progress(task_id)
        return None
    if action == "stale":
        used = sorted(t for t, task in tasks.items() if task.attempt > 1)
        if used:
            return flow.completed(data.draw(st.sampled_from(used)), attempt=1)
        return None
    if action == "tick":
        flow.advance(data.draw(st.sampled_from([0, 1, 10, 30, 90])))
        return _tick(flow)
    if action == "timer":
        at = flow.s.next_timer()
        if at is not None and at > flow.now:
            flow.now = at
        return _tick(flow)
    if action == "pause":
        flow.pause()
        return None
    if action == "resume":
        flow.resume()
        return None
    if action == "cancel":
        if data.draw(st.integers(0, 4)) == 0:  # rarely: it ends the run
            flow.cancel()
        return None
    if action == "retry":
        failed = sorted(t for t, task in tasks.items() if task.status in {"failed", "timed_out"})
        flow.retry(data.draw(st.sampled_from(failed or sorted(tasks))))
        return None
    if action == "external":
        flow.external(data.draw(st.sampled_from(["go", "data", "nope"])), {"n": len(seen)})
        return None
    if action == "duplicate" and seen:
        return data.draw(st.sampled_from(seen))
    return None


def _tick(flow: Flow) -> WorkflowInput:
    return Tick(flow.workflow_id, flow.now)


def _drive(the_plan: ExecutionPlan, data: st.DataObject) -> Flow:
    flow = Flow(the_plan)
    seen: list[WorkflowInput] = []
    for _ in range(data.draw(st.integers(5, 60), label="steps")):
        command = _input(flow, data, seen)
        if command is None:
            continue
        # decide is pure: the same state, input and context give the same events
        first = decide(flow.state, command, DecideContext(flow.now, WM, ids(10**6)))
        again = decide(flow.state, command, DecideContext(flow.now, WM, ids(10**6)))
        assert first == again
        # decide_and_fold's state is the events folded onto the state, without folding twice
        events, after = decide_and_fold(
            flow.state, command, DecideContext(flow.now, WM, ids(10**6))
        )
        assert events == first
        assert after == (fold(first, flow.state) if first else flow.state)
        flow.run(command)
        seen.append(command)
    return flow


def _check_history_rules(history: list[WorkflowEvent]) -> None:
    """Sequences have no gaps; nothing is scheduled unless running; nothing follows the end."""
    assert [e.sequence for e in history] == list(range(1, len(history) + 1))
    state: WorkflowState | None = None
    for event in history:
        if state is not None:
            if isinstance(event, TaskScheduled):
                assert state.status == "running"
            if state.status in {"completed", "cancelled"}:
                raise AssertionError(f"{event.type} after the workflow ended")
            if state.status == "failed":
                assert isinstance(event, RetryTaskCommand), event.type
        state = evolve(state, event)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(the_plan=plans(), data=st.data())
def test_recorded_histories_replay_exactly(the_plan: ExecutionPlan, data: st.DataObject) -> None:
    """Folding is deterministic, composable, survives snapshots and the wire, gapless."""
    flow = _drive(the_plan, data)
    history = flow.history

    # (1) folding twice gives equal states, equal to the live one
    whole = fold(history)
    assert whole == fold(history) == flow.state

    # (2) a prefix folded, then the rest onto it, equals the whole
    cut = data.draw(st.integers(0, len(history)), label="cut")
    assert fold(history[cut:], fold(history[:cut])) == whole

    # (3) every intermediate state survives a snapshot round trip, with consistent indexes
    for state in flow.states:
        assert WorkflowState.from_snapshot_state(state.to_snapshot_state()) == state
        check_indexes(state)

    # (4) the history encoded and decoded as Kafka records folds to the same state
    mapper = Mapper()
    decoded = []
    for event in history:
        _key, value, headers = mapper.encode(event)
        back = mapper.decode(value, headers)
        assert isinstance(back, WorkflowEvent)
        decoded.append(back)
    assert fold(decoded) == whole

    # (5) sequences 1..n; and the lifecycle rules hold along the way
    _check_history_rules(history)

    # every scheduled attempt was dispatched exactly once
    scheduled = [(e.task_id, e.attempt) for e in history if isinstance(e, TaskScheduled)]
    ready = [(e.task_id, e.attempt) for e in flow.sent if isinstance(e, TaskReady)]
    assert ready == scheduled

    # a finished workflow's end event matches its tasks
    assert whole is not None
    if whole.status == "completed":
        assert isinstance(history[-1], WorkflowCompleted)
        assert all(t.status == "succeeded" for t in whole.tasks.values())
    if whole.status == "cancelled":
        assert isinstance(history[-1], WorkflowCancelled)
    if whole.status == "failed":
        assert isinstance(history[-1], WorkflowFailed)
        assert whole.failed_task_ids
    if whole.is_final:
        assert whole.next_timer() is None
        assert all(t.is_final for t in whole.tasks.values())
