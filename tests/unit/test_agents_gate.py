"""The resource gate without Kafka: which ready attempts the dispatcher may place, which wait
(and why), and which it must fail because their resources were denied or ended."""

from __future__ import annotations

from typing import Any

from mesh.agentmanager._gate import ResourceGate, ended_notice, queued_notice, unanswered_notice
from mesh.events import (
    Producer,
    ResourceAllocated,
    ResourceDenied,
    ResourceQueued,
    ResourceReleased,
    ResourceRequested,
    Resources,
    TaskReady,
    TaskSpec,
    meta,
)
from mesh.resources import allocation_id_for, request_for_ready

ME = Producer(component="dispatcher", instance="t")
ALLOCATOR = Producer(component="resource-allocator", instance="r")
NEED = Resources(cpu=4)


def ready(task_id: str = "a", attempt: int = 1) -> TaskReady:
    return TaskReady(
        **meta(ME, correlation_id="req-1"),
        workflow_id="wf-1",
        task_id=task_id,
        attempt=attempt,
        task=TaskSpec(task_id=task_id, name=task_id, resources=NEED),
        tenant="small",
    )


def fields(r: TaskReady) -> dict[str, Any]:
    return {
        "allocation_id": allocation_id_for(r.workflow_id, r.task_id, r.attempt),
        "workflow_id": r.workflow_id,
        "task_id": r.task_id,
        "attempt": r.attempt,
        "tenant": r.tenant,
        "resources": NEED,
    }


def queued(r: TaskReady, reason: str = "no node has 4 cpu free") -> ResourceQueued:
    return ResourceQueued(
        **meta(ALLOCATOR, causation=r), **fields(r), reason=reason, code="capacity"
    )


def allocated(r: TaskReady) -> ResourceAllocated:
    return ResourceAllocated(**meta(ALLOCATOR, causation=r), **fields(r), pool_id="p", node_id="n")


def denied(r: TaskReady, code: str = "quota") -> ResourceDenied:
    return ResourceDenied(
        **meta(ALLOCATOR, causation=r),
        **fields(r),
        reason="tenant 'small' may hold at most 2 cpu; it asks 4 cpu",
        code=code,
    )


def released(r: TaskReady) -> ResourceReleased:
    f = fields(r)
    return ResourceReleased(
        **meta(ALLOCATOR, causation=r),
        allocation_id=str(f["allocation_id"]),
        pool_id="p",
        resources=NEED,
        reason="agent g1 lost",
    )


def test_an_attempt_waits_until_its_allocation_exists() -> None:
    """Nothing yet, or only the request: wait. Queued: wait, with the allocator's reason.
    Allocated: place it, under that allocation id."""
    gate, r = ResourceGate(), ready()
    assert gate.answer(r).verdict == "waiting"
    gate.fold(request_for_ready(r, ALLOCATOR))
    assert gate.answer(r).verdict == "waiting"
    gate.fold(queued(r))
    assert gate.answer(r).verdict == "queued"
    gate.fold(allocated(r))
    answer = gate.answer(r)
    assert answer.verdict == "allocated"
    assert answer.allocation_id == "wf-1/a/1"


def test_other_attempts_are_not_covered_by_an_allocation() -> None:
    """Attempt 2 of the task needs its own allocation."""
    gate = ResourceGate()
    gate.fold(allocated(ready(attempt=1)))
    assert gate.answer(ready(attempt=2)).verdict == "waiting"
    assert gate.answer(ready("b")).verdict == "waiting"


def test_answers_only_move_forward() -> None:
    """A late duplicate request or queue entry after the grant changes nothing; a release ends
    it; a tombstone forgets it; each change bumps the version (the dispatcher's cue)."""
    gate, r = ResourceGate(), ready()
    gate.fold(allocated(r))
    version = gate.version
    gate.fold(request_for_ready(r, ALLOCATOR))
    gate.fold(queued(r))
    gate.fold(allocated(r))
    assert (gate.answer(r).verdict, gate.version) == ("allocated", version)
    gate.fold(released(r))
    assert gate.answer(r).verdict == "ended"
    assert gate.version == version + 1
    gate.forget("allocation:wf-1/a/1")
    gate.forget("pool:wf-1/a/1")
    assert gate.answer(r).verdict == "waiting"
    assert len(gate) == 0


def test_a_denial_becomes_a_task_failure_that_names_the_reason() -> None:
    """Denied for quota: not retriable, error kind resources_denied, the allocator's reason."""
    gate, r = ResourceGate(), ready()
    gate.fold(denied(r))
    answer = gate.answer(r)
    assert answer.verdict == "ended"
    assert isinstance(answer.record, ResourceDenied)
    failed = ended_notice(r, answer.record, ME)
    assert (failed.workflow_id, failed.task_id, failed.attempt) == ("wf-1", "a", 1)
    assert (failed.error_kind, failed.retriable, failed.agent_id) == (
        "resources_denied",
        False,
        None,
    )
    assert failed.message == (
        "resources denied (quota): tenant 'small' may hold at most 2 cpu; it asks 4 cpu"
    )
    assert failed.correlation_id == r.correlation_id


def test_a_withdrawal_or_release_before_dispatch_is_retriable() -> None:
    """Withdrawn requests and resources released before placement fail the attempt
    retriably: the Workflow Manager ignores it if the attempt had ended anyway."""
    r = ready()
    withdrawn = ended_notice(r, denied(r, "withdrawn"), ME)
    assert (withdrawn.error_kind, withdrawn.retriable) == ("resources_denied", True)
    gone = ended_notice(r, released(r), ME)
    assert (gone.error_kind, gone.retriable) == ("resources_released", True)
    assert gone.message.endswith("agent g1 lost")


def test_a_queued_attempt_says_why_it_waits() -> None:
    """TaskWaiting with reason kind 'resources' and the allocator's reason and code."""
    r = ready()
    note = queued_notice(r, queued(r, "queued behind tenant b"), ME)
    assert (note.reason_kind, note.placed_elsewhere) == ("resources", False)
    assert note.reason == "resources queued (capacity): queued behind tenant b"
    assert (note.workflow_id, note.task_id, note.attempt) == ("wf-1", "a", 1)


def test_records_that_are_not_allocations_are_ignored() -> None:
    """Pools, quotas and forecasts share the topic; the gate keeps only allocation records."""
    gate = ResourceGate()
    gate.fold(ready())
    assert len(gate) == 0
    assert gate.version == 0


def test_the_request_a_ready_attempt_makes_is_the_one_the_gate_looks_up() -> None:
    """The allocator's request for a TaskReady and the gate agree on the allocation id."""
    r = ready("build", attempt=3)
    asked = request_for_ready(r, ALLOCATOR)
    assert isinstance(asked, ResourceRequested)
    gate = ResourceGate()
    gate.fold(allocated(r))
    assert gate.answer(r).allocation_id == asked.allocation_id


def test_an_attempt_nobody_answers_says_what_is_missing() -> None:
    """No record at all (no allocator reads tasks.ready): the note names the likely cause."""
    note = unanswered_notice(ready(), ME)
    assert note.reason_kind == "resources"
    assert "mesh run resources" in note.reason
    assert "MESH_RESOURCE_GATE" in note.reason
