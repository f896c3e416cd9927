"""Idempotency, errors, timers, snapshots and the strictness of folding."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mesh.errors import DecisionError, MeshError
from mesh.events import (
    Mapper,
    RetryPolicy,
    TaskCompleted,
    TaskProgress,
    WorkflowSnapshot,
    meta,
)
from mesh.workflows import STATE_VERSION, Tick, WorkflowInput, WorkflowState, decide, evolve, fold
from tests.unit.test_workflow_harness import (
    AGENT,
    REQUEST,
    T0,
    WM,
    Flow,
    check_indexes,
    plan,
    spec,
    types,
)


def test_duplicate_results_are_no_ops() -> None:
    """Redelivered TaskStarted/TaskCompleted/TaskFailed for a recorded attempt record nothing."""
    flow = Flow(plan(spec("a", retry=RetryPolicy(max_attempts=3)), spec("b")))
    started = flow.started("a")
    assert types(flow.run(started)) == ["task.started:a"]
    assert flow.run(started) == []
    completed = flow.completed("a")
    assert types(flow.run(completed)) == ["task.completed:a"]
    assert flow.run(completed) == []
    assert flow.run(flow.failed("a")) == []  # a result after the task succeeded
    failed = flow.failed("b")
    assert types(flow.run(failed)) == ["task.failed:b", "task.retry_scheduled:b"]
    assert flow.run(failed) == []  # the attempt is not out any more
    flow.now = flow.s.timers["b"]
    flow.tick()
    assert flow.run(failed) == []  # attempt 1 is stale now that attempt 2 is out
    assert flow.run(flow.started("b", attempt=1)) == []


def test_re_recorded_results_keep_their_identity() -> None:
    """A recorded result is the agent's event with a sequence: same id, cause, time, producer."""
    flow = Flow(plan(spec("a")))
    completed = flow.completed("a", {"r": 1})
    recorded = flow.run(completed)[0]
    assert recorded.sequence == 3
    assert recorded.model_copy(update={"sequence": None}) == completed


def test_progress_is_accepted_but_not_recorded() -> None:
    """TaskProgress is informational: valid, never recorded."""
    flow = Flow(plan(spec("a")))
    assert flow.progress("a") == []
    with pytest.raises(DecisionError, match="not in the plan"):
        decide(
            flow.s,
            TaskProgress(
                **meta(AGENT, correlation_id=REQUEST),
                workflow_id="wf-1",
                task_id="zz",
                attempt=1,
                agent_id="agent-1",
            ),
            flow.ctx(),
        )


def test_decision_errors() -> None:
    """Unknown workflow, unknown task, an attempt never scheduled, a foreign state."""
    flow = Flow(plan(spec("a")))
    ctx = flow.ctx()
    cases: list[tuple[WorkflowState | None, WorkflowInput, str]] = [
        (None, flow.completed("a"), "unknown"),
        (None, Tick("wf-1", T0), "unknown"),
        (flow.s, flow.completed("a", attempt=2), "scheduled only 1 time"),
        (flow.s, Tick("wf-2", T0), "given the state of wf-1"),
    ]
    for state, command, message in cases:
        with pytest.raises(DecisionError, match=message) as info:
            decide(state, command, ctx)
        assert "\n" not in str(info.value)
        assert isinstance(info.value, MeshError)
        assert info.value.retriable is False
    unknown_task = TaskCompleted(
        **meta(AGENT, correlation_id=REQUEST),
        workflow_id="wf-1",
        task_id="x",
        attempt=1,
        agent_id="g",
    )
    with pytest.raises(DecisionError, match="'x' is not in the plan of workflow wf-1"):
        decide(flow.s, unknown_task, ctx)
    with pytest.raises(DecisionError, match="not in the plan"):
        flow.retry("x")


def test_tick_with_nothing_due_is_a_no_op() -> None:
    """A tick before any timer is due records nothing."""
    flow = Flow(plan(spec("a", timeout_seconds=60)))
    assert flow.tick() == []
    flow.start("a")
    flow.advance(59)
    assert flow.tick() == []


def test_next_timer_is_the_earliest_timer() -> None:
    """next_timer: the earliest of deadlines, retries and trigger waits; None when final."""
    flow = Flow(
        plan(
            spec("slow", timeout_seconds=100),
            spec("flaky", retry=RetryPolicy(max_attempts=2)),
            spec("waits", trigger="go", timeout_seconds=500),
            kind="event_driven",
        )
    )
    assert flow.s.next_timer() == T0 + timedelta(seconds=500)
    flow.start("slow")
    assert flow.s.next_timer() == T0 + timedelta(seconds=100)
    retry_at = flow.s.timers.get("flaky")
    assert retry_at is None
    flow.fail("flaky")
    retry_at = flow.s.timers["flaky"]
    assert flow.s.next_timer() == min(retry_at, T0 + timedelta(seconds=100))
    flow.cancel()
    assert flow.s.next_timer() is None


