"""Finishing asyncio work properly: closes that a cancel cannot cut short, helper tasks that
are cancelled and awaited without swallowing a cancel aimed at their owner."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def uninterrupted(closing: Coroutine[Any, Any, None]) -> None:
    """Run ``closing`` to its end even if the calling task is cancelled meanwhile; the cancel
    is re-raised once it has finished (a half-done close leaks what it was closing)."""
    task = asyncio.ensure_future(closing)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


async def _settle(tasks: list[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel the helper ``tasks`` (``None`` skipped) and wait until all have finished; their
    own errors and cancels end with them. Unlike ``suppress(CancelledError)`` around an await,
    a cancel of the *caller* meanwhile is not swallowed: it is re-raised once they are done."""
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    if pending:
        await uninterrupted(_settle(pending))


__all__ = ["cancel_and_wait", "uninterrupted"]
