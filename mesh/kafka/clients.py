"""Stop aiokafka clients so that none outlives its owner.

An aiokafka client that is cancelled half-way through ``stop()`` (a service stopped by a
timeout, a task cancelled while its ``finally`` runs) keeps its sockets open until the garbage
collector finds them, which in tests turns into a ``ResourceWarning`` far from its cause and in a
long-lived service into leaked connections. :func:`stop_clients` stops every client even if an
earlier one fails or the calling task is cancelled meanwhile, and only then lets the cancel go on.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import structlog

from mesh._aio import uninterrupted

log = structlog.get_logger(__name__)


@runtime_checkable
class Stoppable(Protocol):
    """An aiokafka producer or consumer."""

    async def stop(self) -> None: ...


class Closable(Protocol):
    """An aiokafka admin client."""

    async def close(self) -> None: ...


async def _stop_each(clients: tuple[Stoppable | Closable | None, ...]) -> None:
    for client in clients:
        if client is None:
            continue
        try:
            await (client.stop() if isinstance(client, Stoppable) else client.close())
        except Exception as exc:  # one failing stop must not leave the others open
            log.debug("kafka client stop failed", client=type(client).__name__, error=repr(exc))


async def stop_clients(*clients: Stoppable | Closable | None) -> None:
    """Stop ``clients`` in order (``None`` entries are skipped), all of them, even when the
    calling task is cancelled while they stop; a cancel is re-raised once they have stopped."""
    await uninterrupted(_stop_each(clients))


__all__ = ["Closable", "Stoppable", "stop_clients"]
