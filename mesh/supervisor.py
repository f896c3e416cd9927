"""A local process supervisor: start mesh processes, read their logs, restart, stop them all.

Used by ``mesh dev`` (the broker's clients: components and demo agents) and by the Agent
Manager's lifecycle (``spawn_agent``). Each child leads a process group of its own, so a Ctrl-C
in the terminal reaches only the supervisor's process, which then stops its children in the
order it chooses (``mesh dev``: agents while the components still take their results, then the
components, then the broker). Children get SIGTERM if the supervisor dies (Linux
``PR_SET_PDEATHSIG``), so even a killed ``mesh dev`` leaves none of them behind.

A child spawned with a :class:`RestartPolicy` is started again when it exits without being
asked to (a crash, a kill -9), after an exponential back-off, until it has restarted
``max_restarts`` times within ``window`` seconds; then the supervisor gives up on it (a crash
loop is not hidden by endless restarts). ``argv_for(n)`` gives the argv of the n-th incarnation,
so a restarted agent can come back under a fresh id.
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

from mesh._aio import cancel_and_wait

LogHandler = Callable[["Child", dict[str, Any] | str], None]
"""Called with each log line of a child: the decoded JSON object, or the raw text."""

ExitHandler = Callable[["Child", int, "float | None"], None]
"""Called when a child exits unasked: the child, its return code, and the delay before its
restart (None: it is not restarted)."""


@dataclass(frozen=True)
class RestartPolicy:
    """Restart a crashed child after ``backoff * 2**k`` seconds (k restarts in the window so
    far, capped at ``max_backoff``), at most ``max_restarts`` times within ``window`` seconds.

    A child that exits 0 unasked is not restarted unless ``restart_clean_exits``: it stopped on
    purpose (someone sent it SIGTERM).
    """

    max_restarts: int = 5
    window: float = 60.0
    backoff: float = 0.5
    max_backoff: float = 30.0
    restart_clean_exits: bool = False

    def delay(self, restarts: Sequence[float], now: float) -> float | None:
        """Seconds to wait before the next restart, or None to give up (``restarts``: the
        monotonic times of earlier restarts)."""
        recent = sum(1 for at in restarts if now - at < self.window)
        if recent >= self.max_restarts:
            return None
        return float(min(self.max_backoff, self.backoff * 2**recent))


_PR_SET_PDEATHSIG = 1


async def _start(
    argv: Sequence[str], env: Mapping[str, str] | None, cwd: str | None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        process_group=0,  # the terminal's Ctrl-C is for the supervisor, which stops the child
        preexec_fn=_die_with_parent,  # only prctl, no locks: safe between fork and exec
    )


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
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    policy: RestartPolicy | None = None
    argv_for: Callable[[int], Sequence[str]] | None = None
    incarnation: int = 0
    """How many times it was restarted; ``argv`` is that incarnation's."""
    restarts: list[float] = field(default_factory=list)
    stopping: bool = False
    """Set once the supervisor was asked to stop it: its exit is not a crash."""
    gave_up: bool = False
    _reader: asyncio.Task[None] | None = None
    _watcher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    @property
    def _watching(self) -> bool:
        """Waiting to be restarted (between a crash and the next incarnation)."""
        return self._watcher is not None and not self._watcher.done()


class Supervisor:
    """Starts children, forwards their log lines, marks them ready, stops them cleanly."""

    def __init__(
        self,
        *,
        on_log: LogHandler | None = None,
        is_ready: Callable[[Child, dict[str, Any]], bool] | None = None,
        keep_lines: int = 200,
        on_exit: ExitHandler | None = None,
    ) -> None:
        self.children: dict[str, Child] = {}
        self._on_log = on_log
        self._is_ready = is_ready
        self._keep_lines = keep_lines
        self._on_exit = on_exit

    async def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        restart: RestartPolicy | None = None,
        argv_for: Callable[[int], Sequence[str]] | None = None,
    ) -> Child:
        """Start ``argv`` (never through a shell); its stderr and stdout are read as log lines.

        With ``restart``, an exit the supervisor did not ask for starts it again under the
        policy (``argv_for(n)`` gives the n-th restart's argv; default: the same argv).
        """
        known = self.children.get(name)
        if known is not None and (known.running or known._watching):
            raise ValueError(f"a process named {name!r} is already running")
        process = await _start(argv, env, cwd)
        child = Child(
            name=name,
            argv=list(argv),
            process=process,
            env=env,
            cwd=cwd,
            policy=restart,
            argv_for=argv_for,
        )
        child._reader = asyncio.create_task(self._read(child), name=f"log-{name}")
        if restart is not None:
            child._watcher = asyncio.create_task(self._watch(child), name=f"watch-{name}")
        self.children[name] = child
        return child

    async def _watch(self, child: Child) -> None:
        """Restart ``child`` under its policy whenever it exits unasked."""
        policy = child.policy
        assert policy is not None
        while True:
            code = await child.process.wait()
            if child.stopping:
                return
            now = asyncio.get_running_loop().time()
            clean = code == 0 and not policy.restart_clean_exits
            delay = None if clean else policy.delay(child.restarts, now)
            if self._on_exit is not None:
                self._on_exit(child, code, delay)
            if delay is None:
                child.gave_up = not clean
                return
            await asyncio.sleep(delay)
            if child.stopping:
                return
            if child._reader is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(child._reader, 5)
            child.incarnation += 1
            child.restarts.append(asyncio.get_running_loop().time())
            argv = child.argv_for(child.incarnation) if child.argv_for else child.argv
            child.argv = list(argv)
            child.ready = asyncio.Event()
            child.process = await _start(argv, child.env, child.cwd)
            child._reader = asyncio.create_task(self._read(child), name=f"log-{child.name}")

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
                try:
                    self._on_log(child, entry)
                except OSError:
                    # Where the lines went is gone (`mesh dev | tee log` after tee got the
                    # Ctrl-C, a closed terminal): keep draining, or the child blocks on a full
                    # pipe and never finishes its shutdown.
                    self._on_log = None

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
        child.stopping = True
        if child._watcher is not None:  # not restarted any more (nor mid-restart)
            await cancel_and_wait(child._watcher)
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
