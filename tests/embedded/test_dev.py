"""`mesh dev` as a user runs it: a ready line, real child processes, and Ctrl-C stops all of them
cleanly — in a terminal, and piped through ``tee`` (which the same Ctrl-C kills).

Ctrl-C is SIGINT to the terminal's foreground process group: ``mesh dev`` and, in a pipeline,
``tee``. Every process ``mesh dev`` started (broker, components, agents) must be gone after it,
no client may be left unclosed ("Unclosed AIOKafkaProducer"), and each agent must have stopped
gracefully (``agent terminated``), which needs the broker alive until the agents are done.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from mesh.broker._probe import free_port, metadata_answers
from tests._agents_support import eventually, pid_gone
from tests._terminal import Terminal
from tests.e2e import ROOT

READY_WITHIN = 120.0
STOPPED_WITHIN = 60.0
AGENTS = 4
"""The demo agents of ``mesh dev``'s defaults: two command agents, one Python agent and one
workshop agent."""


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def clients_of(bootstrap: str) -> set[int]:
    """Live processes anywhere on the machine configured for this broker (components, agents,
    and whatever they started): one that escaped the process tree is found too."""
    wanted = f"MESH_BOOTSTRAP_SERVERS={bootstrap}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in environ and not pid_gone(int(entry.name)):
            found.add(int(entry.name))
    return found


def mesh_dev(port: int, ui_port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "mesh", "dev"),
        *("--port", str(port), "--ui-port", str(ui_port)),
    ]


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "MESH_STATE_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}


async def stop_with_ctrl_c(dev: subprocess.Popen[bytes], port: int) -> None:
    """Check what ``mesh dev`` started, press Ctrl-C, wait until all of it is gone."""
    bootstrap = f"127.0.0.1:{port}"
    assert metadata_answers("127.0.0.1", port)
    started = descendants(dev.pid)
    agents = {pid for pid in started if " agent run " in command_line(pid)}
    assert len(agents) == AGENTS, [command_line(pid) for pid in started]
    assert agents <= clients_of(bootstrap)
    # broker + workflows + agent manager + planner + resources + the agents
    assert len(started) >= 5 + AGENTS, [command_line(pid) for pid in started]

    os.killpg(dev.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    assert await asyncio.to_thread(dev.wait, STOPPED_WITHIN) == 0
    await eventually(
        lambda: all(pid_gone(pid) for pid in started),
        what="every process mesh dev started to be gone",
        within=STOPPED_WITHIN,
    )
    assert clients_of(bootstrap) == set()
    assert not metadata_answers("127.0.0.1", port)


def assert_clean(output: str) -> None:
    assert "Unclosed" not in output, output
    assert "Traceback" not in output, output
    assert output.count("agent terminated") == AGENTS, output
    assert "workflows stopped" in output, output


@contextmanager
def piped_through_tee(
    port: int, ui_port: int, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """``mesh dev 2>err.log | tee out.log``, both in one process group as a shell puts a
    pipeline; always stopped (killed if need be)."""
    with (tmp_path / "err.log").open("wb") as stderr:
        dev = subprocess.Popen(
            mesh_dev(port, ui_port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env(tmp_path),
            cwd=ROOT,
            process_group=0,
        )
    assert dev.stdout is not None
    tee = subprocess.Popen(
        ["tee", str(tmp_path / "out.log")],
        stdin=dev.stdout,
        stdout=subprocess.DEVNULL,
        process_group=dev.pid,
    )
    dev.stdout.close()  # tee alone reads it
    try:
        yield dev, tee
    finally:
        for process in (dev, tee):
            if process.poll() is None:
                process.kill()
                process.wait()


async def test_ctrl_c_in_a_terminal_stops_everything(tmp_path: Path) -> None:
    """The ready line names the console, which answers; Ctrl-C then stops everything."""
    port, ui_port = free_port(), free_port()
    terminal = Terminal(mesh_dev(port, ui_port), env=env(tmp_path), cwd=ROOT, own_group=True)
    try:
        await asyncio.to_thread(terminal.wait_for, "mesh ready", READY_WITHIN)
        console = f"http://127.0.0.1:{ui_port}/"
        await asyncio.to_thread(terminal.wait_for, f"console {console}", READY_WITHIN)
        async with httpx.AsyncClient() as http:
            page = await http.get(f"{console}workflows", timeout=30)
        assert page.status_code == 200
        await stop_with_ctrl_c(terminal.process, port)
        await asyncio.to_thread(terminal.wait_closed, STOPPED_WITHIN)
    finally:
        terminal.close()
    assert "stopping" in terminal.text
    assert_clean(terminal.text)


async def test_ctrl_c_on_mesh_dev_piped_through_tee_stops_everything(tmp_path: Path) -> None:
    """``mesh dev | tee out.log``: Ctrl-C kills tee as well, so the rest of mesh dev's stdout
    has nowhere to go; the stop must still be complete. Its stderr (the processes' logs) stays
    on the terminal, here a file."""
    port, ui_port = free_port(), free_port()
    out_log, err_log = tmp_path / "out.log", tmp_path / "err.log"
    with piped_through_tee(port, ui_port, tmp_path) as (dev, tee):
        await eventually(
            lambda: out_log.exists() and "mesh ready" in out_log.read_text(),
            what="mesh ready",
            within=READY_WITHIN,
        )
        await stop_with_ctrl_c(dev, port)
        assert tee.wait(timeout=STOPPED_WITHIN) == -signal.SIGINT
    assert_clean(err_log.read_text(errors="replace"))
