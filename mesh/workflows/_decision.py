"""One decision in the making: the events recorded so far, folded as they are recorded.

Every event a decision records is folded at once into a working :class:`Folding`, so each rule
reads the state as its earlier events left it (a cancelled task is not scheduled, a freed slot is
seen), and the decision's events replay to exactly the state the decider saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mesh.events import Event, Meta, WorkflowEvent, WorkflowStarted, meta
from mesh.workflows._folding import Folding
from mesh.workflows._state import WorkflowState

if TYPE_CHECKING:
    from mesh.workflows._decider import DecideContext

_MAX_REASON = 500


class Decision:
    """The working state and events of one ``decide`` call."""

    def __init__(
        self, state: WorkflowState | None, ctx: DecideContext, cause: Event | None
    ) -> None:
        self.ctx = ctx
        self.cause = cause
        self._folding = Folding(state) if state is not None else None
        self.events: list[WorkflowEvent] = []
        self.fresh_retries: set[str] = set()
        """Tasks whose retry this decision scheduled: their next attempt waits for a later
        decision, so the CancelTask for a timed-out attempt goes out before it is replaced."""

    @property
    def state(self) -> Folding:
        """The working state (after the events recorded so far)."""
        if self._folding is None:
            raise RuntimeError("the decision has no workflow yet: record WorkflowStarted first")
        return self._folding

    def meta(self) -> Meta:
        """Envelope of a new event: caused by the input (a Tick has no event: the workflow's
        correlation id), stamped with the decision's time and a fresh id."""
        ctx = self.ctx
        if self.cause is not None:
            return meta(
                ctx.producer, causation=self.cause, occurred_at=ctx.now, event_id=ctx.new_id()
            )
        return meta(
            ctx.producer,
            correlation_id=self.state.correlation_id,
            occurred_at=ctx.now,
            event_id=ctx.new_id(),
        )

    def record(self, event: WorkflowEvent) -> None:
        """Give ``event`` the next sequence, fold it, and keep it for the history."""
        sequence = self._folding.sequence + 1 if self._folding is not None else 1
        event = event.model_copy(update={"sequence": sequence})
        if self._folding is None:
            if not isinstance(event, WorkflowStarted):
                raise RuntimeError("a workflow's first event must be workflow.started")
            self._folding = Folding.started(event)
        else:
            self._folding.apply(event)
        self.events.append(event)


def one_line(text: str, limit: int = _MAX_REASON) -> str:
    """``text`` on one line, cut to ``limit`` characters (reasons end up in headers and UIs)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
