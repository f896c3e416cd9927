"""Which model reads which ``(type, schema_version)``, and how old versions are upcast.

Consumers always get the newest model of a type: an older payload is lifted one version at a
time by registered upcasters (eventsourcing's ``upcast_v1_v2``) before it is validated, so
handlers and deciders only ever see the current shape. Old models may stay registered so that
their schemas stay published for producers that still write them.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from mesh.errors import InvalidEvent, UnknownEventType
from mesh.events._envelope import Event

E = TypeVar("E", bound=type[Event])

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the JSON object of version n into the JSON object of version n + 1."""

TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
"""Event types are dotted lower-case names such as ``task.completed``."""


class EventRegistry:
    """Event models by ``(type, schema_version)`` plus the upcasters between versions."""

    def __init__(self, events: Iterable[type[Event]] = ()) -> None:
        self._models: dict[str, dict[int, type[Event]]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._latest: dict[str, type[Event]] = {}
        """The newest model per type, kept by ``register`` (decoding asks for every record)."""
        for cls in events:
            self.register(cls)

    def register(self, cls: E) -> E:
        """Add an event class (usable as a class decorator)."""
        if inspect.isabstract(cls):
            raise TypeError(f"{cls.__name__} is abstract (it does not define `key`)")
        event_type, version = cls.event_type(), cls.event_version()
        if not TYPE_PATTERN.match(event_type):
            raise ValueError(f"{cls.__name__}: type {event_type!r} is not a dotted lower-case name")
        if version < 1:
            raise ValueError(f"{cls.__name__}: schema_version must be >= 1")
        versions = self._models.setdefault(event_type, {})
        existing = versions.get(version)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"{event_type} v{version} is already registered to {existing.__name__}; "
                f"bump {cls.__name__}'s schema_version"
            )
        versions[version] = cls
        self._latest[event_type] = versions[max(versions)]
        return cls

    def add_upcaster(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """Register how to lift ``event_type`` from ``from_version`` to ``from_version + 1``."""
        if from_version < 1:
            raise ValueError("from_version must be >= 1")
        if (event_type, from_version) in self._upcasters:
            raise ValueError(f"an upcaster for {event_type} v{from_version} already exists")
        self._upcasters[(event_type, from_version)] = upcaster

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of :meth:`add_upcaster`."""

        def decorate(upcaster: Upcaster) -> Upcaster:
            self.add_upcaster(event_type, from_version, upcaster)
            return upcaster

        return decorate

    def __iter__(self) -> Iterator[type[Event]]:
        """Every registered model, ordered by type then version."""
        for event_type in sorted(self._models):
            versions = self._models[event_type]
            for version in sorted(versions):
                yield versions[version]

    def __len__(self) -> int:
        return sum(len(versions) for versions in self._models.values())

    def __contains__(self, cls: object) -> bool:
        if not (isinstance(cls, type) and issubclass(cls, Event)):
            return False
        return self._models.get(cls.event_type(), {}).get(cls.event_version()) is cls

    def types(self) -> list[str]:
        """Every registered type, sorted."""
        return sorted(self._models)

    def versions(self, event_type: str) -> list[int]:
        """Versions of a type that can be read: those with a model and those with an upcaster."""
        readable = set(self._models.get(event_type, {}))
        readable.update(v for (t, v) in self._upcasters if t == event_type)
        return sorted(v for v in readable if self._chain_ok(event_type, v))

    def latest(self, event_type: str) -> type[Event]:
        """The newest model of a type (what decoding returns)."""
        latest = self._latest.get(event_type)
        if latest is None:
            raise UnknownEventType(self._unknown_type_message(event_type), event_type=event_type)
        return latest

    def model(self, event_type: str, version: int) -> type[Event]:
        """The model registered for exactly this type and version."""
        cls = self._models.get(event_type, {}).get(version)
        if cls is None:
            self.latest(event_type)  # raises for an unknown type
            raise UnknownEventType(
                f"no model for {event_type} v{version}", event_type=event_type, version=version
            )
        return cls

    def upcast(self, event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Lift a JSON object of ``event_type`` v``version`` to the newest version."""
        latest = self.latest(event_type).event_version()
        if version > latest:
            raise UnknownEventType(
                f"{event_type} v{version} is newer than this build reads (up to v{latest}); "
                "upgrade the consumer",
                event_type=event_type,
                version=version,
            )
        if not self._chain_ok(event_type, version):
            raise UnknownEventType(
                f"{event_type} v{version} cannot be read: no upcaster from v{version} "
                f"(readable: {', '.join(f'v{v}' for v in self.versions(event_type))})",
                event_type=event_type,
                version=version,
            )
        for step in range(version, latest):
            try:
                lifted = self._upcasters[(event_type, step)](dict(data))
            except Exception as exc:  # an upcaster is user code: report, never crash the consumer
                raise InvalidEvent(
                    f"upcasting {event_type} v{step} to v{step + 1} failed: "
                    f"{type(exc).__name__}: {exc}",
                    event_type=event_type,
                    version=step,
                ) from exc
            if not isinstance(lifted, dict):
                raise InvalidEvent(
                    f"upcasting {event_type} v{step} to v{step + 1} returned "
                    f"{type(lifted).__name__}, not a JSON object"
                )
            data = {**lifted, "schema_version": step + 1}
        return data

    def problems(self) -> list[str]:
        """Gaps that would make a registered old version unreadable (for tests and `check`)."""
        found: list[str] = []
        for event_type, versions in sorted(self._models.items()):
            for version in sorted(versions):
                if not self._chain_ok(event_type, version):
                    found.append(
                        f"{event_type} v{version} has a model but no upcaster chain to "
                        f"v{max(versions)}"
                    )
        for event_type, version in sorted(self._upcasters):
            if event_type not in self._models:
                found.append(f"upcaster for {event_type} v{version} but no model of that type")
        return found

    def _chain_ok(self, event_type: str, version: int) -> bool:
        versions = self._models.get(event_type)
        if not versions:
            return False
        latest = max(versions)
        return version <= latest and all(
            (event_type, step) in self._upcasters for step in range(version, latest)
        )

    def _unknown_type_message(self, event_type: str) -> str:
        close = difflib.get_close_matches(event_type, list(self._models), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown event type {event_type!r}{hint}"
