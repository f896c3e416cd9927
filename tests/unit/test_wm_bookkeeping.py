"""The Workflow Manager's bookkeeping, in memory: timer heap, offset book, snapshot policy,
where a rebuild starts, the replay's field-by-field comparison, and the exported names."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

import mesh.workflows.runtime
from mesh.kafka.loop import OffsetBook
from mesh.replay import diff
from mesh.workflows.runtime import SnapshotPolicy, TimerHeap
from mesh.workflows.runtime._produce import pack
from mesh.workflows.runtime._snapshots import SnapshotInfo, rebuild_start
from tests.unit.test_wm_work import started_state, tracked

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- timers ------------------------------------------------------------------------------------


def test_timers_pop_due_earliest_first_and_remove_them() -> None:
    heap = TimerHeap()
    heap.set("late", at(30))
    heap.set("early", at(10))
    heap.set("middle", at(20))
    assert heap.next_at() == at(10)
    assert heap.pop_due(at(20)) == ["early", "middle"]
    assert heap.pop_due(at(20)) == []
    assert len(heap) == 1
    assert heap.next_at() == at(30)


def test_rescheduling_replaces_the_instant_and_none_removes_it() -> None:
    """A moved timer fires only at its new instant; a removed one never fires."""
    heap = TimerHeap()
    heap.set("wf", at(10))
    heap.set("wf", at(50))
    heap.set("gone", at(5))
    heap.set("gone", None)
    assert heap.pop_due(at(40)) == []
    assert heap.next_at() == at(50)
    assert heap.pop_due(at(50)) == ["wf"]
    assert heap.next_at() is None


def test_stale_entries_do_not_pile_up() -> None:
    """Rescheduling one workflow many times keeps the heap near the number of workflows."""
    heap = TimerHeap()
    for i in range(10_000):
        heap.set("wf", at(i))
    assert len(heap._heap) < 200
    assert heap.pop_due(at(10_000)) == ["wf"]


# -- offsets -----------------------------------------------------------------------------------


class Rec:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def test_offset_book_skips_records_already_folded() -> None:
    """After a rebuild at committed offset 5, a re-fetched record 4 is ignored, 5 is new."""
    book: OffsetBook[str] = OffsetBook()
    book.start("plans-0", 5)
    assert [r.offset for r in book.fresh("plans-0", [Rec(3), Rec(4), Rec(5), Rec(6)])] == [5, 6]
    book.advance("plans-0", 7)
    assert book.fresh("plans-0", [Rec(5), Rec(6)]) == []
    assert book.next("plans-0") == 7


def test_offset_book_ignores_partitions_it_does_not_own_and_never_goes_back() -> None:
    book: OffsetBook[str] = OffsetBook()
    assert book.fresh("plans-1", [Rec(0)]) == []
    book.start("plans-1", 10)
    book.advance("plans-1", 8)
    assert book.next("plans-1") == 10
    book.forget(["plans-1"])
    assert book.next("plans-1") is None
    book.advance("plans-1", 20)
    assert "plans-1" not in book


# -- snapshot policy and rebuild start ---------------------------------------------------------


def test_snapshot_at_start_every_n_events_and_at_the_end() -> None:
    policy = SnapshotPolicy(every=3)
    running = tracked(started_state(), since=1)
    assert policy.due(None, running)
    assert not policy.due(running, tracked(started_state(), since=2))
    assert policy.due(running, tracked(started_state(), since=3))
    ended = tracked(started_state(status="completed"), since=1)
    assert policy.due(running, ended)
    assert policy.due(ended, tracked(started_state(), since=1)), "reopened by a RetryTask"
    unrecorded = tracked(started_state(), since=1, snapshotted=False)
    assert policy.due(running, unrecorded), "workflow.state holds nothing for it yet"


def test_large_workflows_are_snapshotted_by_size_and_all_after_a_while() -> None:
    """A snapshot costs in proportion to the tasks: a workflow with more tasks than twice
    ``every`` waits for half as many events as it has tasks; any workflow with new events is
    snapshotted once ``max_age`` has passed since its last snapshot."""
    policy = SnapshotPolicy(every=3, per_task=0.5, max_age=60)
    big = started_state(tasks=20)
    running = tracked(big, since=1)
    assert not policy.due(running, tracked(big, since=9))
    assert policy.due(running, tracked(big, since=10))
    last = datetime(2030, 1, 1, tzinfo=UTC)
    aged = replace(tracked(big, since=1), snapshot_at=last)
    assert not policy.due(running, aged, last + timedelta(seconds=59))
    assert policy.due(running, aged, last + timedelta(seconds=60))
    idle = replace(tracked(big, since=0), snapshot_at=last)
    assert not policy.due(running, idle, last + timedelta(hours=1))


def test_snapshot_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SnapshotPolicy(every=0)


def test_rebuild_starts_after_the_oldest_live_snapshot() -> None:
    """Finished workflows need no history; live ones continue after their snapshot."""
    infos = [
        SnapshotInfo("running", 40),
        SnapshotInfo("paused", 12),
        SnapshotInfo("completed", 3),
    ]
    assert rebuild_start(infos, end=100, at_least_once=False, high_water=40) == 13


def test_with_transactions_and_nothing_live_there_is_nothing_to_fold() -> None:
    infos = [SnapshotInfo("completed", 90)]
    assert rebuild_start(infos, end=100, at_least_once=False, high_water=90) == 100
    assert rebuild_start([], end=100, at_least_once=False, high_water=None) == 100


def test_without_transactions_history_after_the_last_snapshot_is_folded_too() -> None:
    """A crash between a workflow's history and its first snapshot must not lose it."""
    infos = [SnapshotInfo("completed", 90)]
    assert rebuild_start(infos, end=100, at_least_once=True, high_water=90) == 91
    assert rebuild_start([], end=100, at_least_once=True, high_water=None) == 0


