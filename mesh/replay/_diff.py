"""Every difference between a live snapshot's state and a replayed one, as field paths.

Replay must equal the snapshot (the decider is pure), so any difference is a bug; naming each
differing field (``tasks.b.attempt``) rather than "not equal" is what makes it debuggable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh.workflows import WorkflowState


class _Missing:
    """Marks a field present on one side only."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Difference:
    """One field path whose value differs between the live snapshot and the replay."""

    path: str
    live: Any
    replayed: Any

    def __str__(self) -> str:
        if self.live is MISSING:
            return f"{self.path}: missing in the snapshot, replay has {self.replayed!r}"
        if self.replayed is MISSING:
            return f"{self.path}: snapshot has {self.live!r}, missing in the replay"
        return f"{self.path}: snapshot has {self.live!r}, replay has {self.replayed!r}"

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` (a missing side is ``"<missing>"``)."""
        return {
            "path": self.path,
            "snapshot": repr(self.live) if self.live is MISSING else self.live,
            "replay": repr(self.replayed) if self.replayed is MISSING else self.replayed,
        }


def diff(live: Any, replayed: Any, path: str = "") -> list[Difference]:
    """Each path where two JSON-like documents differ (all of them: no cap)."""
    found: list[Difference] = []
    _walk(live, replayed, path, found)
    return found


def diff_states(live: WorkflowState, replayed: WorkflowState) -> list[Difference]:
    """The differences between two workflow states, in their snapshot (JSON) form."""
    return diff(live.to_snapshot_state(), replayed.to_snapshot_state())


def _walk(live: Any, replayed: Any, path: str, found: list[Difference]) -> None:
    if isinstance(live, Mapping) and isinstance(replayed, Mapping):
        for key in sorted(set(live) | set(replayed), key=str):
            where = f"{path}.{key}" if path else str(key)
            _walk(live.get(key, MISSING), replayed.get(key, MISSING), where, found)
        return
    if isinstance(live, list) and isinstance(replayed, list) and len(live) == len(replayed):
        for index, (a, b) in enumerate(zip(live, replayed, strict=True)):
            _walk(a, b, f"{path}[{index}]", found)
        return
    if live is MISSING or replayed is MISSING or live != replayed:
        found.append(Difference(path or "(state)", live, replayed))
