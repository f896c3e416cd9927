"""One transaction's worth of work on one partition: inputs and ticks in, records out. No I/O.

The manager feeds a :class:`Work` the records it fetched for partition ``p`` and the timers due
on it; the work decodes each record, calls ``decide`` on the state as the earlier inputs left
it, folds the resulting history events with ``fold`` and asks ``dispatches`` what to send. It
collects what to produce (history, dispatches, replies, dead letters, tombstones) and the new
states, but changes nothing until :meth:`Work.apply`, so a transaction that aborts leaves the
partition exactly as it was. An input that cannot be handled goes to the dead-letter topic
instead, and nothing it might have produced is kept; a command the decider refuses (no such
workflow or task) is answered with the refusal, which is what its sender waits for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

import structlog
from pydantic import JsonValue

from mesh.errors import DecisionError, MeshError, MisplacedInput, PayloadError, PayloadMissing
from mesh.events import (
    CancelWorkflow,
    Event,
    ExecutionPlan,
    Mapper,
    PauseWorkflow,
    PlanCreated,
    Producer,
    Reply,
    ReplyError,
    ResumeWorkflow,
    RetryTask,
    WorkflowEvent,
    WorkflowStarted,
    meta,
)
from mesh.kafka.dlq import dead_letter
from mesh.kafka.partitions import partition_for
from mesh.kafka.produce import Outgoing
from mesh.log import bind_event_context, get_logger
from mesh.workflows import DecideContext, Tick, WorkflowInput, decide_and_fold, dispatches
from mesh.workflows.runtime._partition import Chunked, Partition, Tracked, due_at
from mesh.workflows.runtime._records import (
    COMMANDS,
    COMPONENT,
    IGNORED,
    INPUTS,
    Counts,
    InputRecord,
    channel_of,
)
from mesh.workflows.runtime._snapshots import (
    SnapshotPolicy,
    marker_of,
    snapshot_records,
)

_AWAITED = (PauseWorkflow, ResumeWorkflow, CancelWorkflow, RetryTask)
"""Commands whose sender waits for the reply (``mesh pause`` …); a signal is only published."""

_STALLED_TICK = timedelta(seconds=1)
_FAILED_TICK = timedelta(seconds=30)

log = get_logger("mesh.workflows.runtime")


class Work:
    """The changes of one transaction on one partition; see the module docstring."""

    def __init__(
        self,
        partition: Partition,
        *,
        mapper: Mapper,
        me: Producer,
        policy: SnapshotPolicy,
        channels: Mapping[str, str],
        partitions: int,
        clock: Callable[[], datetime],
        plans: Mapping[str, ExecutionPlan | PayloadError] | None = None,
    ) -> None:
        self.partition = partition
        self._plans = plans or {}
        self._mapper = mapper
        self._me = me
        self._policy = policy
        self._channels = channels
        self._partitions = partitions
        self._clock = clock
        self._before: dict[str, Tracked | None] = {}
        self._after: dict[str, Tracked | None] = {}
        self._ticked: set[str] = set()
        self._failed_ticks: set[str] = set()
        self._log_end = 0
        self.history: list[Outgoing] = []
        """History events for ``workflow.events`` partition ``p``, in order."""
        self.decisions: list[int] = []
        """Where each decision's events end in ``history`` (without transactions a decision
        is written as a whole or not at all: see ``_produce``)."""
        self.messages: list[Outgoing] = []
        """Dispatches, replies, dead letters and tombstones."""
        self.counts = Counts()

    @property
    def empty(self) -> bool:
        """True when there is nothing to produce and no state to change."""
        return not (self.history or self.messages or self._after)

    def current(self, workflow_id: str) -> Tracked | None:
        """The workflow as this work has left it so far."""
        if workflow_id in self._after:
            return self._after[workflow_id]
        return self.partition.workflows.get(workflow_id)

    # -- inputs --------------------------------------------------------------------------------

    def handle(self, record: InputRecord) -> None:
        """Decide on one input record, or dead-letter it."""
        self.counts.inputs += 1
        try:
            event = self._mapper.decode_record(record)  # a keyless record is refused first
            self._check_placement(record, event)
            if isinstance(event, PlanCreated) and event.plan is None:
                event = self._with_plan(event)
        except Exception as exc:  # undecodable, invalid or misplaced: nothing to decide on
            self._dead(record, exc)
            return
        channel = self._channels[record.topic]
        if isinstance(event, IGNORED.get(channel, ())):
            return
        assert isinstance(event, WorkflowEvent)
        bind_event_context(workflow_id=event.workflow_id, correlation_id=event.correlation_id)
        try:
            command: WorkflowInput = event  # type: ignore[assignment]  # checked by INPUTS
            recorded = self._decide(command, self._clock())
        except Exception as exc:
            if not isinstance(exc, MeshError):
                log.exception("input failed unexpectedly", event_type=event.type)
            if isinstance(event, _AWAITED) and isinstance(exc, DecisionError):
                # A refusal (no such workflow or task) is the answer its sender waits for: the
                # record was processed, so it is no dead letter.
                log.info("command refused", command=event.type, reason=str(exc))
                self._reply(event, error=exc)
                return
            self._dead(record, exc)
            if isinstance(event, COMMANDS):
                self._reply(event, error=exc)
        else:
            if isinstance(event, COMMANDS):
                self._reply(event, recorded=len(recorded))
        finally:
            structlog.contextvars.unbind_contextvars("workflow_id", "correlation_id")

    def _with_plan(self, event: PlanCreated) -> PlanCreated:
        """``event`` with the plan it refers to (fetched by the manager's ``prepare``)."""
        assert event.plan_ref is not None  # a PlanCreated has a plan or a reference
        found = self._plans.get(event.plan_ref.payload_id)
        if isinstance(found, PayloadError):
            raise found
        if found is None:
            raise PayloadMissing(
                f"plan of workflow {event.workflow_id} (payload {event.plan_ref.payload_id}) "
                "was not fetched",
                retriable=True,
            )
        return event.model_copy(update={"plan": found})

    def tick(self, workflow_id: str) -> None:
        """Fire a workflow's due timers; forget a finished one whose grace period is over."""
        self._ticked.add(workflow_id)
        tracked = self.current(workflow_id)
        now = self._clock()
        if tracked is None:
            ended = self.partition.ended.get(workflow_id)
            due = ended is not None and ended.ended_at + self.partition.grace <= now
            if ended is not None and due and workflow_id not in self._after:
                self._forget(workflow_id, snapshotted=True, chunks=ended.chunks)
            return
        state = tracked.state
        if state.is_final:
            at = due_at(tracked, self.partition.grace)
            if at is not None and at <= now:
                self._forget(workflow_id, snapshotted=tracked.snapshotted, chunks=tracked.chunks)
            return
        bind_event_context(workflow_id=workflow_id, correlation_id=state.correlation_id)
        try:
            self._decide(Tick(workflow_id, now), now)
        except Exception:
            log.exception("timer failed; trying again later")
            self._failed_ticks.add(workflow_id)
        finally:
            structlog.contextvars.unbind_contextvars("workflow_id", "correlation_id")

    def _decide(self, command: WorkflowInput, now: datetime) -> list[WorkflowEvent]:
        workflow_id = command.workflow_id
        tracked = self.current(workflow_id)
        if tracked is None and workflow_id in self.partition.ended:
            raise DecisionError(
                f"workflow {workflow_id} has finished and could not be read back from Kafka"
            )
        state = tracked.state if tracked is not None else None
        ctx = DecideContext(now=now, producer=self._me)
        events, new_state = decide_and_fold(state, command, ctx)
        if not events:
            return []
        assert new_state is not None  # folding at least one event yields a state
        number = self.partition.number
        history = [
            Outgoing.of(
                "workflow.events",
                # a plan by reference is recorded by reference: the history stays small
                self._mapper.encode(e.wire_form() if isinstance(e, WorkflowStarted) else e),
                partition=number,
                workflow_id=workflow_id,
            )
            for e in events
        ]
        messages = [
            Outgoing.of(channel_of(m), self._mapper.encode(m))
            for m in dispatches(new_state, events, ctx)
        ]
        # Everything encoded: only now does the input's outcome become part of the work.
        if tracked is None:
            staged = Tracked(new_state, since_snapshot=len(events))
        else:
            staged = replace(
                tracked, state=new_state, since_snapshot=tracked.since_snapshot + len(events)
            )
        self._stage(workflow_id, staged)
        self.history.extend(history)
        self.decisions.append(len(self.history))
        self.messages.extend(messages)
        self.counts.events += len(events)
        if new_state.is_final and (state is None or not state.is_final):
            log.info("workflow ended", status=new_state.status, events=new_state.sequence)
        elif state is None:
            log.info("workflow started", tasks=len(new_state.tasks))
        return events

    def _check_placement(self, record: InputRecord, event: Event) -> None:
        channel = self._channels[record.topic]
        if not isinstance(event, INPUTS[channel] + IGNORED.get(channel, ())):
            raise MisplacedInput(f"{event.type} does not belong on {record.topic}")
        key = record.key.decode(errors="replace") if record.key is not None else None
        # Inputs are keyed by workflow, including those whose own subject is an agent (the
        # Agent Manager's copy of a TaskAssigned on tasks.results).
        expected = event.workflow_id if isinstance(event, WorkflowEvent) else event.key
        if key != expected:
            raise MisplacedInput(
                f"record key {key!r} is not the workflow id {expected!r} of the {event.type}"
            )
        home = partition_for(expected, self._partitions)
        if home != record.partition:
            raise MisplacedInput(
                f"workflow {expected} hashes to partition {home}, but the record is on "
                f"partition {record.partition}; produce with the default (murmur2) partitioner"
            )

    # -- outputs -------------------------------------------------------------------------------

    def _stage(self, workflow_id: str, tracked: Tracked | None) -> None:
        if workflow_id not in self._before:
            self._before[workflow_id] = self.partition.workflows.get(workflow_id)
        self._after[workflow_id] = tracked

    def _forget(self, workflow_id: str, *, snapshotted: bool, chunks: Chunked | None) -> None:
        if snapshotted:
            keys = [workflow_id.encode()]
            if chunks is not None:
                keys += chunks.keys(workflow_id)
            self.messages.extend(
                Outgoing("workflow.state", key, None, partition=self.partition.number)
                for key in keys
            )
            self.counts.tombstones += 1
        self._stage(workflow_id, None)
        log.info("finished workflow forgotten", workflow_id=workflow_id)

    def _dead(self, record: InputRecord, error: BaseException) -> None:
        letter = dead_letter(
            record,
            error,
            COMPONENT,
            producer=self._me,
            max_event_bytes=self._mapper.max_event_bytes,
        )
        self.messages.append(Outgoing.of("dlq", letter))
        self.counts.dead_letters += 1

    def _reply(
        self, command: WorkflowEvent, *, recorded: int = 0, error: BaseException | None = None
    ) -> None:
        """Answer a command on ``replies`` (keyed by its correlation id) in the same transaction."""
        tracked = self.current(command.workflow_id)
        if error is None:
            status = tracked.state.status if tracked is not None else None
            result: dict[str, JsonValue] = {
                "workflow_id": command.workflow_id,
                "status": status,
                "recorded": recorded,
            }
            reply = Reply(**meta(self._me, causation=command), ok=True, result=result)
        else:
            retriable = isinstance(error, MeshError) and error.retriable
            failure = ReplyError(
                kind=type(error).__name__, message=str(error) or "failed", retriable=retriable
            )
            reply = Reply(**meta(self._me, causation=command), ok=False, error=failure)
        self.messages.append(Outgoing.of("replies", self._mapper.encode(reply)))

    def markers(self) -> list[Outgoing]:
        """Start markers for the workflows this work starts, to write before their history
        (the at-least-once path; see ``_snapshots``). They point at the partition's end as it
        was, which is at or before where their history will land."""
        out: list[Outgoing] = []
        for workflow_id, after in self._after.items():
            if after is None or self._before.get(workflow_id) is not None:
                continue
            marker = marker_of(
                workflow_id, after.state.correlation_id, self.partition.log_end, self._me
            )
            out.append(
                Outgoing.of(
                    "workflow.state", self._mapper.encode(marker), partition=self.partition.number
                )
            )
            self._after[workflow_id] = replace(after, snapshotted=True)
        return out

    def snapshots(self, positions: Mapping[str, tuple[int, int]]) -> list[Outgoing]:
        """Snapshot records for the touched workflows, now that their history has offsets.

        ``positions`` maps a workflow id to the offsets of its first and last history record
        produced by this work.
        """
        out: list[Outgoing] = []
        if positions:
            self._log_end = max(last for _, last in positions.values()) + 1
        for workflow_id, after in self._after.items():
            if after is None:
                continue
            before = self._before.get(workflow_id)
            if workflow_id in positions:
                first, last = positions[workflow_id]
                after = replace(
                    after,
                    last_offset=last,
                    first_offset=first if before is None else after.first_offset,
                )
            if self._policy.due(before, after, self._clock()):
                after = self._snapshot(after, out)
            self._after[workflow_id] = after
        return out

    def _snapshot(self, after: Tracked, out: list[Outgoing]) -> Tracked:
        """Add the workflow's snapshot (chunked if large, then tombstones for the chunks of the
        one it replaces) to ``out``; the result says what ``workflow.state`` now holds."""
        number = self.partition.number
        records, chunks = snapshot_records(self._mapper, after.state, after.last_offset, self._me)
        out.extend(Outgoing.of("workflow.state", r, partition=number) for r in records)
        if after.chunks is not None:
            workflow_id = after.state.workflow_id
            out.extend(
                Outgoing("workflow.state", key, None, partition=number)
                for key in after.chunks.keys(workflow_id)
            )
        self.counts.snapshots += 1
        return replace(
            after,
            since_snapshot=0,
            snapshotted=True,
            chunks=chunks,
            snapshot_at=self._clock(),
        )

    def apply(self) -> None:
        """Make the work's states the partition's (after the transaction committed)."""
        partition = self.partition
        for workflow_id, after in self._after.items():
            partition.put(workflow_id, after)
        partition.log_end = max(partition.log_end, self._log_end)
        self._restore_timers(stalled_after=self._clock())
        partition.settle()

    def discard(self) -> None:
        """Give up the work (the transaction aborted): only the timers it took are put back."""
        self._restore_timers(stalled_after=None)
        self.partition.settle()

    def _restore_timers(self, *, stalled_after: datetime | None) -> None:
        partition = self.partition
        for workflow_id in self._ticked:
            if stalled_after is not None and workflow_id in self._after:
                continue  # applied: its timer was set from its new state
            tracked = partition.workflows.get(workflow_id)
            ended = partition.ended.get(workflow_id)
            if tracked is not None:
                partition.put(workflow_id, tracked)
            elif ended is not None:  # its tombstone is still to be written
                partition.timers.set(workflow_id, ended.ended_at + partition.grace)
            else:
                continue
            at = partition.timers.get(workflow_id)
            if stalled_after is not None and at is not None and at <= stalled_after:
                # The tick changed nothing (or failed), yet the state says it is due: wait
                # rather than spin on it.
                pause = _FAILED_TICK if workflow_id in self._failed_ticks else _STALLED_TICK
                partition.timers.set(workflow_id, stalled_after + pause)
