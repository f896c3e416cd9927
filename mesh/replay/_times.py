"""Reading the instants users type for ``--since``/``--until``: ISO 8601 or "that long ago".

Naive timestamps are taken as UTC (what the history records), so the same command means the same
instant on every machine.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from mesh.errors import ConfigError

_AGO = re.compile(r"^-?(\d+(?:\.\d+)?)\s*(s|m|h|d)(?:\s+ago)?$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """The instant ``text`` names: ``now``, an ISO 8601 time (UTC if it has no offset) or a
    duration before now such as ``15m``, ``2h ago`` or ``-1d``; ConfigError otherwise."""
    spoken = text.strip().lower()
    current = now or datetime.now(UTC)
    if spoken == "now":
        return current
    if match := _AGO.match(spoken):
        amount, unit = float(match.group(1)), match.group(2)
        return current - timedelta(**{_UNITS[unit]: amount})
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"cannot read time {text!r}: use ISO 8601 (2026-01-31T12:00:00Z), 'now', "
            "or a duration ago such as 15m, 2h, 1d"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_millis(instant: datetime) -> int:
    """Kafka's timestamp unit: milliseconds since the epoch (exact: no float rounding, so a
    time printed from a record's timestamp names that very millisecond)."""
    return (instant - _EPOCH) // timedelta(milliseconds=1)


def from_millis(millis: int) -> datetime:
    """A record timestamp as an aware datetime."""
    return datetime.fromtimestamp(millis / 1000, UTC)
