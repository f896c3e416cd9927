"""One unit of the Workflow Manager's work, in memory: records in, history, dispatches,
snapshots, replies, dead letters and tombstones out, and nothing changed until ``apply``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic_core
import pytest
import structlog
from structlog.testing import capture_logs

from mesh.errors import PayloadCorrupt, PayloadError
from mesh.events import (
    CHUNK_KEY_SEPARATOR,
    CancelWorkflow,
    DeadLetter,
    Event,
    ExecutionPlan,
    Mapper,
    PauseWorkflow,
    PayloadRef,
    PlanCreated,
    Producer,
    Reply,
    RetryPolicy,
    TaskCancelled,
    TaskCompleted,
    TaskReady,
    TaskSpec,
    TaskStarted,
    TaskTimedOut,
    WorkflowEvent,
    WorkflowSnapshot,
    WorkflowSnapshotChunk,
    WorkflowStarted,
    chunk_key,
    meta,
)
from mesh.kafka.dlq import HEADER_ERROR_CLASS, HEADER_ORIGINAL_OFFSET, HEADER_ORIGINAL_TOPIC
from mesh.kafka.partitions import partition_for
from mesh.kafka.produce import Outgoing
from mesh.workflows import WorkflowState, fold
from mesh.workflows.runtime._partition import Partition, Tracked
from mesh.workflows.runtime._snapshots import SnapshotPolicy
from mesh.workflows.runtime._work import Work

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
PREFIX = "mesh."
PARTITIONS = 6
ME = Producer(component="workflow-manager", instance="wm-test")
CLIENT = Producer(component="client", instance="cli")
CHANNELS = {f"{PREFIX}{c}": c for c in ("plans", "commands", "tasks.results")}
MAPPER = Mapper()
WID = "wf-unit-1"


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Log entries of the test, with the bound context (and none printed: structlog may have
    been configured by an earlier in-process CLI test with a stream that is closed now)."""
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as entries:
        yield entries


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Record:
    """A consumed record as aiokafka gives it (the fields ``Work`` reads)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: int = 0


class Harness:
    """A partition, a clock and a fake log: ``feed`` inputs, ``commit`` like the manager."""

    def __init__(self, *, every: int = 100, mapper: Mapper = MAPPER, grace: float = 60.0) -> None:
        self.partition = Partition(partition_for(WID, PARTITIONS), timedelta(seconds=grace))
        self.clock = Clock()
        self.mapper = mapper
        self.policy = SnapshotPolicy(every)
        self.offsets = {"plans": 0, "commands": 0, "tasks.results": 0}
        self.history: list[WorkflowEvent] = []
        self.log_end = 0
        self.snapshots: list[WorkflowSnapshot | None] = []
        self.chunks: list[WorkflowSnapshotChunk] = []
        self.dropped_chunks: list[bytes] = []
        """Keys of chunk tombstones written with snapshots."""
        self.messages: list[Outgoing] = []
        self.plans: dict[str, ExecutionPlan | PayloadError] = {}
        """Plans by reference as the manager's ``prepare`` fetched them."""

    def work(self) -> Work:
        return Work(
            self.partition,
            mapper=self.mapper,
            me=ME,
            policy=self.policy,
            channels=CHANNELS,
            partitions=PARTITIONS,
            clock=self.clock,
            plans=self.plans,
        )

    def record(self, channel: str, event: Event | None = None, **raw: Any) -> Record:
        offset = self.offsets[channel]
        self.offsets[channel] += 1
        if event is not None:
            key, value, headers = MAPPER.encode(event)
            raw = {"key": key, "value": value, "headers": headers, **raw}
        raw.setdefault("partition", self.partition.number)
        return Record(topic=f"{PREFIX}{channel}", offset=offset, **raw)

    def feed(self, channel: str, event: Event | None = None, **raw: Any) -> Work:
        work = self.work()
        work.handle(self.record(channel, event, **raw))
        self.commit(work)
        return work

    def commit(self, work: Work) -> list[Outgoing]:
        """Write the work's history to the fake log, take its snapshots, apply it."""
        positions: dict[str, tuple[int, int]] = {}
        for out in work.history:
            assert out.workflow_id is not None
            assert out.value is not None
            self.history.append(MAPPER.decode(out.value, out.headers))  # type: ignore[arg-type]
            first = positions.get(out.workflow_id, (self.log_end, 0))[0]
            positions[out.workflow_id] = (first, self.log_end)
            self.log_end += 1
        snapshots = work.snapshots(positions)
        for out in snapshots:
            decoded = MAPPER.decode(out.value, out.headers) if out.value is not None else None
            if isinstance(decoded, WorkflowSnapshotChunk):
                self.chunks.append(decoded)
                continue
            if decoded is None and CHUNK_KEY_SEPARATOR.encode() in (out.key or b""):
                self.dropped_chunks.append(out.key or b"")
                continue
            assert decoded is None or isinstance(decoded, WorkflowSnapshot)
            self.snapshots.append(decoded)
        self.messages.extend(work.messages)
        work.apply()
        return snapshots

    def sent(self, kind: type[Event]) -> list[Any]:
        return [
            m
            for m in (MAPPER.decode(o.value, o.headers) for o in self.messages if o.value)
            if isinstance(m, kind)
        ]

    @property
    def state(self) -> WorkflowState:
        """The workflow in memory, or (finished, out of memory) as its last snapshot holds it."""
        tracked = self.partition.workflows.get(WID)
        if tracked is not None:
            return tracked.state
        assert WID in self.partition.ended
        last = [s for s in self.snapshots if s is not None and s.workflow_id == WID][-1]
        return WorkflowState.from_snapshot_state(last.state)


