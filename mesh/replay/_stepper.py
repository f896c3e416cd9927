"""Stepping through a history one event at a time (``mesh replay --step``), without I/O.

The state after event *n* is folded from the nearest checkpoint at or before *n*, so going back
costs at most ``every`` events rather than a refold from the start, and memory stays at one
state per ``every`` events.
"""

from __future__ import annotations

from collections.abc import Sequence

from mesh.events import WorkflowEvent
from mesh.workflows import WorkflowState, fold

HELP = "commands: n(ext) [default], p(revious), j(ump) N, N, f(irst), l(ast), q(uit)"


class Stepper:
    """A cursor over a history: ``position`` events applied (1 … ``len(events)``)."""

    def __init__(self, events: Sequence[WorkflowEvent], *, every: int = 50) -> None:
        if not events:
            raise ValueError("nothing to step through: the history is empty")
        self.events = list(events)
        self.every = max(1, every)
        self.position = 1
        self._checkpoints: dict[int, WorkflowState] = {}

    @property
    def total(self) -> int:
        """How many events there are to step through."""
        return len(self.events)

    @property
    def event(self) -> WorkflowEvent:
        """The event just applied."""
        return self.events[self.position - 1]

    def state(self) -> WorkflowState:
        """The state after the first ``position`` events."""
        return self.state_at(self.position)

    def state_at(self, n: int) -> WorkflowState:
        """The state after the first ``n`` events (1 ≤ n ≤ total)."""
        if not 1 <= n <= self.total:
            raise ValueError(f"event {n} is out of range 1…{self.total}")
        base = (n // self.every) * self.every
        while base and base not in self._checkpoints:
            base -= self.every  # fold forward from the last checkpoint made so far
        state = self._checkpoints.get(base) if base else None
        at = base
        while at < n:
            upto = min(n, (at // self.every + 1) * self.every)
            state = fold(self.events[at:upto], state)
            at = upto
            if at % self.every == 0 and state is not None:
                self._checkpoints.setdefault(at, state)
        assert state is not None  # n ≥ 1 events folded
        return state

    def command(self, text: str) -> bool:
        """Apply one typed command; False when it is ``quit``. ValueError explains a bad one."""
        words = text.strip().lower().split()
        verb = words[0] if words else "next"
        if verb in {"q", "quit", "exit"}:
            return False
        if verb in {"n", "next"}:
            self.position = min(self.total, self.position + 1)
        elif verb in {"p", "prev", "previous", "back"}:
            self.position = max(1, self.position - 1)
        elif verb in {"f", "first"}:
            self.position = 1
        elif verb in {"l", "last"}:
            self.position = self.total
        elif verb in {"j", "jump", "g", "goto"} or verb.isdigit():
            target = words[1] if verb in {"j", "jump", "g", "goto"} and len(words) > 1 else verb
            if not target.isdigit():
                raise ValueError(f"jump needs an event number 1…{self.total}; {HELP}")
            number = int(target)
            if not 1 <= number <= self.total:
                raise ValueError(f"event {number} is out of range 1…{self.total}")
            self.position = number
        else:
            raise ValueError(f"unknown command {text.strip()!r}; {HELP}")
        return True
