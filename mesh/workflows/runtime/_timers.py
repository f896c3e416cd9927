"""When each workflow of a partition next needs the clock: a heap with lazy rescheduling.

Timers are never a source of truth: the instant of a workflow comes from its state (the
earliest retry, deadline or trigger wait, or ``ended_at`` + grace for a finished one), so a
rebuilt replica recomputes every timer from the states it rebuilt. The heap only makes "what is
due now" and "how long may the loop sleep" cheap for a partition holding many workflows.
"""

from __future__ import annotations

import heapq
from datetime import datetime

_COMPACT_SLACK = 64


class TimerHeap:
    """One instant per workflow; ``set`` replaces it, ``pop_due`` hands out the due ones.

    Rescheduling pushes a new heap entry and leaves the old one behind; entries that no longer
    match the workflow's current instant are skipped when they surface, and the heap is rebuilt
    when such stale entries pile up, so a workflow rescheduled on every event costs O(log n).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._at: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._at

    def get(self, workflow_id: str) -> datetime | None:
        """The instant set for ``workflow_id``, if any."""
        return self._at.get(workflow_id)

    def set(self, workflow_id: str, at: datetime | None) -> None:
        """Fire ``workflow_id`` at ``at``; None removes its timer."""
        current = self._at.get(workflow_id)
        if at == current:
            return
        if at is None:
            del self._at[workflow_id]
            return
        self._at[workflow_id] = at
        heapq.heappush(self._heap, (at, workflow_id))
        if len(self._heap) > 2 * len(self._at) + _COMPACT_SLACK:
            self._heap = [(when, wid) for wid, when in self._at.items()]
            heapq.heapify(self._heap)

    def next_at(self) -> datetime | None:
        """The earliest instant set, or None when no workflow waits for the clock."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> list[str]:
        """Workflows whose instant is at or before ``now``, earliest first; their timers are
        removed (the caller sets new ones from the states it ends up with)."""
        due: list[str] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, workflow_id = heapq.heappop(self._heap)
            del self._at[workflow_id]
            due.append(workflow_id)

    def clear(self) -> None:
        self._heap.clear()
        self._at.clear()

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._at.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
