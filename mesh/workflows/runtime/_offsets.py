"""Which input records a partition has already folded: the next offset per topic-partition.

The consumer's fetch position and the manager's state can part ways around a rebalance: a batch
fetched before partitions were revoked may be handled after they were assigned again (and the
state rebuilt), while the fetcher re-reads from the committed offset. The book holds, per input
topic-partition, the offset of the first record the state does not include yet (the committed
offset right after a rebuild, then one past each record handled), so a record is folded once
however often it is fetched.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class _HasOffset(Protocol):
    @property
    def offset(self) -> int: ...


R = TypeVar("R", bound=_HasOffset)


class OffsetBook(Generic[K]):
    """Next offset to handle per input topic-partition (only for partitions owned now)."""

    def __init__(self) -> None:
        self._next: dict[K, int] = {}

    def __contains__(self, tp: object) -> bool:
        return tp in self._next

    def start(self, tp: K, position: int) -> None:
        """Own ``tp`` from ``position`` on (its committed offset, as the rebuilt state includes
        every record before it)."""
        self._next[tp] = position

    def forget(self, tps: Iterable[K]) -> None:
        """Stop owning ``tps`` (revoked)."""
        for tp in tps:
            self._next.pop(tp, None)

    def next(self, tp: K) -> int | None:
        """Offset of the first record of ``tp`` not handled yet, or None if ``tp`` is not owned."""
        return self._next.get(tp)

    def fresh(self, tp: K, records: Sequence[R]) -> list[R]:
        """The records of ``tp`` not handled yet, in order ([] if ``tp`` is not owned)."""
        first = self._next.get(tp)
        if first is None:
            return []
        return [r for r in records if r.offset >= first]

    def advance(self, tp: K, next_offset: int) -> None:
        """Record that every record of ``tp`` before ``next_offset`` is now handled."""
        if tp in self._next and next_offset > self._next[tp]:
            self._next[tp] = next_offset
