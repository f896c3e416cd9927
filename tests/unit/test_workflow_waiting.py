"""TaskWaiting in the decider: why dispatch holds an attempt back is recorded in the history and
shown in the task's state, once per note, and never changes what becomes of the attempt."""

from __future__ import annotations

import pytest

from mesh.errors import DecisionError
from mesh.events import Mapper, TaskWaiting, WorkflowEvent
from mesh.workflows import WorkflowState, fold
from tests.unit.test_workflow_harness import Flow, check_indexes, plan, spec, types


def test_a_waiting_attempt_records_why_and_the_status_shows_it() -> None:
    """The note is recorded (with its sequence) and becomes the task's waiting reason; the
    attempt stays ready, nothing is dispatched, no timer moves."""
    flow = Flow(plan(spec("a", timeout_seconds=30)))
    before, sent = flow.s, len(flow.sent)
    events = flow.wait("a", "resources", "no node has 4 cpu free")
    assert types(events) == ["task.waiting:a"]
    assert isinstance(events[0], TaskWaiting)
    assert events[0].sequence == before.sequence + 1
    task = flow.task("a")
    assert (task.status, task.attempt) == ("ready", 1)
    assert (task.waiting_kind, task.waiting_reason) == ("resources", "no node has 4 cpu free")
    assert flow.s.timers == before.timers
    assert flow.s.in_flight == before.in_flight
    assert len(flow.sent) == sent
    check_indexes(flow.s)


def test_the_same_note_twice_is_recorded_once() -> None:
    """A redelivered or repeated note (same kind, placement and reason) records nothing; a new
    reason is recorded and replaces the shown one; the first, repeated after, is still known."""
    flow = Flow(plan(spec("a")))
    first = flow.waiting("a", "resources", "queued behind tenant b")
    assert types(flow.run(first)) == ["task.waiting:a"]
    assert flow.run(first) == []
    assert flow.wait("a", "resources", "queued behind tenant b") == []
    assert types(flow.wait("a", "no_capable_agent", "no agent offers gpu")) == ["task.waiting:a"]
    assert flow.task("a").waiting_reason == "no agent offers gpu"
    assert flow.run(first) == []
    assert len(flow.history) == 4  # started, scheduled, two notes


def test_placement_clears_the_reason_and_the_attempt_runs_as_usual() -> None:
    """Assigned: no longer waiting. A late 'waits' note is ignored; the outcome is untouched."""
    flow = Flow(plan(spec("a"), spec("b", "a")))
    flow.wait("a", "resources", "no node has 4 cpu free")
    flow.assign("a")
    assert flow.task("a").waiting_reason is None
    assert flow.task("a").waiting_kind is None
    assert flow.wait("a", "no_healthy_agent", "late") == []
    flow.start("a")
    flow.complete("a")
    assert flow.status("a") == "succeeded"
    assert flow.ready_ids() == ["a", "b"]


def test_a_breaker_note_placed_elsewhere_is_history_not_a_wait() -> None:
    """placed_elsewhere: the history records that an agent's breaker was open; the task is not
    shown as waiting, and the note is kept even once the attempt is assigned."""
    flow = Flow(plan(spec("a")))
    note = flow.waiting(
        "a", "breaker_open", "breaker open on g1; placed on g2", placed_elsewhere=True
    )
    assert types(flow.run(note)) == ["task.waiting:a"]
    assert flow.task("a").waiting_reason is None
    flow.assign("a", "g2")
    assert flow.run(note) == []
    other = flow.waiting("a", "breaker_open", "breaker open on g3", placed_elsewhere=True)
    assert types(flow.run(other)) == ["task.waiting:a"]
    assert flow.status("a") == "assigned"


def test_notes_about_other_attempts_or_after_the_end() -> None:
    """An older attempt's note, or one after the task or workflow ended, records nothing; a note
    about an attempt never scheduled is an error (dead-lettered by the manager)."""
    flow = Flow(plan(spec("a")))
    with pytest.raises(DecisionError, match="scheduled only 1"):
        flow.wait("a", attempt=2)
    flow.reassign("a")  # attempt 2 scheduled at once
    assert flow.wait("a", attempt=1) == []
    assert flow.task("a").waits == ()
    flow.succeed("a")
    assert flow.workflow_status() == "completed"
    assert flow.wait("a") == []


def test_a_new_attempt_starts_with_no_notes() -> None:
    """The notes of attempt 1 do not silence the same note about attempt 2."""
    flow = Flow(plan(spec("a")))
    flow.wait("a", "resources", "queued")
    flow.reassign("a")
    assert flow.task("a").waiting_reason is None
    assert types(flow.wait("a", "resources", "queued")) == ["task.waiting:a"]
    assert flow.task("a").waiting_reason == "queued"


def test_a_denial_after_waiting_fails_the_task_with_its_reason() -> None:
    """Queued, then denied (the dispatcher's TaskFailed, not retriable): the task fails for good
    and the workflow's status names the denial."""
    flow = Flow(plan(spec("a"), spec("b")))
    flow.wait("a", "resources", "queued: quota")
    failed = flow.failed("a", "resources_denied", retriable=False).model_copy(
        update={"message": "resources denied (quota): tenant 't' may hold at most 2 cpu"}
    )
    flow.run(failed)
    flow.succeed("b")
    assert flow.workflow_status() == "failed"
    task = flow.task("a")
    assert (task.status, task.error_kind, task.waiting_reason) == (
        "failed",
        "resources_denied",
        None,
    )
    assert "may hold at most 2 cpu" in (task.error_message or "")
    assert "resources_denied" in flow.s.reason


def test_the_history_with_notes_replays_and_survives_the_wire() -> None:
    """Folding the recorded history (also after a Kafka round trip) gives the live state."""
    flow = Flow(plan(spec("a"), spec("b")))
    flow.wait("a", "resources", "queued")
    flow.wait("b", "breaker_open", "open on g1", placed_elsewhere=True)
    flow.succeed("b")
    mapper = Mapper()
    decoded: list[WorkflowEvent] = []
    for event in flow.history:
        _key, value, headers = mapper.encode(event)
        back = mapper.decode(value, headers)
        assert isinstance(back, WorkflowEvent)
        decoded.append(back)
    assert fold(decoded) == fold(flow.history) == flow.state
    state = flow.s
    assert WorkflowState.from_snapshot_state(state.to_snapshot_state()) == state