def plan_created(*tasks: TaskSpec, workflow_id: str = WID) -> PlanCreated:
    return PlanCreated(
        **meta(CLIENT, correlation_id="req-1", occurred_at=T0),
        workflow_id=workflow_id,
        request_id="req-1",
        plan=ExecutionPlan(plan_id="p", workflow_type="dag", tasks=tasks),
    )


def spec(task_id: str, *deps: str, timeout: float | None = None) -> TaskSpec:
    return TaskSpec(
        task_id=task_id,
        name=task_id,
        depends_on=deps,
        timeout_seconds=timeout,
        retry=RetryPolicy(max_attempts=2, jitter=0.0),
    )


def result(kind: type[TaskStarted | TaskCompleted], ready: TaskReady) -> Event:
    return kind(
        **meta(CLIENT, causation=ready, occurred_at=T0),
        workflow_id=ready.workflow_id,
        task_id=ready.task_id,
        attempt=ready.attempt,
        agent_id="agent-1",
    )


def started_state(status: str = "running", *, tasks: int = 1) -> WorkflowState:
    plan = plan_created(*(spec(f"t{i}" if tasks > 1 else "a") for i in range(tasks)))
    started = WorkflowStarted(
        **meta(ME, causation=plan, occurred_at=T0),
        workflow_id=WID,
        request_id="req-1",
        plan=plan.plan,
        sequence=1,
    )
    state = fold([started])
    assert state is not None
    if status != "running":
        state = state.model_copy(update={"status": status, "ended_at": T0})
    return state


def tracked(state: WorkflowState, since: int = 0, *, snapshotted: bool = True) -> Tracked:
    return Tracked(state, since_snapshot=since, snapshotted=snapshotted)


# -- the happy path ----------------------------------------------------------------------------


def test_a_plan_starts_the_workflow_dispatches_and_snapshots() -> None:
    """PlanCreated → history (started, scheduled) on partition p, a TaskReady, a snapshot that
    records the offset of the last history event, and the state in the partition."""
    h = Harness()
    work = h.feed("plans", plan_created(spec("a"), spec("b", "a")))
    assert [e.type for e in h.history] == ["workflow.started", "task.scheduled"]
    assert all(o.partition == h.partition.number for o in work.history)
    assert [(r.task_id, r.attempt) for r in h.sent(TaskReady)] == [("a", 1)]
    (snapshot,) = h.snapshots
    assert snapshot is not None
    assert (snapshot.history_sequence, snapshot.history_offset) == (2, 1)
    assert WorkflowState.from_snapshot_state(snapshot.state) == h.state
    assert h.partition.workflows[WID].last_offset == 1
    assert h.partition.workflows[WID].snapshotted


def test_nothing_changes_before_apply() -> None:
    h = Harness()
    work = h.work()
    work.handle(h.record("plans", plan_created(spec("a"))))
    assert WID not in h.partition.workflows
    work.discard()
    assert WID not in h.partition.workflows


def test_duplicates_have_no_effect() -> None:
    """A redelivered plan or result records nothing and dispatches nothing."""
    h = Harness()
    created = plan_created(spec("a"), spec("b", "a"))
    h.feed("plans", created)
    (ready,) = h.sent(TaskReady)
    h.feed("tasks.results", result(TaskCompleted, ready))
    before = (len(h.history), len(h.messages), h.state)
    h.feed("plans", created)
    h.feed("tasks.results", result(TaskCompleted, ready))
    assert (len(h.history), len(h.messages), h.state) == before


