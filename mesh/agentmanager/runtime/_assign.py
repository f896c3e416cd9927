"""Assignment: one owned ``tasks.ready`` partition's waiting attempts, and the round that places
them. No I/O but the round's own write.

Per round and partition (:meth:`Assigner.decide`), inside the partition's transaction:

- new ``TaskReady`` records join the waiting attempts (an attempt the registry already knows as
  assigned — by the partition's previous owner — is skipped; an unreadable record is
  dead-lettered);
- with the resource gate on, an attempt is placed only once its allocation exists; a denied
  one is failed instead (see :mod:`mesh.agentmanager._gate`);
- placement by the :class:`~mesh.agentmanager.Placer` (capability matching and a strategy),
  skipping agents that are unhealthy, offline, draining or behind an open breaker; the
  assignment goes to ``tasks.assigned`` keyed by the agent id (only that agent acts on it)
  and, the same event, to ``tasks.results`` keyed by the workflow id (so the Workflow Manager
  records it in order with the attempt's results);
- ``TaskWaiting`` on ``tasks.results`` when an attempt cannot be placed, or was placed
  elsewhere because its best agent's breaker is open — once per attempt and reason;
- ``TaskReassigned`` for every open attempt, in this partition's workflows, of an agent silent
  past the missed-heartbeat threshold: the partition's owner sends it, so exactly one replica
  does (a zombie is fenced);
- the committed offset is the oldest attempt still waiting (else past the last record), so a
  crash re-reads what waits rather than losing it.

Nothing changes until the round is applied, so an aborted round leaves the partition as it was.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaProducer, TopicPartition

from mesh.agentmanager._gate import (
    UNANSWERED_REASON,
    UNANSWERED_SECONDS,
    ended_notice,
    queued_notice,
    queued_reason,
    unanswered_notice,
)
from mesh.agentmanager._matching import (
    AgentState,
    Placer,
    Requirements,
    Strategy,
    why_not,
)
from mesh.agentmanager._registry import AttemptKey
from mesh.agentmanager.runtime._view import View
from mesh.errors import EventError
from mesh.events import (
    Mapper,
    Producer,
    ResourceDenied,
    ResourceQueued,
    ResourceReleased,
    Resources,
    TaskAssigned,
    TaskFailed,
    TaskReady,
    TaskReassigned,
    TaskWaiting,
    WaitingReason,
    covers,
    meta,
)
from mesh.kafka.dlq import dead_letter
from mesh.kafka.partitions import partition_for
from mesh.kafka.produce import Outgoing, send_all, wait_all
from mesh.kafka.records import ConsumedRecord
from mesh.log import get_logger
from mesh.observe import metrics
from mesh.resources import allocation_id_for
from mesh.settings import Settings

COMPONENT = "agent-manager"
REPLACE_EVERY_SECONDS = 1.0
"""Run placement this often even if nothing changed (health moves with the clock)."""

log = get_logger("mesh.agentmanager")


@dataclass
class Pending:
    """An attempt read from ``tasks.ready`` and not placed yet."""

    offset: int
    ready: TaskReady
    record: ConsumedRecord
    since: float = field(default_factory=time.monotonic)
    announced: bool = False
    noted: str | None = None
    """The resource queue reason already published for this attempt (a TaskWaiting)."""
    gated: bool = False
    """The last look found it waiting for the resource gate (no allocation yet): it is looked
    at again when its allocation changes, not on every pass."""
    allocation_id: str = ""

    def __post_init__(self) -> None:
        ready = self.ready
        self.allocation_id = allocation_id_for(ready.workflow_id, ready.task_id, ready.attempt)

    @property
    def key(self) -> AttemptKey:
        return (self.ready.workflow_id, self.ready.task_id, self.ready.attempt)


@dataclass
class Owned:
    """One owned ``tasks.ready`` partition: what waits, what is committed."""

    tp: TopicPartition
    committed: int | None
    next_offset: int | None
    """Past the last record taken (the committed offset before any)."""
    pending: dict[int, Pending] = field(default_factory=dict)
    """The attempts waiting, by offset (oldest first)."""
    by_allocation: dict[str, Pending] = field(default_factory=dict)
    """The same attempts by allocation id, to find the one an allocator answer concerns."""
    ungated: set[int] = field(default_factory=set)
    """Offsets of the attempts that wait for an agent, not for the gate: looked at again
    whenever the agents move."""
    dirty: set[str] = field(default_factory=set)
    """Allocations whose gate record changed since a round last looked at their attempt."""
    last_round: float = 0.0
    seen: int = -1
    """The registry version the last round placed against."""
    awaiting: bool = False
    """An attempt waits for the allocator's answer: the loop looks again within milliseconds
    (a look that finds no allocation moved costs next to nothing)."""

    def keep(self, pending: Pending) -> None:
        self.pending[pending.offset] = pending
        self.by_allocation[pending.allocation_id] = pending
        self.flag(pending, gated=pending.gated)

    def flag(self, pending: Pending, *, gated: bool) -> None:
        pending.gated = gated
        if gated:
            self.ungated.discard(pending.offset)
        elif pending.offset in self.pending:
            self.ungated.add(pending.offset)

    def remove(self, pending: Pending) -> None:
        self.pending.pop(pending.offset, None)
        self.by_allocation.pop(pending.allocation_id, None)
        self.ungated.discard(pending.offset)

    def to_look_at(self) -> list[Pending]:
        """What an incremental round looks at: attempts waiting for an agent and those whose
        allocation changed, oldest first."""
        offsets = set(self.ungated)
        offsets.update(
            found.offset for a in self.dirty if (found := self.by_allocation.get(a)) is not None
        )
        return [self.pending[o] for o in sorted(offsets)]

    def reset(self) -> list[Pending]:
        """Forget what waits (to be read again from the committed offset); what was kept."""
        dropped = list(self.pending.values())
        self.pending.clear()
        self.by_allocation.clear()
        self.ungated.clear()
        self.dirty.clear()
        self.awaiting = False
        self.next_offset = self.committed
        return dropped


class Assigner:
    """Decides the rounds of the owned partitions; state a replica can rebuild from Kafka."""

    def __init__(
        self,
        settings: Settings,
        view: View,
        *,
        mapper: Mapper,
        me: Producer,
        strategy: Strategy,
        rng: random.Random,
    ) -> None:
        self.settings = settings
        self.view = view
        self.mapper = mapper
        self.me = me
        self.strategy: Strategy = strategy
        self.rng = rng
        self.owned: dict[int, Owned] = {}
        self.noted: dict[AttemptKey, WaitingReason] = {}
        """The waiting reason last published per attempt still waiting."""
        self.decisions = 0
        """Placement decisions made (assigned or not), for benchmarks and metrics."""
        if view.gate is not None:
            view.gate.track()

    def forget(self, owned: Owned) -> int:
        """Forget what waits in ``owned`` (it is read again, here or by its next owner); how
        many attempts waited."""
        dropped = owned.reset()
        for pending in dropped:
            self.noted.pop(pending.key, None)
        return len(dropped)

    def _route_changes(self) -> None:
        """Mark the waiting attempts whose allocation changed (an answer for an attempt not
        read yet is not kept: a new attempt is always looked at whole)."""
        gate = self.view.gate
        if gate is None:
            return
        for allocation_id in gate.drain():
            for owned in self.owned.values():
                if allocation_id in owned.by_allocation:
                    owned.dirty.add(allocation_id)
                    break

    def due(self, owned: Owned) -> bool:
        """Whether a round without new records could change anything: an answer of the
        allocator about one of its attempts, agents that moved while some wait for an agent,
        or the clock (health, dead agents, notes after a time) once a second."""
        if owned.dirty:
            return True
        if self.view.registry.version != owned.seen and owned.ungated:
            return True
        stale = time.monotonic() - owned.last_round >= REPLACE_EVERY_SECONDS
        return stale and (bool(owned.pending) or bool(self.view.registry.open_attempts()))

    def decide(
        self, owned: Owned, records: Sequence[ConsumedRecord], partitions: int, now: datetime
    ) -> Assignment | None:
        """One round: the new records, the attempts whose allocation moved and those waiting
        for an agent; every waiting attempt once a second (a full round)."""
        self._route_changes()
        if not records and not self.due(owned):
            return None
        started = time.monotonic()
        full = started - owned.last_round >= REPLACE_EVERY_SECONDS
        owned.seen = self.view.registry.version
        if full:
            owned.last_round = started
        work = Assignment(self, owned)
        looked = list(owned.pending.values()) if full else owned.to_look_at()
        work.looked_dirty = set(owned.dirty)
        for record in records:
            work.take(record)
        placer = Placer(self.view.registry.agents(now))
        for pending in (*looked, *work.new):
            work.place(pending, placer)
        work.reassign(placer.states, partitions, now)
        work.watermark = work.oldest_waiting()
        if not records and not work.records and work.watermark in (None, owned.committed):
            work.applied()  # nothing to write, but what was looked at is up to date
            return None  # nothing read, nothing to say: the partition stays as it is
        return work


class Assignment:
    """One round of one partition: a :class:`mesh.kafka.loop.Round`."""

    def __init__(self, assigner: Assigner, owned: Owned) -> None:
        self.assigner = assigner
        self.owned = owned
        self.new: list[Pending] = []
        """Attempts read in this round."""
        self._new_keys: set[AttemptKey] = set()
        self.next_offset = owned.next_offset
        self.gone: list[Pending] = []
        """Attempts of ``owned.pending`` that stop waiting (placed, failed, dead-lettered)."""
        self.waiting: list[Pending] = []
        """Attempts read in this round that wait."""
        self.gated: list[tuple[Pending, bool]] = []
        self.looked_dirty: set[str] = set()
        self.records: list[Outgoing] = []
        self.placed: list[tuple[Pending, TaskAssigned]] = []
        self.notes: dict[AttemptKey, WaitingReason] = {}
        self.queue_notes: list[tuple[Pending, str]] = []
        self.reassigned: list[TaskReassigned] = []
        self.watermark: int | None = None

    # -- deciding --------------------------------------------------------------------------

    def take(self, record: ConsumedRecord) -> None:
        """A new ``tasks.ready`` record: wait for placement, skip it, or dead-letter it."""
        self.next_offset = record.offset + 1
        try:
            event = self.assigner.mapper.decode_record(record)
            if not isinstance(event, TaskReady):
                raise EventError(f"{event.type} does not belong on tasks.ready")
        except EventError as exc:
            self._dead_letter(record, exc)
            return
        pending = Pending(record.offset, event, record)
        if (
            self.assigner.view.registry.is_assigned(pending.key)
            or pending.key in self._new_keys
            or pending.allocation_id in self.owned.by_allocation
        ):
            log.info(
                "task already assigned; skipped",
                workflow_id=event.workflow_id,
                task_id=event.task_id,
                attempt=event.attempt,
            )
            return
        self.new.append(pending)
        self._new_keys.add(pending.key)

    def _wait(self, pending: Pending, *, gated: bool) -> None:
        self.gated.append((pending, gated))
        if pending.offset not in self.owned.pending:
            self.waiting.append(pending)

    def _leave(self, pending: Pending) -> None:
        if pending.offset in self.owned.pending:
            self.gone.append(pending)

    def place(self, pending: Pending, placer: Placer) -> None:
        """Place one waiting attempt, or keep it waiting (saying why once)."""
        allocation_id = None
        if self.assigner.view.gate is not None:
            gated = self._gate(pending)
            if gated is False:
                self._leave(pending)
                return  # denied or ended: failed in this round, never placed
            if gated is None:
                self._wait(pending, gated=True)
                return
            allocation_id = gated
        assigned = self._choose(pending, placer)
        if assigned is None:
            self._wait(pending, gated=False)
            return
        if allocation_id is not None:
            assigned = assigned.model_copy(update={"allocation_id": allocation_id})
        self._leave(pending)
        try:
            encoded = self.assigner.mapper.encode(assigned)
        except EventError as exc:  # the task spec plus envelope no longer fits the size limit
            self._dead_letter(pending.record, exc)
            return
        self.records.append(Outgoing.of("tasks.assigned", encoded))
        self.records.append(Outgoing.of("tasks.results", encoded, workflow_id=assigned.workflow_id))
        self.placed.append((pending, assigned))

    def _choose(self, pending: Pending, placer: Placer) -> TaskAssigned | None:
        assigner = self.assigner
        ready = pending.ready
        requirements = Requirements.of(ready.task)
        if assigner.view.gate is not None:  # the allocator granted them: do not count them twice
            requirements = dataclasses.replace(requirements, resources=Resources())
        assigner.decisions += 1
        chosen = placer.place(requirements, assigner.strategy, assigner.rng)
        if chosen is None:
            kind, reason, ids = why_not(requirements, placer.states.values())
            self._note(pending, kind, reason, ids, placed=False)
            if not pending.announced:
                pending.announced = True
                log.warning(
                    "no agent can take the task; it waits",
                    workflow_id=ready.workflow_id,
                    task_id=ready.task_id,
                    attempt=ready.attempt,
                    reason=reason,
                )
            return None
        agent = chosen.agent
        avoided = sorted(
            a.agent_id
            for a in placer.breaking()
            if a.unavailable() is not None and covers(requirements.required, a.capabilities)
        )
        if avoided:
            why = f"circuit breaker open on {', '.join(avoided)}; placed on {agent.agent_id}"
            self._note(pending, "breaker_open", why, tuple(avoided), placed=True)
        placer.took(agent.agent_id)
        metrics.since(metrics.READY_TO_ASSIGNED, ready.occurred_at)
        return TaskAssigned(
            **meta(assigner.me, causation=ready),
            workflow_id=ready.workflow_id,
            task_id=ready.task_id,
            attempt=ready.attempt,
            agent_id=agent.agent_id,
            task=ready.task,
            deadline=ready.deadline,
        )

    def _gate(self, pending: Pending) -> str | bool | None:
        """The resource gate for one attempt: its allocation id if it may be placed, None to
        keep it waiting, False if it never will be (its TaskFailed joins this round)."""
        gate = self.assigner.view.gate
        assert gate is not None
        me = self.assigner.me
        answer = gate.answer(pending.ready, pending.allocation_id)
        record = answer.record
        if answer.verdict == "allocated":
            return answer.allocation_id
        notice = None
        if answer.verdict == "queued":
            assert isinstance(record, ResourceQueued)
            if queued_reason(record) != pending.noted:
                notice = queued_notice(pending.ready, record, me)
        elif (
            record is None
            and pending.noted != UNANSWERED_REASON
            and time.monotonic() - pending.since >= UNANSWERED_SECONDS
        ):
            notice = unanswered_notice(pending.ready, me)
        if notice is not None:
            self.queue_notes.append((pending, notice.reason))
            self._for_workflow(notice)
        if answer.verdict == "queued":
            return None
        if answer.verdict == "ended":
            assert isinstance(record, ResourceDenied | ResourceReleased)
            failed = ended_notice(pending.ready, record, me)
            self._for_workflow(failed)
            log.warning(
                "task not dispatched: its resources were not granted",
                workflow_id=failed.workflow_id,
                task_id=failed.task_id,
                attempt=failed.attempt,
                error_kind=failed.error_kind,
                reason=failed.message,
            )
            return False
        return None

    def _note(
        self,
        pending: Pending,
        kind: WaitingReason,
        reason: str,
        agent_ids: Sequence[str],
        *,
        placed: bool,
    ) -> None:
        """A TaskWaiting for the attempt, unless this reason was already published."""
        if self.assigner.noted.get(pending.key) == kind or self.notes.get(pending.key) == kind:
            return
        ready = pending.ready
        self.notes[pending.key] = kind
        self._for_workflow(
            TaskWaiting(
                **meta(self.assigner.me, causation=ready),
                workflow_id=ready.workflow_id,
                task_id=ready.task_id,
                attempt=ready.attempt,
                reason_kind=kind,
                reason=reason[:500],
                placed_elsewhere=placed,
                agent_ids=tuple(agent_ids)[:1_000],
            )
        )

    def reassign(self, states: dict[str, AgentState], partitions: int, now: datetime) -> None:
        """TaskReassigned for the open attempts of dead agents whose workflow is ours."""
        registry = self.assigner.view.registry
        number = self.owned.tp.partition
        for agent_id in registry.presumed_dead(now):
            missed = states[agent_id].missed_heartbeats if agent_id in states else 0
            for assigned in registry.open_attempts(agent_id):
                if partition_for(assigned.workflow_id, partitions) != number:
                    continue
                event = TaskReassigned(
                    **meta(self.assigner.me, causation=assigned),
                    workflow_id=assigned.workflow_id,
                    task_id=assigned.task_id,
                    attempt=assigned.attempt,
                    from_agent_id=agent_id,
                    reason=f"heartbeats missed ({missed:g}); agent presumed dead",
                )
                self.reassigned.append(event)
                self._for_workflow(event)

    def _for_workflow(self, event: TaskWaiting | TaskFailed | TaskReassigned) -> None:
        """A notice for the Workflow Manager on ``tasks.results`` (keyed by workflow id)."""
        encoded = self.assigner.mapper.encode(event)
        self.records.append(Outgoing.of("tasks.results", encoded, workflow_id=event.workflow_id))

    def _dead_letter(self, record: ConsumedRecord, error: BaseException) -> None:
        letter = dead_letter(
            record,
            error,
            COMPONENT,
            producer=self.assigner.me,
            max_event_bytes=self.assigner.settings.max_event_bytes,
        )
        self.records.append(Outgoing.of("dlq", letter))

    # -- the round -------------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return not self.records

    async def write(self, producer: AIOKafkaProducer, *, transactional: bool) -> None:
        sent = await send_all(producer, self.assigner.settings.topic, self.records)
        await wait_all(sent)

    def oldest_waiting(self) -> int | None:
        """The offset to commit: the oldest attempt still waiting, else past the last read."""
        gone = {p.offset for p in self.gone}
        for offset in self.owned.pending:
            if offset not in gone:
                return offset
        if self.waiting:
            return self.waiting[0].offset
        return self.next_offset

    def applied(self) -> None:
        assigner, owned = self.assigner, self.owned
        for pending in self.gone:
            owned.remove(pending)
            assigner.noted.pop(pending.key, None)
        for pending, gated in self.gated:
            owned.flag(pending, gated=gated)
        for pending in self.waiting:
            owned.keep(pending)
        owned.dirty -= self.looked_dirty
        owned.awaiting = len(owned.ungated) < len(owned.pending)
        owned.next_offset = self.next_offset
        owned.committed = self.watermark
        for pending, reason in self.queue_notes:
            pending.noted = reason
        registry = assigner.view.registry
        for pending, assigned in self.placed:
            registry.record(assigned)
            _announce(pending, assigned)
        waits = {p.key for p, _ in self.gated}
        assigner.noted.update((k, v) for k, v in self.notes.items() if k in waits)
        for event in self.reassigned:
            registry.on_result(event)
            log.warning(
                "attempt reassigned",
                workflow_id=event.workflow_id,
                task_id=event.task_id,
                attempt=event.attempt,
                from_agent_id=event.from_agent_id,
                reason=event.reason,
            )

    def discarded(self) -> None:
        """Nothing of the round was kept: the partition waits as it did before it."""


def _announce(pending: Pending, assigned: TaskAssigned) -> None:
    # The ids as fields of the line, not bound context: binding reads every context variable
    # (structlog's bound_contextvars), which cost more than anything else an assignment does.
    ids = {"workflow_id": assigned.workflow_id, "correlation_id": assigned.correlation_id}
    if pending.announced:
        log.info(
            "waiting task dispatched",
            **ids,
            task_id=assigned.task_id,
            attempt=assigned.attempt,
            agent_id=assigned.agent_id,
            waited_seconds=round(time.monotonic() - pending.since, 3),
        )
    else:
        log.debug(  # per attempt: INFO would cost much of the component's CPU
            "task dispatched",
            **ids,
            task_id=assigned.task_id,
            attempt=assigned.attempt,
            agent_id=assigned.agent_id,
        )


__all__ = ["COMPONENT", "Assigner", "Assignment", "Owned", "Pending"]
