"""Plain request files (``mesh plan FILE``, ``mesh submit FILE``): YAML or JSON, written by hand.

::

    type: feature                      # the request type (a template name); or task_type
    description: Add a --json flag to `mesh status`
    requirements:                      # strings, or {description, capability, mandatory}
      - Output is one JSON object
    constraints:                       # a mapping (or a list of {name, value})
      max_parallelism: 2
      max_cost: 5
    priority: high                     # low | normal | high | critical
    deadline: 2h                       # ISO 8601 with offset, or a duration from now
    context: {repository: ., language: python}
    id: req-123                        # optional; a fresh id otherwise

Every mistake is one line naming the file and the field, as for plan files.
"""

from __future__ import annotations

import difflib
import json
import os
import socket
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mesh.errors import ConfigError
from mesh.events import Producer, TaskRequest, meta, uuid7, validation_message
from mesh.planner._request import parse_instant

_KEYS = {
    "id",
    "request_id",
    "type",
    "task_type",
    "description",
    "requirements",
    "constraints",
    "priority",
    "deadline",
    "tenant",
    "context",
}


def is_request_document(data: object) -> bool:
    """True for a plain request (a type, no task list), False for an explicit plan file."""
    return (
        isinstance(data, Mapping)
        and ("type" in data or "task_type" in data)
        and "tasks" not in data
        and "plan" not in data
    )


def read_document(path: Path | str, *, text: str | None = None) -> Any:
    """The parsed YAML/JSON of a file (or of ``text``); ConfigError if it cannot be read."""
    source = str(path)
    try:
        raw = text if text is not None else Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it ({exc.strerror or exc})") from exc
    try:
        return json.loads(raw) if source.endswith(".json") else yaml.safe_load(raw)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}:{line} is not valid YAML/JSON: {problem}") from exc


def load_request_file(
    path: Path | str,
    *,
    text: str | None = None,
    producer: Producer | None = None,
    now: datetime | None = None,
) -> TaskRequest:
    """The TaskRequest a request file describes, ready to publish on ``requests``."""
    return request_from_document(read_document(path, text=text), str(path), producer, now)


def request_from_document(
    data: Any, source: str, producer: Producer | None = None, now: datetime | None = None
) -> TaskRequest:
    """A TaskRequest from a parsed request document; ConfigError (one line) if it is wrong."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with 'type' and 'description'")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(_KEYS), 1, 0.7)
        hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(_KEYS))})"
        raise ConfigError(f"{source}: unknown field {unknown[0]!r}{hint}")
    now = now or datetime.now(UTC)
    task_type = data.get("type", data.get("task_type"))
    if task_type is None:
        raise ConfigError(f"{source}: 'type' is missing (the kind of work, e.g. feature)")
    if not data.get("description"):
        raise ConfigError(f"{source}: 'description' is missing (what to do, in words)")
    request_id = str(data.get("id", data.get("request_id")) or f"req-{uuid7().hex[:20]}")
    fields: dict[str, Any] = {
        "request_id": request_id,
        "task_type": str(task_type),
        "description": data.get("description"),
        "requirements": [_requirement(r) for r in _list(data.get("requirements"))],
        "constraints": _constraints(data.get("constraints"), source),
        "priority": data.get("priority", "normal"),
        "tenant": str(data.get("tenant", "default")),
        "context": _json_safe(data.get("context") or {}),
    }
    if data.get("deadline") is not None:
        try:
            fields["deadline"] = parse_instant(data["deadline"], now)
        except ValueError as exc:
            raise ConfigError(f"{source}: deadline: {exc}") from None
    me = producer or Producer(
        component="cli", instance=f"{''.join(socket.gethostname().split())}-{os.getpid()}"
    )
    try:
        return TaskRequest(**meta(me, correlation_id=request_id), **fields)
    except ValidationError as exc:
        renames = {"task_type": "type", "request_id": "id"}
        raise ConfigError(f"{source}: {validation_message(exc, renames=renames)}") from None


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _requirement(item: Any) -> Any:
    if isinstance(item, str):
        return {"description": item}
    return item


def _constraints(value: Any, source: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [{"name": str(k), "value": _scalar(v)} for k, v in value.items()]
    if isinstance(value, list):
        return value
    raise ConfigError(f"{source}: constraints: expected a mapping of name: value")


def _scalar(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _json_safe(value: Any) -> Any:
    """YAML dates and times become ISO text, so the context is plain JSON."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
