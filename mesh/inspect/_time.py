"""Points in time typed on a command line (``--from-time``, ``--to-time``), as epoch milliseconds.

Kafka's offsets-by-timestamp speak milliseconds since the epoch, so every accepted form ends there:

- ISO 8601: ``2026-12-05T02:30:00Z``, ``2026-12-05 02:30:00+01:00``, ``2026-12-05`` (a time with no
  offset is UTC, so a command means the same on every machine);
- relative to now: ``-10m``, ``-2h``, ``-1d``, ``-30s`` (also written ``10m ago``);
- epoch milliseconds: ``1796438712092`` (as kcat and Kafka's own tools print them).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from mesh.errors import ConfigError

_RELATIVE = re.compile(
    r"^-\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$|^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s+ago$"
)
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_EPOCH_MS = re.compile(r"^\d{12,14}$")


def parse_time(text: str, *, now_ms: int | None = None) -> int:
    """Epoch milliseconds for ``text`` (see the module docstring); ``ConfigError`` if unreadable."""
    value = text.strip().lower()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if match := _RELATIVE.match(value):
        amount = match.group(1) or match.group(3)
        unit = match.group(2) or match.group(4)
        return now - int(float(amount) * _UNIT_MS[unit])
    if _EPOCH_MS.match(value):
        return int(value)
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ConfigError(
            f"cannot read time {text!r}: give ISO 8601 (2026-12-05T02:30:00Z; no offset = UTC), "
            "a time ago (-10m, -2h, 1d ago) or epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_time(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds, as printed next to records."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = ["format_time", "parse_time"]
