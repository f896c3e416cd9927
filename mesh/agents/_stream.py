"""A running attempt's output as ``TaskOutput`` chunks on ``tasks.output``, while it runs.

A runner hands text to :meth:`AttemptOutput.write` (never blocking, from the event loop or any
thread); a flusher publishes what came in every ``interval`` seconds, one chunk per stream, whole
lines only (a partial line waits for its end, the attempt's end, or until it fills a chunk).
That batching is the rate limit: however chatty the program, a stream costs at most a few events
a second. Past ``cap`` bytes per attempt the chunk that reaches the cap is marked ``truncated``
and the rest dropped; text beyond the cap is dropped as it comes, so the buffer never holds more
than the cap either.

Publishing is best effort, like progress: a chunk the broker does not take is logged and lost,
never the attempt. :meth:`AttemptOutput.close` publishes the remainder before the result is
reported, so the chunks of an attempt come before its outcome on the consumer's screen.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from pydantic import ValidationError

from mesh._aio import cancel_and_wait
from mesh.errors import BrokerError, EventError
from mesh.events import OutputStream
from mesh.log import get_logger

Publish = Callable[[OutputStream, int, str, bool], Awaitable[None]]
"""Sends one chunk: ``(stream, chunk number, text, truncated)``."""

CHUNK_CHARS = 64 * 1024
"""Most text in one chunk (a burst larger than this goes out as several chunks)."""

log = get_logger("mesh.agents.output")


class AttemptOutput:
    """The output of one attempt: buffered by stream, published in bounded chunks."""

    def __init__(self, publish: Publish, *, interval: float, cap: int) -> None:
        self._publish = publish
        self._interval = interval
        self._room = cap
        self._pending: dict[OutputStream, str] = {}
        self._pending_chars = 0
        self._lock = threading.Lock()  # write() may come from a Python agent's worker thread
        self._chunk = 0
        self._truncated = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._flusher_asked = False

    @property
    def truncated(self) -> bool:
        """Whether output was dropped at the cap."""
        return self._truncated

    @property
    def buffered(self) -> int:
        """Characters taken in and not yet published."""
        return self._pending_chars

    def write(self, stream: OutputStream, text: str) -> None:
        """Take ``text`` printed on ``stream``; returns at once (it is published later)."""
        if not text or self._closed:
            return
        with self._lock:
            if self._truncated:
                return
            # One character past the room is enough for _take to see the cap reached (a
            # character is at least a byte), so more is never kept.
            text = text[: max(0, self._room + 1 - self._pending_chars)]
            self._pending_chars += len(text)
            self._pending[stream] = self._pending.get(stream, "") + text
            ask = not self._flusher_asked and self._loop is not None
            self._flusher_asked = self._flusher_asked or ask
        if ask:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._start_flusher)

    def start(self) -> None:
        """Publish in the running loop from now on (the flusher starts with the first text, so
        an attempt that prints nothing costs nothing)."""
        self._loop = asyncio.get_running_loop()

    def _start_flusher(self) -> None:
        if self._flusher is None and not self._closed:
            self._flusher = asyncio.create_task(self._flush_every())

    async def close(self) -> None:
        """Publish what is left (partial lines too) and stop."""
        self._closed = True
        if self._flusher is not None:
            await cancel_and_wait(self._flusher)
        await self._flush(final=True)

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._flush(final=False)

    async def _flush(self, *, final: bool) -> None:
        for stream, text, cut in self._take(final):
            # At least one chunk, so that a cap reached exactly still sends its marker.
            pieces = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
            for number, piece in enumerate(pieces or [""], start=1):
                await self._send(stream, piece, cut and number == max(len(pieces), 1))

    def _take(self, final: bool) -> list[tuple[OutputStream, str, bool]]:
        """What is ready to go, each stream's text cut at the cap (the cap is in UTF-8 bytes)."""
        ready: list[tuple[OutputStream, str, bool]] = []
        with self._lock:
            for stream, text in list(self._pending.items()):
                end = len(text) if final else text.rfind("\n") + 1
                if end == 0 and len(text) >= CHUNK_CHARS:
                    end = len(text)  # a line that long goes out in pieces
                if end == 0:
                    continue
                self._pending[stream] = text[end:]
                self._pending_chars -= end
                send = text[:end]
                size = len(send.encode("utf-8", errors="replace"))
                cut = size > self._room
                if cut:
                    send = _prefix_of_bytes(send, self._room)
                    self._truncated = True
                    self._pending.clear()
                    self._pending_chars = 0
                self._room -= min(size, self._room)
                if send or cut:
                    ready.append((stream, send, cut))
                if cut:
                    break
        return ready

    async def _send(self, stream: OutputStream, text: str, truncated: bool) -> None:
        chunk = self._chunk
        self._chunk += 1
        try:
            await self._publish(stream, chunk, text, truncated)
        except (ValidationError, EventError, BrokerError) as exc:
            log.warning("output not published", chunk=chunk, error=str(exc).splitlines()[0])


def _prefix_of_bytes(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``limit`` bytes."""
    return text.encode("utf-8", errors="replace")[:limit].decode("utf-8", errors="ignore")


def no_output(stream: OutputStream, text: str) -> None:
    """An :data:`~mesh.agents._outcome.OutputFn` that drops everything (tests, tools)."""


__all__ = ["CHUNK_CHARS", "AttemptOutput", "Publish", "no_output"]