def test_snapshots_are_bounded_by_every_n_events() -> None:
    """A ten-task chain writes a snapshot at the start, every 4 events, and at the end."""
    h = Harness(every=4)
    tasks = [spec(f"t{i}", *([f"t{i - 1}"] if i else [])) for i in range(10)]
    h.feed("plans", plan_created(*tasks))
    for _ in range(10):
        ready = h.sent(TaskReady)[-1]
        h.feed("tasks.results", result(TaskCompleted, ready))
    assert h.state.status == "completed"
    sequences = [s.history_sequence for s in h.snapshots if s is not None]
    assert len(h.history) == h.state.sequence == 22
    assert len(sequences) < len(h.history) / 2
    assert sequences[0] == 2
    assert sequences[-1] == 22
    assert all(b - a <= 4 + 2 for a, b in itertools.pairwise(sequences))


def test_a_snapshot_too_large_for_one_record_is_written_in_chunks() -> None:
    """Over max_event_bytes the state goes in chunks before the snapshot naming them; the
    chunks join back to the state, each is under the limit, and the next snapshot tombstones
    the chunks of the one it replaces."""
    tasks = [spec(f"t{i}") for i in range(60)]
    created = plan_created(*tasks)
    limit = len(MAPPER.encode(created).value) + 5_000
    mapper = Mapper(max_event_bytes=limit)
    h = Harness(mapper=mapper)
    h.policy = SnapshotPolicy(1, per_task=0)
    h.feed("plans", created)
    (head,) = h.snapshots
    assert head is not None
    assert head.chunks > 1
    assert head.state == {}
    assert head.snapshot_id is not None
    assert [c.index for c in h.chunks] == list(range(head.chunks))
    assert all(len(mapper.encode(c).value) <= limit for c in h.chunks)
    joined = pydantic_core.from_json("".join(c.data for c in h.chunks))
    assert WorkflowState.from_snapshot_state(joined) == h.state
    assert h.partition.workflows[WID].chunks is not None
    first = head
    h.chunks.clear()
    ready = h.sent(TaskReady)[0]
    h.feed("tasks.results", result(TaskCompleted, ready))
    second = h.snapshots[-1]
    assert second is not None
    assert second.snapshot_id != first.snapshot_id
    assert {c.snapshot_id for c in h.chunks} == {second.snapshot_id}
    assert first.snapshot_id is not None
    assert h.dropped_chunks == [
        chunk_key(WID, first.snapshot_id, i).encode() for i in range(first.chunks)
    ]


def test_forgetting_a_chunked_workflow_tombstones_its_chunks() -> None:
    """After the grace period the workflow's key and every chunk of its snapshot are deleted."""
    h = Harness(mapper=Mapper(max_event_bytes=4_000), grace=10)
    h.feed("plans", plan_created(*(spec(f"t{i}") for i in range(5))))
    h.feed("commands", CancelWorkflow(**meta(CLIENT, correlation_id="c"), workflow_id=WID))
    head = h.snapshots[-1]
    assert head is not None
    assert head.status == "cancelled"
    assert head.snapshot_id is not None
    h.clock.now = T0 + timedelta(hours=1)
    work = h.work()
    work.tick(WID)
    h.commit(work)
    deleted = [m.key for m in work.messages if m.value is None]
    assert deleted == [
        WID.encode(),
        *(chunk_key(WID, head.snapshot_id, i).encode() for i in range(head.chunks)),
    ]


def test_without_transactions_a_new_workflow_is_marked_before_its_history() -> None:
    """The at-least-once path writes a start marker pointing at the partition's end first, so
    history written just before a crash is still found by the rebuild."""
    h = Harness()
    h.partition.log_end = 12
    work = h.work()
    work.handle(h.record("plans", plan_created(spec("a"))))
    (marker,) = [MAPPER.decode(o.value, o.headers) for o in work.markers() if o.value]
    assert isinstance(marker, WorkflowSnapshot)
    assert (marker.history_sequence, marker.history_offset, marker.workflow_id) == (0, 11, WID)
    h.log_end = 12
    (snapshot,) = h.commit(work)
    assert MAPPER.decode(snapshot.value, snapshot.headers).history_sequence == 2  # type: ignore[attr-defined]
    assert h.partition.log_end == 14
    assert h.partition.workflows[WID].snapshotted


# -- what goes to the dead-letter topic --------------------------------------------------------


def dead(h: Harness) -> list[DeadLetter]:
    return h.sent(DeadLetter)


REF = PayloadRef(payload_id="plan-1", size=10, sha256="0" * 64, chunks=1)


