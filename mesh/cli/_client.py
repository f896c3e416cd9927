"""How a command reaches the mesh: every publish and call goes through one :class:`mesh.Client`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mesh.client import DEFAULT_TIMEOUT, Client
from mesh.settings import Settings

T = TypeVar("T")


def with_client(
    settings: Settings, work: Callable[[Client], Awaitable[T]], *, timeout: float = DEFAULT_TIMEOUT
) -> T:
    """Run ``work`` with a connected client (closed afterwards, however ``work`` ends)."""

    async def run() -> T:
        async with Client(settings, timeout=timeout) as client:
            return await work(client)

    return asyncio.run(run())