def test_without_transactions_finished_workflows_count_too() -> None:
    """A RetryTask may reopen a finished workflow; without transactions its history after the
    final snapshot may have no later snapshot yet."""
    infos = [SnapshotInfo("running", 40), SnapshotInfo("failed", 10)]
    assert rebuild_start(infos, end=100, at_least_once=False, high_water=40) == 41
    assert rebuild_start(infos, end=100, at_least_once=True, high_water=40) == 11


def test_markers_and_unreadable_snapshots_move_the_start_back() -> None:
    marker = SnapshotInfo("running", None)  # workflow.started at offset 0
    assert rebuild_start([marker], end=50, at_least_once=False, high_water=None) == 0
    broken = SnapshotInfo("completed", 45, usable=False)
    assert rebuild_start([broken], end=50, at_least_once=False, high_water=45) == 0


# -- replay comparison -------------------------------------------------------------------------


def test_differences_name_each_field_path() -> None:
    live = {"status": "running", "tasks": {"a": {"status": "succeeded", "attempt": 1}}, "x": [1]}
    replayed = {"status": "running", "tasks": {"a": {"status": "failed", "attempt": 1}}, "y": 2}
    assert [str(d) for d in diff(live, replayed)] == [
        "tasks.a.status: snapshot has 'succeeded', replay has 'failed'",
        "x: snapshot has [1], missing in the replay",
        "y: missing in the snapshot, replay has 2",
    ]
    assert diff(live, live) == []


def test_exported_names() -> None:
    """The runtime's public API, pinned (httpx's test_exported_members); its errors live in
    ``mesh.errors``, replay in ``mesh.replay``."""
    assert mesh.workflows.runtime.__all__ == sorted(mesh.workflows.runtime.__all__)
    assert set(mesh.workflows.runtime.__all__) == {"SnapshotPolicy", "TimerHeap", "WorkflowManager"}


def test_history_batches_never_split_a_decision() -> None:
    """Decisions (ending at 2, 3 and 6) are packed whole; one too large alone is split."""
    sizes = [40, 40, 30, 50, 50, 50]
    assert pack(sizes, [2, 3, 6], capacity=110) == [[0, 1, 2], [3, 4], [5]]
    assert pack(sizes, [2, 3, 6], capacity=1000) == [[0, 1, 2, 3, 4, 5]]
    assert pack(sizes, [2, 3, 6], capacity=80) == [[0, 1], [2], [3], [4], [5]]
    assert pack([], [], capacity=10) == []
