"""A workflow's history as JSON lines: ``mesh replay --export FILE`` and ``--from-file FILE``.

Each line is one record: ``{"offset": 12, "timestamp_ms": 1767225600000, "event": {…}}`` where
``event`` is the value as it was recorded (its own ``schema_version``). Importing decodes every
event through the same ``Mapper`` as a consumer — size limit, validation and upcasting — so an
old export replays with newer code exactly as the old records would. A line holding a bare event
object (e.g. a ``kcat -C -f '%s\\n'`` dump of the topic) is accepted too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from mesh.errors import ConfigError, EventError
from mesh.events import Mapper, WorkflowEvent
from mesh.workflows import Recorded

MAX_LINES = 5_000_000
"""Most records read from one file (a history longer than this is not a debugging session)."""

_ENVELOPE_BYTES = 1_024
"""Room on a line for the offset and timestamp around the event itself."""


def export_history(history: Iterable[Recorded], path: Path) -> int:
    """Write ``history`` to ``path`` as JSON lines; returns how many were written.

    A record's value is written as it was recorded when known (``raw``), else re-encoded.
    """
    count = 0
    try:
        with path.open("w", encoding="utf-8") as out:
            for item in history:
                event = json.loads(item.raw) if item.raw is not None else _as_json(item.event)
                line = {"offset": item.offset, "timestamp_ms": item.timestamp_ms, "event": event}
                out.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
                count += 1
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return count


def _as_json(event: WorkflowEvent) -> Any:
    return json.loads(event.model_dump_json())


def load_history(path: Path, mapper: Mapper, *, workflow_id: str | None = None) -> list[Recorded]:
    """The history in ``path`` (one workflow: ``workflow_id``, or the only one in the file)."""
    try:
        with path.open("r", encoding="utf-8") as source:
            records = list(read_lines(source, mapper, name=str(path)))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc.reason}") from exc
    return pick_workflow(records, workflow_id, where=str(path))


def read_lines(source: IO[str], mapper: Mapper, *, name: str) -> Iterator[Recorded]:
    """Decode each non-blank line of ``source``; ConfigError names the line that is wrong."""
    limit = mapper.max_event_bytes + _ENVELOPE_BYTES
    number = 0
    while line := source.readline(limit + 1):
        number += 1
        if number > MAX_LINES:
            raise ConfigError(f"{name} holds more than {MAX_LINES:,} records")
        if len(line) > limit and not line.endswith("\n"):
            raise ConfigError(f"{name}:{number}: line longer than {limit:,} characters")
        if not line.strip():
            continue
        yield _record(line, mapper, f"{name}:{number}")


def _record(line: str, mapper: Mapper, where: str) -> Recorded:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    body = data.get("event", data) if "type" not in data else data
    offset, stamp = data.get("offset"), data.get("timestamp_ms")
    for name, value in (("offset", offset), ("timestamp_ms", stamp)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"{where}: {name} must be an integer")
    try:
        event = mapper.decode(json.dumps(body).encode())
    except EventError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not isinstance(event, WorkflowEvent) or event.sequence is None:
        raise ConfigError(f"{where}: {event.type} is not a recorded workflow history event")
    if body is data:  # a bare event: nothing says where it was recorded
        return Recorded(event)
    return Recorded(event, offset, stamp)


def pick_workflow(
    records: Sequence[Recorded], workflow_id: str | None, *, where: str
) -> list[Recorded]:
    """The records of one workflow, each sequence once (the first wins, as in a rebuild)."""
    ids = sorted({r.event.workflow_id for r in records})
    if workflow_id is None:
        if len(ids) > 1:
            shown = ", ".join(ids[:5]) + (" …" if len(ids) > 5 else "")
            raise ConfigError(f"{where} holds {len(ids)} workflows ({shown}); name one")
        if not ids:
            raise ConfigError(f"{where} holds no history events")
        workflow_id = ids[0]
    chosen: list[Recorded] = []
    last = 0
    for record in records:
        sequence = record.event.sequence or 0
        if record.event.workflow_id == workflow_id and sequence > last:
            chosen.append(record)
            last = sequence
    if not chosen:
        raise ConfigError(f"{where} holds no history of workflow {workflow_id}")
    return chosen
