"""The shadow replay's bookkeeping, without a broker: a final state kept as JSON text is thawed
exactly when a later event (a RetryTask) reopens the workflow, and a snapshot is compared with
the state at its own position."""

from __future__ import annotations

from mesh.events import WorkflowSnapshot, meta
from mesh.replay._shadow import _compare, _flush, _Shadow
from mesh.workflows import STATE_VERSION, WorkflowState, fold
from tests.unit.test_workflow_harness import WM, Flow, plan, spec


def failed_then_retried() -> tuple[Flow, int]:
    """One task fails for good (the workflow fails), then a RetryTask reopens it and it
    succeeds; returns the flow and how many events the first (failed) ending took."""
    flow = Flow(plan(spec("a", retry={"max_attempts": 1})))
    flow.assign("a")
    flow.start("a")
    flow.fail("a", retriable=False)
    assert flow.workflow_status() == "failed"
    ended = len(flow.history)
    flow.retry("a")
    flow.succeed("a")
    assert flow.workflow_status() == "completed"
    return flow, ended


def test_a_frozen_final_state_thaws_when_a_retry_reopens_it() -> None:
    flow, ended = failed_then_retried()
    shadow = _Shadow()
    shadow.pending = list(flow.history[:ended])
    assert _flush(shadow, freeze=True) == ended
    assert (shadow.state, shadow.frozen is not None) == (None, True)  # kept as JSON text
    assert WorkflowState.model_validate_json(shadow.frozen or b"") == fold(flow.history[:ended])
    shadow.pending = list(flow.history[ended:])
    _flush(shadow, freeze=False)
    assert shadow.frozen is None
    assert shadow.state == fold(flow.history) == flow.s


def test_without_freeze_the_state_stays_a_model() -> None:
    flow, ended = failed_then_retried()
    shadow = _Shadow(pending=list(flow.history[:ended]))
    _flush(shadow, freeze=False)
    assert shadow.frozen is None
    assert shadow.state == fold(flow.history[:ended])


def _snapshot_of(state: WorkflowState, attempt_of_a: int | None = None) -> WorkflowSnapshot:
    data = state.to_snapshot_state()
    if attempt_of_a is not None:
        data["tasks"]["a"]["attempt"] = attempt_of_a
    return WorkflowSnapshot(
        **meta(WM, correlation_id="req-1"),
        workflow_id=state.workflow_id,
        status="failed",  # the state it is taken from (asserted by the caller's flow)
        history_sequence=state.sequence,
        state_version=STATE_VERSION,
        state=data,
    )


def test_a_snapshot_is_compared_with_the_state_at_its_position_and_then_let_go() -> None:
    flow, ended = failed_then_retried()
    at = fold(flow.history[:ended])
    assert at is not None
    for snapshot, expected in (
        (_snapshot_of(at), []),
        (_snapshot_of(at, attempt_of_a=9), ["tasks.a.attempt: snapshot has 9, replay has 1"]),
    ):
        shadow = _Shadow(state=at, snapshot=snapshot)
        _compare(shadow, snapshot)
        assert shadow.snapshot is None
        assert [str(d) for d in shadow.differences or ()] == expected
