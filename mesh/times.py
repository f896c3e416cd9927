"""Times as people type them and as mesh prints them: one reader, one format, for every command.

Every option that takes a point in time (``replay --until/--since``, ``tail --from-time``,
``groups reset --to-time``, a request's ``deadline``) reads it with :func:`parse_time`:

- ISO 8601: ``2026-12-05T02:30:00Z``, ``2026-12-05 02:30:00+01:00``, ``2026-12-05``; a time with
  no offset is UTC, so a command means the same instant on every machine;
- a duration: ``15m``, ``2h``, ``1d``, ``90s``, ``500ms``, ``1w`` — that long ago (``-15m`` and
  ``15m ago`` say so explicitly); for a deadline (``ahead=True``) that long from now;
- ``now``; epoch milliseconds (``1796438712092``, as kcat and Kafka's tools print them).

Every time printed is ISO 8601 with a ``T`` and ``Z`` for UTC (:func:`format_time`). Pure:
standard library and ``mesh.errors`` only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Literal

from mesh.errors import ConfigError

_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d|w)?\s*$")
_SPOKEN = re.compile(r"^(-)?\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d|w)(\s+ago)?$")
_EPOCH_MS = re.compile(r"^\d{12,14}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

FORMS = (
    "ISO 8601 (2026-12-05T02:30:00Z; no offset = UTC), a duration such as 15m, 2h or 1d, "
    "'now' or epoch milliseconds"
)
"""The accepted forms, in the words every error and help text uses."""


def parse_duration(value: object) -> float:
    """Seconds in ``90``, ``90.5``, ``"45s"``, ``"30m"``, ``"2h"``, ``"1d"`` (ValueError else)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30m or 3600, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"expected a duration such as 30m, 2h or 3600, got {value!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def parse_time(text: str, *, now: datetime | None = None, ahead: bool = False) -> datetime:
    """The aware UTC instant ``text`` names (see the module docstring); ConfigError otherwise.

    A bare duration counts back from ``now`` (for windows and resets), or forward with
    ``ahead`` (for deadlines); ``-15m`` and ``15m ago`` always count back.
    """
    spoken = text.strip().lower()
    current = (now or datetime.now(UTC)).astimezone(UTC)
    if spoken == "now":
        return current
    if match := _SPOKEN.match(spoken):
        sign, amount, unit, ago = match.groups()
        span = timedelta(seconds=float(amount) * _UNIT_SECONDS[unit])
        return current + span if ahead and not (sign or ago) else current - span
    if _EPOCH_MS.match(spoken):
        return from_millis(int(spoken))
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ConfigError(f"cannot read time {text!r}: give {FORMS}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def to_millis(instant: datetime) -> int:
    """Kafka's timestamp unit: milliseconds since the epoch (exact: no float rounding, so a
    time printed from a record's timestamp names that very millisecond)."""
    return (instant - _EPOCH) // timedelta(milliseconds=1)


def from_millis(millis: int) -> datetime:
    """A record timestamp as an aware datetime."""
    return _EPOCH + timedelta(milliseconds=millis)


Precision = Literal["auto", "seconds", "milliseconds", "microseconds"]


def format_time(instant: datetime | int, timespec: Precision = "milliseconds") -> str:
    """ISO 8601 in UTC with ``T`` and ``Z``: ``2026-12-05T02:30:00.123Z`` (an int is epoch ms)."""
    moment = from_millis(instant) if isinstance(instant, int) else instant
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.astimezone(UTC).isoformat(timespec=timespec)
    return text.removesuffix("+00:00") + "Z"


__all__ = [
    "FORMS",
    "format_time",
    "from_millis",
    "parse_duration",
    "parse_time",
    "to_millis",
]
