"""One owner per input topic: ``DLQ_OWNERS`` names, for every channel a mesh component consumes,
the one component that dead-letters its bad records (the others skip them), so each bad record
gets exactly one dead letter and a redrive re-sends it once."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.events import CHANNELS, COMPONENTS
from mesh.kafka.dlq import DLQ_OWNERS, owns, tombstone

NOT_CONSUMED = {"workflow.state", "payloads"}
"""Read only by key or position, never consumed: ``workflow.state`` to rebuild a workflow (an
unreadable snapshot is folded from history instead), ``payloads`` to fetch a referenced value (a
bad chunk is the reader's ``payload_corrupt`` error, for the task or event that refers to it)."""


def consumed() -> set[str]:
    return {
        channel
        for component in COMPONENTS.values()
        if component.name != "client"
        for channel in component.receives
    } - NOT_CONSUMED


def test_every_consumed_channel_has_exactly_one_owner_and_nothing_else_has_one() -> None:
    assert set(DLQ_OWNERS) == consumed()


def test_each_owner_is_a_component_that_receives_the_channel() -> None:
    for channel, owner in DLQ_OWNERS.items():
        assert channel in COMPONENTS[owner].receives, (channel, owner)


def test_only_the_owner_owns() -> None:
    assert owns("workflow-manager", "tasks.results")
    assert not owns("resource-allocator", "tasks.results")
    assert not owns("agent-manager", "tasks.results")
    assert not owns("workflow-manager", "workflow.state")


@dataclass
class Record:
    key: bytes | None
    value: bytes | None


def test_a_tombstone_is_a_keyed_record_without_value_on_a_compacted_channel() -> None:
    assert CHANNELS["breakers"].cleanup == "compact"
    assert tombstone("breakers", Record(b"agent:a", None))  # type: ignore[arg-type]
    assert not tombstone("breakers", Record(None, None))  # type: ignore[arg-type]
    assert not tombstone("breakers", Record(b"agent:a", b"{}"))  # type: ignore[arg-type]
    assert not tombstone("agents.heartbeats", Record(b"a", None))  # type: ignore[arg-type]