def test_snapshot_round_trip() -> None:
    """to_snapshot_state is JSON-able and from_snapshot_state gives back an equal state."""
    flow = Flow(
        plan(
            spec("a", timeout_seconds=5),
            spec("b", "a", trigger="go"),
            spec("c", retry=RetryPolicy(max_attempts=2)),
            kind="event_driven",
        )
    )
    flow.start("a")
    flow.external("go", {"deep": {"list": [1, 2.5, None, "x"]}})
    flow.fail("c")
    data = flow.s.to_snapshot_state()
    assert isinstance(data["started_at"], str)
    restored = WorkflowState.from_snapshot_state(data)
    assert restored == flow.s
    check_indexes(restored)
    assert restored.next_timer() == flow.s.next_timer()


def test_snapshot_travels_in_a_workflow_snapshot_event() -> None:
    """The state fits WorkflowSnapshot.state and comes back equal through the mapper."""
    flow = Flow(plan(spec("a", timeout_seconds=5), spec("b", "a")))
    flow.start("a")
    state = flow.s
    snapshot = WorkflowSnapshot(
        **meta(WM, correlation_id=state.correlation_id),
        workflow_id=state.workflow_id,
        status="running",
        history_sequence=state.sequence,
        state_version=STATE_VERSION,
        state=state.to_snapshot_state(),
    )
    mapper = Mapper()
    _key, value, headers = mapper.encode(snapshot)
    back = mapper.decode(value, headers)
    assert isinstance(back, WorkflowSnapshot)
    restored = WorkflowState.from_snapshot_state(back.state, version=back.state_version)
    assert restored == state


def test_snapshot_errors_are_decision_errors() -> None:
    """A snapshot of another shape version or a corrupt one is refused in one line."""
    flow = Flow(plan(spec("a")))
    data = flow.s.to_snapshot_state()
    with pytest.raises(DecisionError, match="version 99"):
        WorkflowState.from_snapshot_state(data, version=99)
    assert STATE_VERSION == 1
    with pytest.raises(DecisionError, match="invalid snapshot state: status"):
        WorkflowState.from_snapshot_state({**data, "status": "dancing"})


def test_fold_skips_events_already_folded_and_refuses_gaps() -> None:
    """Folding is idempotent per sequence (redelivery) but a gap is a corrupt history."""
    flow = Flow(plan(spec("a"), spec("b", "a")))
    flow.succeed("a")
    history = flow.history
    whole = fold(history)
    assert fold(history, whole) == whole
    assert fold([*history[:3], *history[1:]]) == whole
    with pytest.raises(DecisionError, match="jumps from sequence 2 to 4"):
        fold([*history[:2], *history[3:]])
    with pytest.raises(DecisionError, match=r"before its workflow\.started"):
        fold(history[1:])
    with pytest.raises(DecisionError, match="has no sequence"):
        evolve(whole, flow.completed("b").model_copy(update={"sequence": None}))
    assert fold([]) is None
    assert fold([], whole) is whole


def test_evolve_refuses_events_that_cannot_apply() -> None:
    """A history event that does not fit the state it meets is a DecisionError, not a guess."""
    flow = Flow(plan(spec("a"), spec("b", "a")))
    state = flow.s
    bad_complete = flow.completed("b", attempt=1).model_copy(update={"sequence": 3})
    with pytest.raises(DecisionError, match="task 'b'"):
        evolve(state, bad_complete)
    other = flow.history[1].model_copy(update={"workflow_id": "wf-2", "sequence": 3})
    with pytest.raises(DecisionError, match="cannot fold into workflow wf-1"):
        evolve(state, other)
    restart = flow.history[0].model_copy(update={"sequence": 3})
    with pytest.raises(DecisionError, match="cannot start twice"):
        evolve(state, restart)
    progress = TaskProgress(
        **meta(AGENT, correlation_id=REQUEST),
        workflow_id="wf-1",
        task_id="a",
        attempt=1,
        agent_id="g",
        sequence=3,
    )
    with pytest.raises(DecisionError, match="not a workflow history event"):
        evolve(state, progress)


def test_fold_equals_event_by_event_evolve() -> None:
    """fold is evolve applied in order."""
    flow = Flow(plan(spec("a"), spec("b", "a"), spec("c", "a")))
    flow.succeed("a")
    flow.fail("b", retriable=False)
    state = None
    for event in flow.history:
        state = evolve(state, event)
    assert state == fold(flow.history) == flow.s


def test_every_failed_attempts_output_is_kept() -> None:
    """A failed attempt's stdout/stderr stay in the state by attempt number, past its retry
    and its success; an attempt that printed nothing adds nothing."""
    flow = Flow(plan(spec("a", retry=RetryPolicy(max_attempts=3))))
    printed = {"exit_code": 1, "stdout": "out 1", "stderr": "err 1", "truncated": False}
    flow.run(flow.started("a"))
    flow.run(flow.failed("a").model_copy(update={"output": printed}))
    assert flow.s.tasks["a"].failed_outputs == {"1": printed}
    flow.now = flow.s.timers["a"]
    flow.tick()
    flow.run(flow.started("a"))
    flow.run(flow.failed("a"))  # attempt 2 printed nothing
    flow.now = flow.s.timers["a"]
    flow.tick()
    flow.run(flow.started("a"))
    flow.run(flow.completed("a", {"stdout": "fine"}))
    task = flow.s.tasks["a"]
    assert (task.status, task.attempt) == ("succeeded", 3)
    assert task.failed_outputs == {"1": printed}
    assert task.output == {"stdout": "fine"}
    assert WorkflowState.from_snapshot_state(flow.s.to_snapshot_state()).tasks["a"] == task
