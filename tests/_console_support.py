"""The console as a real process (``mesh ui``), a server-sent-events reader and the browser."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tooling.browser.chromium import available
from tooling.browser.chromium import chrome as chrome


@dataclass
class Console:
    process: subprocess.Popen[str]
    url: str


@contextlib.contextmanager
def console(env: dict[str, str], *args: str) -> Iterator[Console]:
    """``mesh ui --port 0 --json`` until the block ends; its URL from the ready line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mesh", "ui", "--port", "0", "--json", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the console prints it once it listens, or exits
        if not line:
            raise AssertionError(f"mesh ui exited: {process.communicate(timeout=10)[1]}")
        yield Console(process, json.loads(line)["url"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


async def read_events(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    stop: Any,
    within: float = 60.0,
) -> list[tuple[str | None, str, dict[str, Any]]]:
    """(id, event, data) of each server-sent event from ``url`` until ``stop(events)`` is true;
    AssertionError naming what came if that takes longer than ``within`` seconds."""
    events: list[tuple[str | None, str, dict[str, Any]]] = []
    deadline = time.monotonic() + within
    current: dict[str, str] = {}
    async with client.stream("GET", url, headers=headers, timeout=within) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if time.monotonic() > deadline:
                raise AssertionError(f"stream did not finish in {within} s: {events[-3:]}")
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(": ")
                current[name] = value
                continue
            if "data" in current:
                events.append(
                    (
                        current.get("id"),
                        current.get("event", "message"),
                        json.loads(current["data"]),
                    )
                )
                if stop(events):
                    return events
            current = {}
    raise AssertionError(f"stream ended early after {len(events)} events")


def browser_or_skip() -> None:
    """Skip (fail under CI=true) when Debian's chromium and chromedriver are missing."""
    if available():
        return
    message = "needs /usr/bin/chromium and /usr/bin/chromedriver (tooling/browser/install)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def artifacts_dir() -> Path:
    """``$MESH_ARTIFACTS`` (made if missing), else a temporary folder."""
    folder = os.environ.get("MESH_ARTIFACTS")
    path = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="mesh-artifacts-"))
    path.mkdir(parents=True, exist_ok=True)
    return path