def test_a_plan_by_reference_starts_the_workflow_and_is_recorded_by_reference() -> None:
    """The plan ``prepare`` fetched runs; workflow.started goes to the history with only the
    reference (so it stays small), and the state holds the plan."""
    h = Harness()
    inline = plan_created(spec("a"))
    assert inline.plan is not None
    h.plans[REF.payload_id] = inline.plan
    h.feed("plans", inline.model_copy(update={"plan": None, "plan_ref": REF}))
    started = h.history[0]
    assert isinstance(started, WorkflowStarted)
    assert (started.plan, started.plan_ref) == (None, REF)
    assert h.state.plan == inline.plan
    assert [r.task_id for r in h.sent(TaskReady)] == ["a"]


def test_a_plan_by_reference_that_cannot_be_read_is_dead_lettered_with_why() -> None:
    h = Harness()
    h.plans[REF.payload_id] = PayloadCorrupt("payload plan-1: 3 bytes with sha256 …")
    h.feed("plans", plan_created(spec("a")).model_copy(update={"plan": None, "plan_ref": REF}))
    (letter,) = dead(h)
    assert letter.error_class == "PayloadCorrupt"
    assert "sha256" in letter.error_message
    assert not h.history


def test_undecodable_bytes_are_dead_lettered_with_their_origin() -> None:
    h = Harness()
    h.feed("plans", key=WID.encode(), value=b"\x00garbage")
    (letter,) = dead(h)
    assert (letter.original_topic, letter.original_offset) == (f"{PREFIX}plans", 0)
    assert letter.error_class == "InvalidEvent"
    out = h.messages[-1]
    headers = dict(out.headers)
    assert headers[HEADER_ERROR_CLASS] == b"InvalidEvent"
    assert headers[HEADER_ORIGINAL_TOPIC] == f"{PREFIX}plans".encode()
    assert headers[HEADER_ORIGINAL_OFFSET] == b"0"
    assert not h.history
    assert WID not in h.partition.workflows


def test_events_on_the_wrong_topic_key_or_partition_are_dead_lettered() -> None:
    h = Harness()
    h.feed("plans", plan_created(spec("a")))
    (ready,) = h.sent(TaskReady)
    h.feed("plans", result(TaskCompleted, ready))
    h.feed("tasks.results", result(TaskCompleted, ready), key=b"someone-else")
    other = (h.partition.number + 1) % PARTITIONS
    h.feed("tasks.results", result(TaskCompleted, ready), partition=other)
    reasons = [d.error_message for d in dead(h)]
    assert [d.error_class for d in dead(h)] == ["MisplacedInput"] * 3
    assert "does not belong on" in reasons[0]
    assert "is not the workflow id" in reasons[1]
    assert "hashes to partition" in reasons[2]
    assert h.state.tasks["a"].status == "ready"


def test_a_result_for_an_unknown_workflow_is_dead_lettered(
    logs: list[MutableMapping[str, Any]],
) -> None:
    """DecisionError → dead letter, logged with the input's workflow and correlation ids."""
    h = Harness()
    h.feed("plans", plan_created(spec("a")))
    (ready,) = h.sent(TaskReady)
    h.feed("plans", plan_created(spec("a"), workflow_id="wf-other"), partition=99)  # ignored
    stray = result(TaskCompleted, ready).model_copy(update={"workflow_id": "wf-unknown"})
    h.feed(
        "tasks.results",
        stray,
        key=b"wf-unknown",
        partition=partition_for("wf-unknown", PARTITIONS),
    )
    assert dead(h)[-1].error_class == "DecisionError"
    assert "unknown" in dead(h)[-1].error_message
    (warning,) = [e for e in logs if e.get("error_class") == "DecisionError"]
    assert warning["workflow_id"] == "wf-unknown"
    assert warning["correlation_id"] == stray.correlation_id
    assert warning["error_class"] == "DecisionError"


# -- commands ------------------------------------------------------------------------------------


def test_commands_are_answered_on_replies() -> None:
    """A command is recorded and answered ok; one that cannot apply is answered with the
    refusal under the command's correlation id, and is no dead letter (it was processed)."""
    h = Harness()
    h.feed("plans", plan_created(spec("a")))
    h.feed("commands", PauseWorkflow(**meta(CLIENT, correlation_id="call-1"), workflow_id=WID))
    assert h.history[-1].type == "workflow.paused"
    unknown = "wf-nobody"
    h.feed(
        "commands",
        PauseWorkflow(**meta(CLIENT, correlation_id="call-2"), workflow_id=unknown),
        partition=partition_for(unknown, PARTITIONS),
    )
    ok, failed = h.sent(Reply)
    assert (ok.correlation_id, ok.ok, ok.result["status"]) == ("call-1", True, "paused")
    assert (failed.correlation_id, failed.ok) == ("call-2", False)
    assert failed.error is not None
    assert failed.error.kind == "DecisionError"
    assert dead(h) == []


