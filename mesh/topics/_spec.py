"""What a topic declaration is: the YAML shape, the resolved ``TopicSpec`` and a ``Problem``.

One file under ``topics/`` looks like this (names are logical; the prefix is added on apply)::

    defaults:                    # optional, for every topic of this file
      partitions: 6
      config: {min.insync.replicas: 1}
    topics:
      - name: workflow.events
        description: Every workflow and task lifecycle event (the history).
        key: workflow id
        copartition: workflow    # topics of one group must have equal partition counts
        config:
          cleanup.policy: delete
          retention.ms: 7776000000

The replication factor is usually left out: it then comes from ``--replication-factor`` /
``MESH_TOPIC_REPLICATION_FACTOR``, else the file's ``defaults``, else 1. A topic that pins its
own value keeps it.

An environment (a 3-broker cluster, production) changes the same declarations with an overlay:
a directory holding only ``overlay.yaml``, which names its ``base`` directory, gives
``defaults`` that replace the base files' defaults (``replication_factor``, ``config``) and
patches named topics (``topics:`` items with ``name`` and ``partitions``,
``replication_factor`` or ``config``)::

    base: ../..                  # relative to the overlay's directory
    defaults:
      replication_factor: 3
      config: {min.insync.replicas: 2}
    topics:
      - name: dlq
        config: {retention.ms: 7776000000}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RawDefaults(_Strict):
    """The optional ``defaults:`` block of a file."""

    partitions: int | None = None
    replication_factor: int | None = None
    config: dict[str, Any] = {}


class RawTopic(_Strict):
    """One item of ``topics:`` as written (values are checked by the validator, not here)."""

    name: str
    description: str = ""
    key: str = ""
    partitions: int | None = None
    replication_factor: int | None = None
    copartition: str | None = None
    config: dict[str, Any] = {}


class RawFile(_Strict):
    """A whole file; ``topics`` items are parsed one by one so one bad topic hides no other."""

    defaults: RawDefaults = RawDefaults()
    topics: list[Any] = []


class RawOverlayDefaults(_Strict):
    """An overlay's ``defaults:``: they replace the base files' defaults for every topic."""

    replication_factor: int | None = None
    config: dict[str, Any] = {}


class RawPatch(_Strict):
    """One item of an overlay's ``topics:``: a change to the base topic of that name."""

    name: str
    partitions: int | None = None
    replication_factor: int | None = None
    config: dict[str, Any] = {}


class RawOverlay(_Strict):
    """A whole ``overlay.yaml``; ``topics`` items are parsed one by one, like a file's."""

    base: str
    description: str = ""
    defaults: RawOverlayDefaults = RawOverlayDefaults()
    topics: list[Any] = []


class TopicSpec(BaseModel):
    """One declared topic with defaults and overrides resolved; config values as Kafka strings."""

    model_config = ConfigDict(frozen=True)

    name: str
    """Logical name; the real topic is ``settings.topic_prefix + name``."""
    partitions: int
    replication_factor: int
    config: dict[str, str] = {}
    key: str = ""
    description: str = ""
    copartition: str | None = None
    file: str = ""
    line: int | None = None

    def full_name(self, prefix: str) -> str:
        """The topic's name on the cluster."""
        return f"{prefix}{self.name}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the declarations, located by file, line and topic."""

    file: str
    message: str
    topic: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" topic {self.topic!r}:" if self.topic else ""
        return f"{where}:{who} {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "topic": self.topic, "message": self.message}


@dataclass(frozen=True)
class TopicDeclarations:
    """Every topic read from one directory, plus the problems met while reading it."""

    directory: Path
    files: tuple[str, ...] = ()
    topics: tuple[TopicSpec, ...] = ()
    problems: tuple[Problem, ...] = field(default=())

    def by_name(self) -> dict[str, TopicSpec]:
        """Topics by logical name (the first declaration wins if one is duplicated)."""
        found: dict[str, TopicSpec] = {}
        for spec in self.topics:
            found.setdefault(spec.name, spec)
        return found


def config_text(value: Any) -> str | None:
    """A YAML value as the string Kafka expects, or None if no string fits it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list) and value and all(isinstance(v, str | int) for v in value):
        return ",".join(str(v) for v in value)
    return None
