"""The allocator's sweep: finished allocations leave its memory (and the ledger) by age and
beyond a bound, so a long run does not grow it; live ones always stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mesh.events import (
    Event,
    Producer,
    ResourceAllocated,
    ResourceDenied,
    ResourceReleased,
    Resources,
    meta,
)
from mesh.resources.runtime._app import finished_to_forget

ME = Producer(component="resource-allocator", instance="test")
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _at(event: Event, seconds: float) -> Event:
    return event.model_copy(update={"occurred_at": T0 + timedelta(seconds=seconds)})


def released(allocation_id: str, seconds: float) -> Event:
    event = ResourceReleased(
        **meta(ME, correlation_id="c"),
        allocation_id=allocation_id,
        pool_id="p",
        resources=Resources(cpu=1),
    )
    return _at(event, seconds)


def denied(allocation_id: str, seconds: float) -> Event:
    event = ResourceDenied(
        **meta(ME, correlation_id="c"),
        allocation_id=allocation_id,
        resources=Resources(cpu=1),
        reason="too large",
    )
    return _at(event, seconds)


def allocated(allocation_id: str, seconds: float) -> Event:
    event = ResourceAllocated(
        **meta(ME, correlation_id="c"),
        allocation_id=allocation_id,
        pool_id="p",
        resources=Resources(cpu=1),
    )
    return _at(event, seconds)


def test_finished_allocations_go_by_age_and_the_oldest_beyond_the_bound() -> None:
    records = {
        "old-released": released("old-released", 0),
        "old-denied": denied("old-denied", 1),
        "held-long": allocated("held-long", 0),
        **{f"r{i}": released(f"r{i}", 100 + i) for i in range(10)},
    }
    cutoff = T0 + timedelta(seconds=50)
    forgotten = finished_to_forget(records, cutoff, keep=4)
    assert sorted(forgotten) == sorted(["old-released", "old-denied", *(f"r{i}" for i in range(6))])
    assert "held-long" not in forgotten  # still held: never swept, however old


def test_nothing_recent_goes_while_under_the_bound() -> None:
    records = {f"r{i}": released(f"r{i}", 100 + i) for i in range(3)}
    assert finished_to_forget(records, T0, keep=3) == []
