"""A workflow's history as JSON lines: ``mesh replay --export FILE`` and ``--from-file FILE``.

Each line is one record: ``{"offset": 12, "timestamp_ms": 1767225600000, "event": {…}}`` where
``event`` is the value as it was recorded (its own ``schema_version``). Importing decodes every
event through the same ``Mapper`` as a consumer — size limit, validation and upcasting — so an
old export replays with newer code exactly as the old records would. A line holding a bare event
object (e.g. a ``kcat -C -f '%s\\n'`` dump of the topic) is accepted too.

Payloads travel with the history: after its records an export holds, one per line as
``{"event": {…payload.chunk…}}``, the chunks of every payload the history refers to (a plan or
an output by reference), so the file alone replays; importing fetches a plan by reference from
them and checks its digest, and says so when the file lacks it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from mesh.errors import ConfigError, EventError, PayloadError
from mesh.events import (
    ExecutionPlan,
    Mapper,
    PayloadChunk,
    WorkflowEvent,
    WorkflowStarted,
    join_payload,
)
from mesh.workflows import Recorded

MAX_LINES = 5_000_000
"""Most records read from one file (a history longer than this is not a debugging session)."""

_ENVELOPE_BYTES = 1_024
"""Room on a line for the offset and timestamp around the event itself."""


def export_history(
    history: Iterable[Recorded], path: Path, payloads: Iterable[PayloadChunk] = ()
) -> int:
    """Write ``history`` to ``path`` as JSON lines, then the ``payloads`` chunks it refers to;
    returns how many history records were written.

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
            for chunk in payloads:
                out.write('{"event":' + chunk.model_dump_json() + "}\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return count


def _as_json(event: WorkflowEvent) -> Any:
    return json.loads(event.model_dump_json())


def load_history(path: Path, mapper: Mapper, *, workflow_id: str | None = None) -> list[Recorded]:
    """The history in ``path`` (one workflow: ``workflow_id``, or the only one in the file),
    a plan by reference filled in from the payload chunks the file holds."""
    try:
        with path.open("r", encoding="utf-8") as source:
            lines = list(read_lines(source, mapper, name=str(path)))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc.reason}") from exc
    records = [line for line in lines if isinstance(line, Recorded)]
    chunks: dict[str, dict[int, PayloadChunk]] = {}
    for line in lines:
        if isinstance(line, PayloadChunk):
            chunks.setdefault(line.payload_id, {}).setdefault(line.index, line)
    chosen = pick_workflow(records, workflow_id, where=str(path))
    return [_with_plan(record, chunks, where=str(path)) for record in chosen]


def _with_plan(
    record: Recorded, chunks: Mapping[str, Mapping[int, PayloadChunk]], *, where: str
) -> Recorded:
    """``record`` with its plan joined from ``chunks`` if it is a start by reference."""
    event = record.event
    if not isinstance(event, WorkflowStarted) or event.plan is not None or event.plan_ref is None:
        return record
    ref = event.plan_ref
    try:
        plan = ExecutionPlan.model_validate_json(join_payload(ref, chunks.get(ref.payload_id, {})))
    except PayloadError as exc:
        raise ConfigError(f"{where}: the plan of workflow {event.workflow_id}: {exc}") from None
    except ValueError as exc:  # pydantic's ValidationError: the digest matched, the model not
        raise ConfigError(f"{where}: the plan of workflow {event.workflow_id} is invalid") from exc
    return replace(record, event=event.model_copy(update={"plan": plan}))


def read_lines(source: IO[str], mapper: Mapper, *, name: str) -> Iterator[Recorded | PayloadChunk]:
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


def _record(line: str, mapper: Mapper, where: str) -> Recorded | PayloadChunk:
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
    if isinstance(event, PayloadChunk):
        return event  # a chunk of a payload the history refers to
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
