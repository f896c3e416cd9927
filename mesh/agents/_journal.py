"""Which attempts this agent id has started and reported, on local disk.

Delivery on ``tasks.assigned`` is at-least-once: an assignment whose outcome was not reported
and committed comes again after the agent restarts, or after a broker restart made it read its
inbox again. Running it again would run a task's command twice for one attempt. So an attempt
is written here *before* its command starts, and again once its outcome is on the broker:

- seen reported: the redelivery is stepped over;
- seen started, not reported: its outcome is unknown (the process that ran it is gone), so it
  is reported as a retriable ``interrupted`` failure without running; the Workflow Manager's
  retry policy decides about a next attempt.

One line per fact, appended and flushed (a killed process loses nothing the kernel has); the file
is compacted to its last ``keep`` attempts when opened.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import IO, Literal

from mesh.events import TaskAssigned
from mesh.log import get_logger

AttemptKey = tuple[str, str, int]
"""(workflow id, task id, attempt)"""

JournalKey = tuple[str, str, int, str]
"""(workflow id, task id, attempt, the event the assignment answers).

The last part tells a redelivered assignment from a new one that happens to carry the same ids (a
workflow id used again once the first workflow was forgotten, tests that reuse fixed ids): the
same assignment, sent again or decided again from the same ready task, answers the same event."""

Seen = Literal["started", "reported"]

KEEP = 10_000

log = get_logger("mesh.agents.journal")


def journal_key(assigned: TaskAssigned) -> JournalKey:
    """The journal's key for an assignment (see :data:`JournalKey`)."""
    origin = assigned.causation_id or assigned.event_id
    return (assigned.workflow_id, assigned.task_id, assigned.attempt, str(origin))


def journal_path(state_dir: Path, agent_id: str) -> Path:
    """Where agent ``agent_id`` keeps its journal (one file per agent id)."""
    return state_dir / "agents" / f"{re.sub(r'[^A-Za-z0-9._-]', '_', agent_id)}.attempts"


class AttemptJournal:
    """Started and reported attempts of one agent id (``path`` None: in memory only)."""

    def __init__(self, path: Path | None, *, keep: int = KEEP) -> None:
        self.path = path
        self.keep = keep
        self._seen: OrderedDict[JournalKey, Seen] = OrderedDict()
        self._file: IO[str] | None = None

    def open(self) -> None:
        """Load what an earlier run of this agent id wrote; keep the last ``keep`` attempts."""
        if self.path is None or self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            for line in self.path.read_text(errors="replace").splitlines():
                parts = line.split("\t")
                if len(parts) != 5 or parts[0] not in ("started", "reported"):
                    continue  # a line cut short by a crash
                try:
                    key = (parts[1], parts[2], int(parts[3]), parts[4])
                except ValueError:
                    continue
                self._note(key, "reported" if parts[0] == "reported" else "started")
        compacted = "".join(_line(key, seen) for key, seen in self._seen.items())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(compacted)
        tmp.replace(self.path)
        self._file = self.path.open("a")
        if self._seen:
            log.debug("attempt journal loaded", attempts=len(self._seen), path=str(self.path))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def seen(self, key: JournalKey) -> Seen | None:
        return self._seen.get(key)

    def started(self, key: JournalKey) -> None:
        """Written before the attempt's command runs."""
        self._write(key, "started")

    def reported(self, key: JournalKey) -> None:
        """Written once the attempt's outcome is on the broker."""
        self._write(key, "reported")

    def _write(self, key: JournalKey, seen: Seen) -> None:
        self._note(key, seen)
        if self._file is not None:
            self._file.write(_line(key, seen))
            self._file.flush()

    def _note(self, key: JournalKey, seen: Seen) -> None:
        self._seen[key] = seen
        self._seen.move_to_end(key)
        while len(self._seen) > self.keep:
            self._seen.popitem(last=False)


def _line(key: JournalKey, seen: Seen) -> str:
    return f"{seen}\t{key[0]}\t{key[1]}\t{key[2]}\t{key[3]}\n"


__all__ = ["AttemptJournal", "AttemptKey", "JournalKey", "journal_key", "journal_path"]
