"""Which offset of a partition is safe to commit when records finish out of order.

Attempts run concurrently, so record 7 may finish before record 5. Committing 8 then would lose
5 on a crash; committing only below the oldest unfinished record keeps delivery at-least-once.
"""

from __future__ import annotations


class OffsetTracker:
    """Offsets taken in log order and finished in any order, for one partition."""

    def __init__(self, start: int) -> None:
        self._next = start
        self._committed = start
        self._open: set[int] = set()

    def taken(self, offset: int) -> None:
        """A record was read and is now being handled."""
        self._open.add(offset)
        self._next = max(self._next, offset + 1)

    def finished(self, offset: int) -> None:
        """A record is fully handled (its result, if any, was produced)."""
        self._open.discard(offset)

    @property
    def pending(self) -> int:
        """Records taken and not finished."""
        return len(self._open)

    def committable(self) -> int | None:
        """The offset to commit now, or None if it would not move the committed position."""
        position = min(self._open) if self._open else self._next
        return position if position > self._committed else None

    def committed(self, position: int) -> None:
        """The broker accepted ``position`` as the committed offset."""
        self._committed = max(self._committed, position)


__all__ = ["OffsetTracker"]
