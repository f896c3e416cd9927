"""A local process supervisor: start mesh processes, read their logs, stop them all.

Used by ``mesh dev`` (the broker's clients: components and demo agents) and by anything that
spawns agent processes on this host. Children get SIGTERM if the supervisor dies (Linux
``PR_SET_PDEATHSIG``), so even a killed ``mesh dev`` leaves no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LogHandler = Callable[["Child", dict[str, Any] | str], None]
"""Called with each log line of a child: the decoded JSON object, or the raw text."""

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: Sequence[str]
    process: asyncio.subprocess.Process
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    lines: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None


class Supervisor:
    """Starts children, forwards their log lines, marks them ready, stops them cleanly."""

    def __init__(
        self,
        *,
        on_log: LogHandler | None = None,
        is_ready: Callable[[Child, dict[str, Any]], bool] | None = None,
        keep_lines: int = 200,
    ) -> None:
        self.children: dict[str, Child] = {}
        self._on_log = on_log
        self._is_ready = is_ready
        self._keep_lines = keep_lines

    async def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> Child:
        """Start ``argv`` (never through a shell); its stderr and stdout are read as log lines."""
        if name in self.children and self.children[name].running:
            raise ValueError(f"a process named {name!r} is already running")
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            preexec_fn=_die_with_parent,  # only prctl, no locks: safe between fork and exec
        )
        child = Child(name=name, argv=list(argv), process=process)
        child._reader = asyncio.create_task(self._read(child), name=f"log-{name}")
        self.children[name] = child
        return child

    async def _read(self, child: Child) -> None:
        stream = child.process.stdout
        assert stream is not None
        while True:
            raw = await stream.readline()
            if not raw:
                break
            text = raw.decode(errors="replace").rstrip()
            if not text:
                continue
            child.lines.append(text)
            del child.lines[: -self._keep_lines]
            entry: dict[str, Any] | str = text
            with contextlib.suppress(ValueError):
                decoded = json.loads(text)
                if isinstance(decoded, dict):
                    entry = decoded
            if isinstance(entry, dict) and self._is_ready and self._is_ready(child, entry):
                child.ready.set()
            if self._on_log is not None:
                self._on_log(child, entry)

    async def wait_ready(self, within: float) -> list[str]:
        """Wait until every child is ready; returns the names that are not (died or too slow)."""

        async def one(child: Child) -> None:
            exited: Awaitable[int] = child.process.wait()
            ready = asyncio.ensure_future(child.ready.wait())
            done_task = asyncio.ensure_future(exited)
            await asyncio.wait({ready, done_task}, return_when=asyncio.FIRST_COMPLETED)
            for task in (ready, done_task):
                task.cancel()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(one(c) for c in self.children.values())), within
            )
        return [name for name, c in self.children.items() if not (c.ready.is_set() and c.running)]

    async def stop(self, name: str, *, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        child = self.children.get(name)
        if child is None:
            return None
        if child.running:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()
        if child._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(child._reader, 5)
        return child.process.returncode

    async def stop_all(self, *, grace: float = 10.0) -> None:
        """Stop every child concurrently."""
        await asyncio.gather(*(self.stop(name, grace=grace) for name in list(self.children)))
