"""Time-ordered event ids (UUIDv7, RFC 9562) from the standard library.

Python gains ``uuid.uuid7`` only in 3.14. Event ids must sort by creation time so that a log of
ids reads in order and an index on them stays append-only; within one process they must also be
strictly increasing, even when many are made in the same millisecond or the clock steps back.
That is RFC 9562's "method 1": a 12-bit counter in ``rand_a`` that starts at a random value with
its top bit clear (room to count) and, if it still runs out, borrows the next millisecond.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime
from uuid import UUID

_COUNTER_MAX = 0xFFF
_lock = threading.Lock()
_last_ms = 0
_counter = 0


def _layout(unix_ms: int, counter: int, rand_b: int) -> UUID:
    """Pack a UUIDv7: 48-bit ms timestamp, version 7, 12-bit counter, variant 10, 62 random bits."""
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= (counter & _COUNTER_MAX) << 64
    value |= 0b10 << 62
    value |= rand_b & ((1 << 62) - 1)
    return UUID(int=value)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def uuid7() -> UUID:
    """A new UUIDv7, strictly greater than every one this process made before."""
    global _last_ms, _counter
    with _lock:
        now_ms = _now_ms()
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = secrets.randbits(11)  # top bit clear: at least 2048 ids before a borrow
        else:  # same millisecond, or the clock stepped back: keep counting from the last id
            _counter += 1
            if _counter > _COUNTER_MAX:
                _last_ms += 1
                _counter = secrets.randbits(11)
        unix_ms, counter = _last_ms, _counter
    return _layout(unix_ms, counter, secrets.randbits(62))


def uuid7_time(value: UUID) -> datetime:
    """The UTC millisecond a UUIDv7 was made (for debugging and replay tools)."""
    if value.version != 7:
        raise ValueError(f"{value} is a version {value.version} UUID, not version 7")
    return datetime.fromtimestamp((value.int >> 80) / 1000, tz=UTC)
