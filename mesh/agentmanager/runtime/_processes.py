"""Agent processes this Agent Manager did not start itself, found by pid on this host: check
that a pid still runs a mesh agent (pids are recycled), signal it, and wait for it to go."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

_PID_POLL_SECONDS = 0.05


def is_agent_process(pid: int, agent_id: str) -> bool:
    """``pid`` runs a mesh agent (guards against signalling a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    text = [part.decode(errors="replace") for part in cmdline]
    return ("mesh" in text and "agent" in text and any(agent_id in part for part in text)) or (
        "mesh" in text and "agent" in text and agent_id.endswith(f"-{pid}")
    )


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


async def signal_and_wait(pid: int, grace: float) -> bool:
    """SIGTERM ``pid``, wait up to ``grace`` s, then SIGKILL; True if it had to be killed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        if pid_gone(pid):
            return False
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(_PID_POLL_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while True:  # SIGKILL cannot be ignored: the wait is short
        if pid_gone(pid):
            return True
        await asyncio.sleep(_PID_POLL_SECONDS)


__all__ = ["is_agent_process", "pid_gone", "signal_and_wait"]
