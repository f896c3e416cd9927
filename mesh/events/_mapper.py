"""The one serialisation boundary: event ↔ Kafka key, value and headers.

Like eventsourcing's ``Mapper`` and Temporal's ``DataConverter``, nothing else in mesh turns events
into bytes or back, so size limits, version checks and upcasting happen in exactly one place.

Wire format (for non-Python producers):

- key: the event's subject as UTF-8 (see each channel's key in ``schemas/asyncapi.yaml``);
- value: the event as one UTF-8 JSON object, valid against
  ``schemas/events/<type>/v<schema_version>.json``; ``type`` and ``schema_version`` are required;
- headers (UTF-8 strings), so tools can route and filter without decoding the value:

  ``mesh-type``            the event type, e.g. ``task.completed``
  ``mesh-schema-version``  the schema version as a decimal integer, e.g. ``1``
  ``mesh-correlation-id``  the ``correlation_id`` (the originating request)
  ``mesh-event-id``        the ``event_id`` (a UUIDv7)

  Headers are optional when decoding; when present they must agree with the value.

Decoding is bounded, so that no record can stall a consumer: the size is checked first, then that
the value is UTF-8 text, then its nesting depth (a scan of its brackets outside strings, before
any parse), and the parser keeps its own recursion limit while parsing. A consumed record must
also have a key (:meth:`Mapper.decode_record`): every mesh topic is keyed by the event's subject.

Every error is one readable line (safe to copy into a dead-letter header).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol
from uuid import UUID

import pydantic_core
from pydantic import ValidationError

from mesh.errors import EventTooLarge, InvalidEvent, UnknownEventType
from mesh.events._catalog import REGISTRY
from mesh.events._envelope import Event
from mesh.events._registry import EventRegistry

HEADER_TYPE = "mesh-type"
HEADER_SCHEMA_VERSION = "mesh-schema-version"
HEADER_CORRELATION_ID = "mesh-correlation-id"
HEADER_EVENT_ID = "mesh-event-id"
MESH_HEADERS = (HEADER_TYPE, HEADER_SCHEMA_VERSION, HEADER_CORRELATION_ID, HEADER_EVENT_ID)
"""The headers the mapper writes on every record, in order."""
_HEADER_NAMES = frozenset(MESH_HEADERS)

DEFAULT_MAX_EVENT_BYTES = 1_000_000
"""Same default as ``Settings.max_event_bytes`` (Kafka's default record limit is ~1 MiB)."""

DEFAULT_MAX_DEPTH = 64
"""How deeply a value may nest objects and arrays. Mesh events nest about ten levels (a plan in
an API call's arguments); the JSON parser itself gives up at 200."""

_MAX_REASON = 500
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_PAIR = b"()"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")

HeaderValue = bytes | str | None
Headers = Sequence[tuple[str, HeaderValue]] | Mapping[str, HeaderValue]
"""Kafka headers as aiokafka gives them (pairs of name and bytes) or as a mapping (FastStream)."""


class Encoded(NamedTuple):
    """A Kafka record ready to send; unpacks as ``key, value, headers``."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class KeyedRecord(Protocol):
    """What :meth:`Mapper.decode_record` reads from a consumed record (aiokafka's fits)."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class ConsumedRecord(KeyedRecord, Protocol):
    """A consumed record as mesh code reads it (aiokafka's ``ConsumerRecord`` fits): where it
    was read and what it holds; ``value`` is None for a tombstone.

    aiokafka ships no type information, so its ``ConsumerRecord`` is ``Any`` to mypy and a
    parameter typed with it checks nothing; handlers, folders, readers and dead-lettering are
    typed with this instead, and a test double is any object with these fields."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...


class Mapper:
    """Encodes and decodes events with one registry, one size limit and one depth limit."""

    def __init__(
        self,
        registry: EventRegistry = REGISTRY,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        if max_depth < 1:
            raise ValueError("max_depth must be positive")
        self.registry = registry
        self.max_event_bytes = max_event_bytes
        self.max_depth = max_depth
        self._classes: dict[type[Event], tuple[bytes, bytes]] = {}
        """Registered classes seen by ``encode``, with their type and version headers."""

    def encode(self, event: Event) -> Encoded:
        """The Kafka key, value and mesh headers of ``event``.

        Raises ``UnknownEventType`` for a class the registry does not hold and ``EventTooLarge``
        when the value exceeds ``max_event_bytes``.
        """
        cls = type(event)
        known = self._classes.get(cls)
        if known is None:
            event_type, version = cls.event_type(), cls.event_version()
            if cls not in self.registry:
                raise UnknownEventType(
                    f"{cls.__name__} ({event_type} v{version}) is not registered with this mapper",
                    event_type=event_type,
                    version=version,
                )
            known = self._classes[cls] = (event_type.encode(), str(version).encode())
        value = event.model_dump_json().encode()
        if len(value) > self.max_event_bytes:
            self._check_size(len(value), f"{cls.event_type()} v{cls.event_version()} event")
        headers = [
            (HEADER_TYPE, known[0]),
            (HEADER_SCHEMA_VERSION, known[1]),
            (HEADER_CORRELATION_ID, event.correlation_id.encode()),
            (HEADER_EVENT_ID, str(event.event_id).encode()),
        ]
        return Encoded(event.key.encode(), value, headers)

    def decode(self, value: bytes | None, headers: Headers | None = None) -> Event:
        """The event in ``value``, as the newest model of its type (older versions upcast).

        The type and version come from the headers when present, else from the value; both must
        agree. Raises ``EventTooLarge``, ``UnknownEventType`` or ``InvalidEvent``.
        """
        if value is None:
            raise InvalidEvent("the record has no value (a tombstone), not an event")
        if len(value) > self.max_event_bytes:
            self._check_size(len(value), "record")
        mesh = _mesh_headers(headers)
        header_type = mesh.get(HEADER_TYPE)
        # reject unknown types before paying for the JSON parse
        routed = None if header_type is None else self.registry.latest(header_type)
        value = bytes(value)
        _check_text(value)
        _check_depth(value, self.max_depth)
        if routed is not None and mesh.get(HEADER_SCHEMA_VERSION) == _version_text(routed):
            # The headers name the newest version of its type (what every mesh producer
            # writes): parse once. A failure takes the general path, which words the error
            # (a body that disagrees with its headers) the same way as for any other record.
            try:
                event = routed.model_validate_json(value)
            except ValidationError:
                pass
            else:
                _check_ids(event, mesh)
                return event
        data = _parse_object(value)
        event_type, version = _routing(data, mesh)
        latest = self.registry.latest(event_type)
        label = f"{event_type} v{version}"
        if version == latest.event_version():
            raw = value
        else:
            raw = pydantic_core.to_json(self.registry.upcast(event_type, version, data))
            label += f" (upcast to v{latest.event_version()})"
        try:
            event = latest.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidEvent(
                _one_line(f"invalid {label} event: {_first_error(exc)}"),
                event_type=event_type,
                version=version,
            ) from exc
        _check_ids(event, mesh)
        return event

    def decode_record(self, record: KeyedRecord) -> Event:
        """The event in a consumed record: :meth:`decode`, and the record must have a key.

        Every mesh topic is keyed by its events' subject (request, workflow, agent …), which is
        what keeps one subject's events in order on one partition; a keyless record was not
        written by a mesh producer and is refused (``InvalidEvent``).
        """
        if record.key is None:
            raise InvalidEvent(
                "the record has no key; mesh records are keyed by their subject "
                "(request, workflow, agent or correlation id)"
            )
        return self.decode(record.value, record.headers)

    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_event_bytes:
            raise EventTooLarge(
                f"{what} is {size} bytes, over the limit of {self.max_event_bytes} bytes "
                "(max_event_bytes)",
                size=size,
                limit=self.max_event_bytes,
            )


_VERSION_TEXT: dict[type[Event], str] = {}


def _version_text(cls: type[Event]) -> str:
    """``cls``'s schema version as its header spells it (asked for every record decoded)."""
    text = _VERSION_TEXT.get(cls)
    if text is None:
        text = _VERSION_TEXT[cls] = str(cls.event_version())
    return text


def _mesh_headers(headers: Headers | None) -> dict[str, str]:
    """The mesh headers as text; other headers are ignored, conflicting duplicates rejected."""
    if headers is None:
        return {}
    if type(headers) is tuple and len(headers) == len(MESH_HEADERS):
        written = _as_written(headers)
        if written is not None:
            return written
    # aiokafka's tuple first: an isinstance against the Mapping ABC costs more than the rest
    pairs = headers if isinstance(headers, tuple | list) else _pairs(headers)
    found: dict[str, str] = {}
    for raw_name, raw_value in pairs:
        name = raw_name if raw_name in _HEADER_NAMES else raw_name.lower()
        if name not in _HEADER_NAMES or raw_value is None:
            continue
        try:
            text = raw_value.decode() if isinstance(raw_value, bytes) else str(raw_value)
        except UnicodeDecodeError:
            raise InvalidEvent(f"header {name} is not UTF-8 text") from None
        if found.setdefault(name, text) != text:
            raise InvalidEvent(f"header {name} appears twice with different values")
    return found


def _as_written(headers: tuple[tuple[str, HeaderValue], ...]) -> dict[str, str] | None:
    """The headers exactly as :meth:`Mapper.encode` writes them (names in order, bytes values),
    read without the general loop; None for any other shape."""
    try:
        (n0, v0), (n1, v1), (n2, v2), (n3, v3) = headers
    except (TypeError, ValueError):
        return None
    if (n0, n1, n2, n3) != MESH_HEADERS or not (
        type(v0) is type(v1) is type(v2) is type(v3) is bytes
    ):
        return None
    try:
        return {n0: v0.decode(), n1: v1.decode(), n2: v2.decode(), n3: v3.decode()}
    except UnicodeDecodeError:
        return None  # the general loop names the header


def _pairs(headers: Headers) -> Iterable[tuple[str, HeaderValue]]:
    return headers.items() if isinstance(headers, Mapping) else headers


def _check_text(value: bytes) -> None:
    """The value must be UTF-8 (JSON's encoding); say where it is not."""
    if value.isascii():
        return
    try:
        value.decode()
    except UnicodeDecodeError as exc:
        raise InvalidEvent(
            f"the value is not UTF-8 text: byte 0x{value[exc.start]:02x} at offset {exc.start} "
            f"({exc.reason})"
        ) from None


def _check_depth(value: bytes, limit: int) -> None:
    """Refuse a value nested deeper than ``limit`` before parsing it, in linear passes done in C.

    Only the brackets are kept, and each pass removes every innermost pair: a balanced value of
    depth d is empty after d passes (what is left when nothing more goes is unbalanced, for the
    parser to report). Brackets inside strings are counted at first, which is cheap and can only
    be wrong the safe way for a value that is not crafted; a value found too deep is scanned
    again with its strings cut out, so a bracket in a text never refuses an event. (A crafted
    value that hides depth behind brackets in strings still meets the parser's own limit.)
    """
    if value.count(b"[") + value.count(b"{") <= limit:
        return  # cannot nest deeper than it has openings
    if not _deeper(value.translate(_BRACKETS, _NOT_BRACKETS), limit):
        return
    if _deeper(_STRING.sub(b"", value).translate(_BRACKETS, _NOT_BRACKETS), limit):
        raise InvalidEvent(f"the value nests objects and arrays over {limit} levels deep")


def _deeper(skeleton: bytes, limit: int) -> bool:
    """Whether the brackets in ``skeleton`` (as ``(`` and ``)``) nest over ``limit`` deep."""
    if b"(" * (limit + 1) in skeleton:
        return True
    for _ in range(limit):
        inner = skeleton.replace(_PAIR, b"")
        if len(inner) == len(skeleton):
            return False
        skeleton = inner
    return _PAIR in skeleton


def _parse_object(value: bytes) -> dict[str, Any]:
    try:
        data = pydantic_core.from_json(value, allow_inf_nan=False)  # not JSON, cannot round-trip
    except ValueError as exc:
        raise InvalidEvent(_one_line(f"the value is not valid JSON: {exc}")) from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"the value must be a JSON object, not a JSON {_json_kind(data)}")
    return data


def _routing(data: dict[str, Any], mesh: dict[str, str]) -> tuple[str, int]:
    """``(type, schema_version)`` from the value, checked against the headers."""
    if "type" not in data:
        raise InvalidEvent("the value has no 'type' field")
    event_type = data["type"]
    if not isinstance(event_type, str):
        raise InvalidEvent(f"'type' must be a string, not a JSON {_json_kind(event_type)}")
    if "schema_version" not in data:
        raise InvalidEvent(f"the {event_type} value has no 'schema_version' field")
    version = data["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidEvent(
            f"'schema_version' of {event_type} must be a positive integer, got {version!r}"
        )
    header_type = mesh.get(HEADER_TYPE)
    if header_type is not None and header_type != event_type:
        raise InvalidEvent(
            f"header {HEADER_TYPE} is {header_type!r} but the value's type is {event_type!r}"
        )
    header_version = mesh.get(HEADER_SCHEMA_VERSION)
    if header_version is not None and header_version.strip() != str(version):
        raise InvalidEvent(
            f"header {HEADER_SCHEMA_VERSION} is {header_version!r} but the value's "
            f"schema_version is {version}"
        )
    return event_type, version


def _check_ids(event: Event, mesh: dict[str, str]) -> None:
    header_id = mesh.get(HEADER_EVENT_ID)
    # The canonical spelling (what mesh writes) compares as text; any other is parsed.
    if header_id is not None and header_id != str(event.event_id):
        try:
            same = UUID(header_id) == event.event_id
        except ValueError:
            same = False
        if not same:
            raise InvalidEvent(
                f"header {HEADER_EVENT_ID} is {header_id!r} but the value's event_id is "
                f"{str(event.event_id)!r}"
            )
    header_correlation = mesh.get(HEADER_CORRELATION_ID)
    if header_correlation is not None and header_correlation != event.correlation_id:
        raise InvalidEvent(
            f"header {HEADER_CORRELATION_ID} is {header_correlation!r} but the value's "
            f"correlation_id is {event.correlation_id!r}"
        )


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = _location(first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(value)"


def _json_kind(value: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"