# -- timers ------------------------------------------------------------------------------------


def tick_due(h: Harness) -> Work:
    work = h.work()
    for workflow_id in h.partition.timers.pop_due(h.clock.now):
        work.tick(workflow_id)
    return work


def test_a_due_timeout_is_recorded_and_the_agent_told() -> None:
    h = Harness()
    h.feed("plans", plan_created(spec("a", timeout=5)))
    (ready,) = h.sent(TaskReady)
    h.feed("tasks.results", result(TaskStarted, ready))
    assert h.partition.timers.next_at() == T0 + timedelta(seconds=5)
    h.clock.now = T0 + timedelta(seconds=4)
    assert tick_due(h).empty
    h.clock.now = T0 + timedelta(seconds=6)
    h.commit(tick_due(h))
    assert any(isinstance(e, TaskTimedOut) for e in h.history)
    assert h.state.tasks["a"].status in {"retrying", "ready"}


def test_an_aborted_tick_puts_its_timer_back() -> None:
    h = Harness()
    h.feed("plans", plan_created(spec("a", timeout=5)))
    h.feed("tasks.results", result(TaskStarted, h.sent(TaskReady)[0]))
    h.clock.now = T0 + timedelta(seconds=6)
    tick_due(h).discard()
    assert h.partition.timers.next_at() == T0 + timedelta(seconds=5)


def test_a_finished_workflow_is_tombstoned_after_its_grace_period() -> None:
    h = Harness(grace=30)
    h.feed("plans", plan_created(spec("a")))
    h.feed("tasks.results", result(TaskCompleted, h.sent(TaskReady)[0]))
    assert h.state.is_final
    ended = h.state.ended_at
    assert ended is not None
    assert h.partition.timers.next_at() == ended + timedelta(seconds=30)
    h.clock.now = ended + timedelta(seconds=31)
    h.commit(tick_due(h))
    tombstone = h.messages[-1]
    assert (tombstone.channel, tombstone.key, tombstone.value) == (
        "workflow.state",
        WID.encode(),
        None,
    )
    assert tombstone.partition == h.partition.number
    assert WID not in h.partition.workflows
    assert WID not in h.partition.ended
    assert h.partition.timers.next_at() is None


def test_a_finished_workflow_leaves_memory_once_its_final_snapshot_is_written() -> None:
    """Only its end time stays (for the tombstone); the final snapshot holds the rest."""
    h = Harness()
    h.feed("plans", plan_created(spec("a")))
    work = h.work()
    work.handle(h.record("tasks.results", result(TaskCompleted, h.sent(TaskReady)[0])))
    assert WID in h.partition.workflows  # until the round (and its snapshot) is written
    h.commit(work)
    assert WID not in h.partition.workflows
    assert h.partition.ended[WID].ended_at == h.state.ended_at
    assert h.snapshots[-1] is not None
    assert h.snapshots[-1].status == "completed"


def test_an_input_for_a_finished_workflow_out_of_memory_meets_it_read_back() -> None:
    """A repeated plan for a finished workflow restored from Kafka starts nothing, and the
    workflow leaves memory again after the round; not restored (Kafka unreadable), the input is
    refused rather than taken for a new workflow."""
    h = Harness()
    created = plan_created(spec("a"))
    h.feed("plans", created)
    h.feed("tasks.results", result(TaskCompleted, h.sent(TaskReady)[0]))
    finished = h.state
    history = len(h.history)
    h.partition.restore(WID, tracked(finished))
    h.feed("plans", created)
    assert len(h.history) == history
    assert WID not in h.partition.workflows
    assert WID in h.partition.ended
    h.feed("plans", created)
    assert len(h.history) == history
    (letter,) = dead(h)
    assert "could not be read back" in letter.error_message


def test_cancelling_tells_no_agent_about_a_task_never_assigned() -> None:
    """Sanity check of the wiring of ``dispatches``: CancelWorkflow records TaskCancelled."""
    from mesh.events import CancelWorkflow

    h = Harness()
    h.feed("plans", plan_created(spec("a")))
    h.feed("commands", CancelWorkflow(**meta(CLIENT, correlation_id="c"), workflow_id=WID))
    assert any(isinstance(e, TaskCancelled) for e in h.history)
    assert h.state.status == "cancelled"
