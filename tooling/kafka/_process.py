"""Errors, cache locations, ports and processes of the Kafka tooling (standard library only)."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

HOST = "127.0.0.1"
POLL_SECONDS = 0.05


class KafkaToolingError(Exception):
    """A failure a person can act on.

    ``summary`` is one readable line (what the command line prints); ``details`` holds what
    explains it (Maven's or the broker's last lines) and is part of ``str(error)``.
    """

    def __init__(self, summary: str, details: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.details = details

    def __str__(self) -> str:
        return f"{self.summary}\n{self.details}" if self.details else self.summary


class JarFetchError(KafkaToolingError):
    """Java or Maven is missing, or Maven could not resolve the broker's jars."""


class BrokerStartError(KafkaToolingError):
    """The broker could not be formatted or started, or was not ready in time."""


# --------------------------------------------------------------------------------------------
# Locations and tools


def cache_root() -> Path:
    """``$MESH_CACHE_DIR``, or ``~/.cache/mesh``."""
    configured = os.environ.get("MESH_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "mesh"


def failure_log() -> Path:
    """Where the log of a broker that failed is kept (its data dir is removed)."""
    return cache_root() / "kafka" / "last-failure.log"


def find_java() -> str:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` from PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        tried = f"$JAVA_HOME/bin/java ({java_home}) and " if java_home else ""
        raise JarFetchError(
            f"java not found (tried {tried}PATH): install a Java 17+ runtime "
            "(e.g. openjdk-17-jre-headless) or set JAVA_HOME"
        )
    return found


# --------------------------------------------------------------------------------------------
# Output of tools that failed


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def tail(text: str, lines: int) -> str:
    """The last ``lines`` non-blank lines of ``text``, colour codes removed."""
    kept = [line for line in _ANSI_ESCAPE.sub("", text).splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def as_text(output: str | bytes | None) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


def error_hint(output: str, *, first: bool = False) -> str:
    """The line of some output that most likely says why it failed ("" if none does).

    The last error line for a JVM (later lines are stack frames); the first for Maven (later
    ``[ERROR]`` lines are advice on re-running with -e).
    """
    lines = [line.strip() for line in _ANSI_ESCAPE.sub("", output).splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"\b(ERROR|FATAL)\b|Exception|Error\b", line)]
    if not errors:
        return ""
    hint = errors[0] if first else errors[-1]
    last = lines[-1]
    if not first and last != hint and not last.startswith(("at ", "...", "Caused by", "[")):
        hint = f"{hint} / {last}"  # the JVM's own errors put the reason on the next line
    return hint[:300]


def keep_output(text: str) -> Path | None:
    """Keep what explains a failure where a person can read it; None if that cannot be written."""
    target = failure_log()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError:
        return None
    return target


def run_tool(
    argv: Sequence[str],
    *,
    what: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run a short-lived tool (the storage formatter, keytool) to ``what``.

    A timeout, a tool that cannot run or a non-zero exit raise ``BrokerStartError``: one line
    saying what failed and the tool's likely reason, its last lines as details.
    """
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerStartError(
            f"could not {what} within {timeout:g} s",
            tail(as_text(exc.stdout) + as_text(exc.stderr), 30),
        ) from exc
    except OSError as exc:
        raise BrokerStartError(f"could not run {argv[0]} to {what}: {exc}") from exc
    if done.returncode != 0:
        output = tail(done.stdout + done.stderr, 30)
        hint = error_hint(output) or tail(output, 1)
        raise BrokerStartError(
            f"could not {what} (exit code {done.returncode}){': ' + hint if hint else ''}",
            output,
        )


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock: two test runs fetching at once must not mix their copies."""
    with lock_path.open("a") as handle:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds passwords), replacing it atomically."""
    staging = path.with_name(path.name + ".tmp")
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    staging.replace(path)


# --------------------------------------------------------------------------------------------
# Ports, ids, processes


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct ports the OS reports free on ``host`` (all held until all are known)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int, host: str = HOST) -> bool:
    """True if a server could listen on ``port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the JVM does: connections of a broker just stopped (TIME_WAIT) must not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def accepts_connections(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def new_cluster_id() -> str:
    """A Kafka cluster id (what ``StorageTool random-uuid`` prints), without starting a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka avoids ids that read as command-line options
            return text


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs (macOS): kill(0) is all we know
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def command_line(pid: int) -> str | None:
    """The command line of ``pid`` (None if it cannot be read)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        pass
    try:
        done = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def wait_gone(pid: int, timeout: float) -> bool:
    """Until ``pid`` is gone or ``timeout`` passes; True if it is gone."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True
