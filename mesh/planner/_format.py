"""Numbers in words, for rejection reasons and ``mesh plan``."""

from __future__ import annotations

from collections.abc import Sequence


def seconds(value: float) -> str:
    """``45 s``, ``12m 30s``, ``2h 05m``, ``3d 04h``: precise enough to compare at a glance."""
    value = max(0.0, value)
    if value < 60:
        return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def path(ids: Sequence[str], durations: Sequence[float], *, at_most: int = 8) -> str:
    """``design (5m 00s) → implement (15m 00s) → …`` for a critical path."""
    parts = [f"{task_id} ({seconds(d)})" for task_id, d in zip(ids, durations, strict=True)]
    if len(parts) > at_most:
        hidden = len(parts) - at_most + 1
        parts = [*parts[: at_most - 2], f"… {hidden} more …", parts[-1]]
    return " → ".join(parts)


def clip(text: str, limit: int = 2_000) -> str:
    """One line of at most ``limit`` characters (event fields have bounds)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
