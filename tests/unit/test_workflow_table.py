"""A decision copies only the part of a workflow's task table it changes.

Structural, not timed: the next state shares every bucket but the changed ones with the state it
came from, and the state it came from is unchanged.
"""

from __future__ import annotations

from mesh.workflows import WorkflowState, decide_and_fold
from mesh.workflows._table import BUCKET, TaskTable
from tests.unit.test_workflow_harness import Flow, plan, spec

N = 3 * BUCKET + 5


def _buckets(state: WorkflowState) -> tuple[object, ...]:
    assert isinstance(state.tasks, TaskTable)
    return state.tasks._buckets


def test_a_completion_copies_one_bucket_and_leaves_the_old_state_alone() -> None:
    flow = Flow(plan(*[spec(f"t{i}") for i in range(N)]))
    before = flow.s
    assert list(before.tasks) == [f"t{i}" for i in range(N)]  # plan order
    done = flow.completed(f"t{BUCKET + 1}", attempt=1)
    events, after = decide_and_fold(before, done, flow.ctx())
    assert events
    assert after is not None
    shared = [a is b for a, b in zip(_buckets(before), _buckets(after), strict=True)]
    assert shared.count(False) == 1
    assert not shared[1]
    assert before.tasks[f"t{BUCKET + 1}"].status == "ready"
    assert after.tasks[f"t{BUCKET + 1}"].status == "succeeded"


def test_a_table_is_a_mapping_equal_to_its_dict_and_round_trips_a_snapshot() -> None:
    flow = Flow(plan(*[spec(f"t{i}") for i in range(N)]))
    flow.complete("t0", attempt=1)
    state = flow.s
    as_dict = dict(state.tasks)
    assert state.tasks == as_dict
    assert len(state.tasks) == N
    assert "t0" in state.tasks
    assert "nope" not in state.tasks
    back = WorkflowState.from_snapshot_state(state.to_snapshot_state())
    assert isinstance(back.tasks, TaskTable)
    assert back == state
    assert list(back.tasks) == list(state.tasks)


def test_edits_after_a_freeze_do_not_reach_the_frozen_table() -> None:
    flow = Flow(plan(*[spec(f"t{i}") for i in range(N)]))
    table = TaskTable.of(flow.s.tasks)
    edits = table.edit()
    edits["t0"] = table["t1"]
    frozen = edits.freeze()
    edits["t0"] = table["t2"]
    assert frozen["t0"] is table["t1"]
    assert edits.freeze()["t0"] is table["t2"]
    assert table["t0"].task_id == "t0"
