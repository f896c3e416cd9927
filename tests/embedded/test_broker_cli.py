"""``mesh broker start|status|stop`` against the real Tansu binary, as separate processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.broker._probe import free_port, metadata_answers
from mesh.broker.embedded import EmbeddedBroker
from tests.helpers import assert_one_line_error, run_mesh


@pytest.fixture
def state_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {"MESH_STATE_DIR": str(tmp_path / "state")}
    yield env
    run_mesh("broker", "stop", env=env)  # never leave a broker behind, even on failure


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
    return bool(stat) and stat.rsplit(")", 1)[-1].split()[0] != "Z"


def test_start_status_stop_round_trip(state_env: dict[str, str]) -> None:
    """start returns once the broker answers metadata; status finds it; stop ends the process."""
    port = free_port()
    started = run_mesh("broker", "start", "--port", str(port), "--json", env=state_env)
    assert started.code == 0, started.stderr
    info = json.loads(started.stdout)
    assert info["port"] == port
    assert metadata_answers("127.0.0.1", port)

    status = run_mesh("broker", "status", "--json", env=state_env)
    assert status.code == 0
    assert json.loads(status.stdout)["running"] is True

    stopped = run_mesh("broker", "stop", env=state_env)
    assert stopped.code == 0, stopped.stderr
    assert not _pid_alive(info["pid"])
    assert run_mesh("broker", "status", env=state_env).code == 1


def test_port_taken_is_one_line(state_env: dict[str, str]) -> None:
    """A port that is already taken gives one readable line and a non-zero exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        line = assert_one_line_error(
            run_mesh("broker", "start", "--port", str(port), env=state_env)
        )
    assert "already in use" in line


def test_missing_binary_is_one_line(state_env: dict[str, str], tmp_path: Path) -> None:
    """A missing broker binary gives one readable line, not a traceback."""
    env = {**state_env, "CALF_TANSU_BIN": str(tmp_path / "no-such-tansu")}
    line = assert_one_line_error(run_mesh("broker", "start", env=env))
    assert "binary" in line


def test_stop_without_broker_is_one_line(state_env: dict[str, str]) -> None:
    assert_one_line_error(run_mesh("broker", "stop", env=state_env))


def test_foreground_stays_attached_and_stops_on_signal(state_env: dict[str, str]) -> None:
    """--foreground serves until interrupted and leaves no broker process behind."""
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "mesh", "broker", "start", "--foreground", "--port", str(port)],
        env={**os.environ, **state_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # blocks until the ready line (or EOF on failure)
            assert "ready" in line, proc.stderr.read() if proc.stderr else ""
            state = EmbeddedBroker.read_state(Path(state_env["MESH_STATE_DIR"]))
            assert state is not None
            assert state.port == port
            assert metadata_answers("127.0.0.1", port)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
            deadline = time.monotonic() + 10
            while _pid_alive(state.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _pid_alive(state.pid)
            assert EmbeddedBroker.read_state(Path(state_env["MESH_STATE_DIR"])) is None
        finally:
            if proc.poll() is None:
                proc.kill()


def test_context_manager_api() -> None:
    """The Python API starts a broker for the block and stops it after."""
    with EmbeddedBroker() as broker:
        assert broker.pid is not None
        pid = broker.pid
        assert metadata_answers("127.0.0.1", broker.port)
    assert not _pid_alive(pid)
