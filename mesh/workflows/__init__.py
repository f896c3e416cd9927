"""The Workflow Manager's aggregate: a pure decider over a workflow's event-sourced history.

``decide(state, input, ctx)`` returns the history events an input leads to, ``evolve`` folds one
of them into the state, and ``dispatches`` says which messages (TaskReady, CancelTask) follow from
events just recorded. Nothing here does I/O or knows Kafka; the runtime loads state, calls these
and writes the results, which is what makes replay exact.
"""

from mesh.workflows._decider import (
    DecideContext,
    Tick,
    WorkflowInput,
    decide,
    decide_and_fold,
    dispatches,
    evolve,
    fold,
)
from mesh.workflows._folding import Folding
from mesh.workflows._recorded import Recorded
from mesh.workflows._state import (
    STATE_VERSION,
    TaskState,
    TaskStatus,
    WorkflowState,
    WorkflowStatus,
)

__all__ = [
    "STATE_VERSION",
    "DecideContext",
    "Folding",
    "Recorded",
    "TaskState",
    "TaskStatus",
    "Tick",
    "WorkflowInput",
    "WorkflowState",
    "WorkflowStatus",
    "decide",
    "decide_and_fold",
    "dispatches",
    "evolve",
    "fold",
]
