"""The planner's learned state as a pure fold over the workflow history.

``workflow.events`` holds everything needed, in order per workflow: ``WorkflowStarted`` carries
the plan, whose tasks say (``inputs["planner"]``) which task type they are and which methods
produced them; ``TaskCompleted``/``TaskFailed``/``TaskTimedOut`` give the outcomes. Folding them
feeds the estimator (durations, costs) and the bandit (successes, failures). A replica rebuilds
the same state by reading the topic from the start, so nothing lives in local files.

The history is the Workflow Manager's judged record (stale or duplicate agent reports have been
filtered out), which is why the planner learns from it rather than from ``tasks.results``.
Redelivered events change nothing: each open workflow remembers the sequence numbers it has
folded, and a finished workflow's id is remembered (the last ``max_finished`` of them) so that a
replayed run of it is not counted twice. Memory is bounded by the workflows in flight plus that
window of ids.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mesh.events import (
    Event,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TaskTimedOut,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowEvent,
    WorkflowFailed,
    WorkflowStarted,
)
from mesh.planner._bandit import MethodBandit
from mesh.planner._estimates import Estimator
from mesh.planner._htn import PLANNER_INPUT_KEY, TaskTag

_FINAL = (WorkflowCompleted, WorkflowFailed, WorkflowCancelled)


@dataclass
class _Open:
    tags: dict[str, TaskTag]
    started: dict[str, datetime] = field(default_factory=dict)
    seen: set[object] = field(default_factory=set)


def tag_of(inputs: Mapping[str, Any]) -> TaskTag | None:
    """The planner's tag in a task's inputs, if it has a well-formed one."""
    raw = inputs.get(PLANNER_INPUT_KEY)
    if type(raw) is not dict and not isinstance(raw, Mapping):  # dict first: no abc check
        return None
    task_type, methods = raw.get("type"), raw.get("methods", [])
    if not isinstance(task_type, str) or not isinstance(methods, list):
        return None
    return TaskTag(task_type, tuple(m for m in methods if isinstance(m, str) and "/" in m))


class Learning:
    """Estimator + bandit + the open workflows whose outcomes are still to come."""

    def __init__(
        self,
        estimator: Estimator | None = None,
        bandit: MethodBandit | None = None,
        *,
        max_open: int = 100_000,
        max_finished: int = 100_000,
    ) -> None:
        self.estimator = estimator or Estimator()
        self.bandit = bandit or MethodBandit()
        self.max_open = max_open
        self.max_finished = max_finished
        self._open: dict[str, _Open] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()

    @property
    def version(self) -> int:
        """Grows with every observation folded (a cache key part: new evidence, new plans)."""
        return self.estimator.observations + self.bandit.observations

    def apply_all(self, events: Iterable[Event]) -> int:
        """Fold many events; returns how many changed the state."""
        return sum(self.apply(event) for event in events)

    def apply(self, event: Event) -> bool:
        """Fold one event; False if it is irrelevant or already folded."""
        if not isinstance(event, WorkflowEvent):
            return False
        if isinstance(event, WorkflowStarted):
            return self._start(event)
        track = self._open.get(event.workflow_id)
        if track is None:
            return False
        mark: object = event.sequence if event.sequence is not None else event.event_id
        if mark in track.seen:
            return False
        track.seen.add(mark)
        if isinstance(event, _FINAL):
            del self._open[event.workflow_id]
            self._finished[event.workflow_id] = None
            while len(self._finished) > self.max_finished:
                self._finished.popitem(last=False)
            return True
        if isinstance(event, TaskStarted):
            track.started[event.task_id] = event.occurred_at
            return True
        if not isinstance(event, TaskCompleted | TaskFailed | TaskTimedOut):
            return False
        tag = track.tags.get(event.task_id)
        if tag is None:
            return False
        success = isinstance(event, TaskCompleted)
        if isinstance(event, TaskCompleted):
            duration = event.duration_seconds
            began = track.started.get(event.task_id)
            if duration is None and began is not None:
                duration = (event.occurred_at - began).total_seconds()
            self.estimator.observe(tag.task_type, duration, event.cost)
        for choice in tag.methods:
            compound, _, method = choice.rpartition("/")
            self.bandit.observe(compound, method, success)
        return True

    def _start(self, event: WorkflowStarted) -> bool:
        if event.workflow_id in self._open or event.workflow_id in self._finished:
            return False
        if event.plan is None:
            return False  # a plan by reference: too large to be planner-made, nothing to learn
        tags = {t.task_id: tag for t in event.plan.tasks if (tag := tag_of(t.inputs))}
        if not tags:
            return False  # not a planner-made plan: nothing to learn from it
        if len(self._open) >= self.max_open:
            del self._open[next(iter(self._open))]  # the oldest: it has waited longest
        mark = event.sequence if event.sequence is not None else event.event_id
        self._open[event.workflow_id] = _Open(tags, seen={mark})
        return True

    @property
    def open_workflows(self) -> int:
        return len(self._open)
