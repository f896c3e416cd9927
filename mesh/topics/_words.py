"""Counted nouns for every line mesh writes about the estate ("1 change", "2 changes")."""

from __future__ import annotations


def plural(count: int, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, in the plural unless ``count`` is 1 (``many`` if irregular)."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def listed(names: list[str], *, shown: int = 5) -> str:
    """The first ``shown`` names, then how many more: one line however long the list."""
    head = ", ".join(names[:shown])
    rest = len(names) - shown
    return f"{head} and {rest} more" if rest > 0 else head
