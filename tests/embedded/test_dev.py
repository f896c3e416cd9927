"""`mesh dev` as a user runs it: a ready line, real child processes, Ctrl-C leaves none."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mesh.broker._probe import free_port, metadata_answers
from tests.e2e import ROOT, pid_alive


def _descendants(pid: int) -> set[int]:
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


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port, ui_port = free_port(), free_port()
    env = {**os.environ, "MESH_STATE_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-m", "mesh", "dev", "--port", str(port), "--ui-port", str(ui_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as dev:
        try:
            assert dev.stdout is not None
            line = dev.stdout.readline()  # blocks until the first line: "mesh ready …" or EOF
            assert "mesh ready" in line, line
            assert metadata_answers("127.0.0.1", port)
            console = [dev.stdout.readline() for _ in range(2)][-1]  # after the export line
            assert f"console http://127.0.0.1:{ui_port}/" in console, console
            page = httpx.get(f"http://127.0.0.1:{ui_port}/workflows", timeout=30)
            assert page.status_code == 200
            children = _descendants(dev.pid)
            # broker + workflows + planner + 2 command agents + 1 Python agent
            assert len(children) >= 6, children
            dev.send_signal(signal.SIGINT)
            assert dev.wait(timeout=120) == 0
            deadline = time.monotonic() + 30
            while any(pid_alive(p) for p in children) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [p for p in children if pid_alive(p)] == []
            assert not metadata_answers("127.0.0.1", port)
        finally:
            if dev.poll() is None:
                dev.kill()
