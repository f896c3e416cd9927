"""A snapshot written in chunks reads back whole, and is refused (the workflow folded from its
history instead) when a chunk is missing: what rebuild, list, status and replay all read."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from mesh.errors import DecisionError
from mesh.events import Mapper, Producer, WorkflowSnapshot
from mesh.kafka.history import _joined, snapshot_state
from mesh.workflows.runtime._snapshots import snapshot_records
from tests.unit.test_wm_work import Harness, plan_created, spec

ME = Producer(component="workflow-manager", instance="wm-test")


@dataclass
class Record:
    """A consumed record of ``workflow.state`` (the fields readers use)."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "mesh.workflow.state"
    partition: int = 0
    offset: int = 0
    timestamp: int = 0


def test_chunks_join_back_to_the_state_and_a_missing_one_is_refused() -> None:
    h = Harness()
    h.feed("plans", plan_created(*(spec(f"t{i}") for i in range(40))))
    state = h.state
    mapper = Mapper(max_event_bytes=3_000)
    records, chunks = snapshot_records(mapper, state, 41, ME)
    assert chunks is not None
    assert len(records) == chunks.count + 1
    *pieces, last = records
    head = mapper.decode(last.value, last.headers)
    assert isinstance(head, WorkflowSnapshot)
    stored = {r.key: Record(r.key, r.value, r.headers) for r in pieces}

    joined = _joined(mapper, head, stored)
    assert snapshot_state(joined) == state

    del stored[pieces[1].key]
    partial = _joined(mapper, head, stored)
    assert partial.state == {}
    with pytest.raises(DecisionError):
        snapshot_state(partial)


def test_a_small_state_is_one_record() -> None:
    h = Harness()
    h.feed("plans", plan_created(spec("a")))
    records, chunks = snapshot_records(Mapper(), h.state, 1, ME)
    assert chunks is None
    assert len(records) == 1
