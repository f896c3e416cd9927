"""Every long-running command as a user starts it in a terminal (a pty): ``mesh run workflows |
planner | resources | agents`` and ``mesh agent run`` log JSON lines with ``--json`` (on a
terminal the default is readable lines, so only the flag can make them JSON), bind their
component, say they are ready, and stop cleanly on Ctrl-C followed by a supervisor's SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mesh.settings import Settings
from tests._agents_support import create_topics, env_for
from tests._terminal import Terminal
from tests.e2e import ROOT

PYTHON_AGENT = ["agent", "run", "--kind", "python", "--module", "mesh.agents.demo"]
WAIT = 60.0


@contextmanager
def on_terminal(settings: Settings, *args: str) -> Iterator[Terminal]:
    terminal = Terminal([sys.executable, "-m", "mesh", *args], env=env_for(settings), cwd=ROOT)
    try:
        yield terminal
    finally:
        terminal.close()


def ctrl_c_then_sigterm(terminal: Terminal) -> int:
    """A Ctrl-C that reached the whole process group, then a supervisor's SIGTERM: still one
    graceful stop. Returns the exit code once the output has ended."""
    terminal.process.send_signal(signal.SIGINT)
    terminal.process.send_signal(signal.SIGTERM)
    terminal.wait_closed(WAIT)
    return terminal.process.wait(timeout=WAIT)


def json_lines(terminal: Terminal) -> list[dict[str, Any]]:
    """Every line of output as a JSON object (fails on the first line that is not one)."""
    entries = []
    for line in terminal.lines():
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n{terminal.text}") from None
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


@pytest.fixture
async def settings(embedded_settings: Settings) -> Settings:
    await create_topics(embedded_settings)
    return embedded_settings


@pytest.mark.parametrize(
    ("args", "ready", "component"),
    [
        (["run", "workflows"], "workflows ready", "workflows"),
        (["run", "planner"], "planner ready", "planner"),
        (["run", "resources"], "resources ready", "resources"),
        (["run", "agents"], "agent manager ready", "agent-manager"),
        ([*PYTHON_AGENT, "--id", "json-1"], "agent ready", "agent"),
    ],
    ids=["workflows", "planner", "resources", "agents", "agent"],
)
async def test_json_flag_logs_json_lines_and_ctrl_c_stops_cleanly(
    settings: Settings, args: list[str], ready: str, component: str
) -> None:
    with on_terminal(settings, *args, "--json") as terminal:
        await asyncio.to_thread(terminal.wait_for, f'"{ready}"', WAIT)
        code = await asyncio.to_thread(ctrl_c_then_sigterm, terminal)
    assert code == 0, terminal.text
    assert "Unclosed" not in terminal.text, terminal.text
    entries = json_lines(terminal)
    assert ready in [entry["event"] for entry in entries]
    assert {entry["component"] for entry in entries} == {component}
    if component == "agent":
        assert {entry["instance"] for entry in entries} == {"json-1"}


async def test_without_the_flag_a_terminal_gets_readable_lines(settings: Settings) -> None:
    with on_terminal(settings, *PYTHON_AGENT, "--id", "console-1") as terminal:
        await asyncio.to_thread(terminal.wait_for, "agent ready", WAIT)
        assert await asyncio.to_thread(ctrl_c_then_sigterm, terminal) == 0, terminal.text
    readable = [line for line in terminal.lines() if not line.lstrip().startswith("{")]
    assert readable == terminal.lines()
    assert "agent terminated" in terminal.text
