"""A real Apache Kafka broker on loopback, for the integration tests and for users' scripts.

One combined broker+controller in KRaft mode, run straight from the Maven Central artifacts of
``org.apache.kafka:kafka_2.13`` (no Docker, no distribution tarball). Standard library only: it
runs before mesh is installed (a fresh clone, the first step of CI).

- :func:`fetch_jars` resolves the jars with Maven from the ``pom.xml`` beside this file and caches
  them under ``$MESH_CACHE_DIR/kafka/<version>/libs`` (``~/.m2`` caches the downloads themselves).
- :class:`ApacheKafka` formats storage, picks free ports, starts the broker, waits until it serves
  clients and stops it again; a context manager, and stopped at interpreter exit regardless.
- The command line (``scripts/kafka-broker fetch|start|stop|status|run``) does the same for a
  person or a script; ``start`` leaves the broker running in the background and records it in
  ``$MESH_CACHE_DIR/kafka/run.json`` so that ``status`` and ``stop`` find it later.

Listeners, all on 127.0.0.1: PLAINTEXT (``bootstrap_servers``), SASL_PLAINTEXT with mechanism
PLAIN and the users in :data:`SASL_USERS` (``sasl_bootstrap_servers``), and the controller's own.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.yaml"
READY_LINE = b"Kafka Server started"
SASL_USERS: Mapping[str, str] = {"mesh": "mesh-secret"}
DEFAULT_HEAP = "512m"
DEFAULT_START_TIMEOUT = 120.0
STOP_GRACE_SECONDS = 20.0
MAVEN_TIMEOUT = 1800.0
_POLL_SECONDS = 0.05
_START_ATTEMPTS = 3
_LOG_TAIL_LINES = 30
_COMPLETE_MARKER = ".complete"


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


def state_file() -> Path:
    """Where ``start`` records the background broker."""
    return cache_root() / "kafka" / "run.json"


def failure_log() -> Path:
    """Where the log of a broker that failed is kept (its data dir is removed)."""
    return cache_root() / "kafka" / "last-failure.log"


def kafka_version(pom: Path = POM) -> str:
    """The ``kafka.version`` property of the pom beside this file."""
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom.read_text())
    if match is None:
        raise JarFetchError(f"no <kafka.version> property in {pom}")
    return match.group(1)


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


def find_maven() -> str:
    """``mvn`` from PATH."""
    found = shutil.which("mvn")
    if found is None:
        raise JarFetchError(
            "mvn not found on PATH: install Apache Maven 3.6+ (e.g. the 'maven' package); "
            "it resolves the Kafka broker's jars from Maven Central"
        )
    return found


# --------------------------------------------------------------------------------------------
# Jars


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _tail(text: str, lines: int) -> str:
    kept = [line for line in _ANSI_ESCAPE.sub("", text).splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def _listed_jars_present(libs: Path, marker: Path) -> bool:
    try:
        names = marker.read_text().split()
    except OSError:
        return False
    return bool(names) and all((libs / name).is_file() for name in names)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock: two test runs fetching at once must not mix their copies."""
    with lock_path.open("a") as handle:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def fetch_jars(version: str | None = None) -> Path:
    """The directory of the broker's runtime jars, resolved with Maven on first use.

    The copy lands in a staging directory that is renamed into place; the marker listing the jars
    is written last, so a run cut short is simply redone.
    """
    version = version or kafka_version()
    home = cache_root() / "kafka" / version
    libs = home / "libs"
    marker = home / _COMPLETE_MARKER
    if _listed_jars_present(libs, marker):
        return libs
    try:
        return _fetch_into(home, libs, marker, version)
    except OSError as exc:  # a cache dir we cannot write
        raise JarFetchError(f"could not cache the Kafka jars in {home}: {exc}") from exc


def _fetch_into(home: Path, libs: Path, marker: Path, version: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    with _exclusive(home / ".lock"):
        if _listed_jars_present(libs, marker):  # another process finished while we waited
            return libs
        find_java()  # Maven needs it too, and says so less clearly
        mvn = find_maven()
        for leftover in home.glob("libs.*"):  # staging dirs of runs that were killed
            shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix="libs.", dir=home))
        try:
            _copy_dependencies(mvn, version, staging)
            marker.unlink(missing_ok=True)
            if libs.exists():
                shutil.rmtree(libs)
            staging.rename(libs)
            names = sorted(jar.name for jar in libs.glob("*.jar"))
            marker.write_text("\n".join(names) + "\n")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return libs


def _copy_dependencies(mvn: str, version: str, target: Path) -> None:
    argv = [
        mvn,
        "-B",
        "-q",
        "-Dstyle.color=never",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={target}",
        f"-Dkafka.version={version}",
    ]
    what = f"org.apache.kafka:kafka_2.13:{version}"
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=MAVEN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = _as_text(exc.stdout) + _as_text(exc.stderr)
        raise JarFetchError(
            f"Maven did not resolve {what} within {MAVEN_TIMEOUT:g} s; ran: {shlex.join(argv)}",
            _tail(output, 20),
        ) from exc
    except OSError as exc:
        raise JarFetchError(f"could not run Maven ({exc}); ran: {shlex.join(argv)}") from exc
    if done.returncode != 0:
        output = done.stdout + done.stderr
        kept = _keep_output(f"$ {shlex.join(argv)}\n{output}")
        hint = _error_hint(output, first=True)
        raise JarFetchError(
            f"Maven could not resolve {what} (exit code {done.returncode})"
            f"{': ' + hint if hint else ''}; ran: {shlex.join(argv)}"
            f"{f' (output: {kept})' if kept else ''}",
            _tail(output, 20),
        )
    if not any(target.glob("kafka_2.13-*.jar")):
        raise JarFetchError(
            f"Maven succeeded but copied no kafka_2.13 jar into {target}; ran: {shlex.join(argv)}",
            _tail(done.stdout + done.stderr, 20),
        )


def _as_text(output: str | bytes | None) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


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


def _command_line(pid: int) -> str | None:
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


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def _error_hint(output: str, *, first: bool = False) -> str:
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


def _keep_output(text: str) -> Path | None:
    """Keep what explains a failure where a person can read it; None if that cannot be written."""
    target = failure_log()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError:
        return None
    return target


# --------------------------------------------------------------------------------------------
# The broker


@dataclass(frozen=True)
class BrokerState:
    """What ``start`` records so that ``status`` and ``stop`` find a background broker."""

    pid: int
    version: str
    port: int
    sasl_port: int
    controller_port: int
    data_dir: str
    owns_data_dir: bool
    properties_file: str
    log_file: str
    started_at: float
    format_seconds: float
    start_seconds: float

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        return f"{HOST}:{self.sasl_port}"


class ApacheKafka:
    """One Apache Kafka broker+controller (KRaft) on 127.0.0.1, from Maven Central jars.

    ``with ApacheKafka() as kafka:`` starts it (fetching jars if needed) and stops it on exit;
    it is also stopped at interpreter exit, so a failing test session leaves no broker behind.
    Ports left at 0 are picked free; a ``data_dir`` given by the caller is kept (and reused on the
    next start), otherwise storage lives in a temporary directory removed by :meth:`stop`.
    """

    def __init__(
        self,
        *,
        version: str | None = None,
        data_dir: Path | None = None,
        port: int = 0,
        sasl_port: int = 0,
        controller_port: int = 0,
        heap: str = DEFAULT_HEAP,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self.version = version or kafka_version()
        self.port = port
        self.sasl_port = sasl_port
        self.controller_port = controller_port
        self.heap = heap
        self.start_timeout = start_timeout
        self.extra_properties = dict(properties or {})
        self.sasl_users: dict[str, str] = dict(SASL_USERS)
        self.fetch_seconds: float | None = None
        self.format_seconds: float | None = None
        self.start_seconds: float | None = None
        self._given_data_dir = data_dir
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- what clients need ---------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def sasl_bootstrap_servers(self) -> str:
        return f"{HOST}:{self.sasl_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise RuntimeError("the broker has no data directory before start()")
        return self._data_dir

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    # -- configuration -------------------------------------------------------------------------

    def server_properties(self) -> dict[str, str]:
        """The broker's ``server.properties`` for the current ports and data directory."""
        plain, sasl, controller = self.port, self.sasl_port, self.controller_port
        jaas_users = " ".join(
            f'user_{user}="{password}"' for user, password in self.sasl_users.items()
        )
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{controller}",
            "listeners": (
                f"PLAINTEXT://{HOST}:{plain},SASL_PLAINTEXT://{HOST}:{sasl},"
                f"CONTROLLER://{HOST}:{controller}"
            ),
            "advertised.listeners": f"PLAINTEXT://{HOST}:{plain},SASL_PLAINTEXT://{HOST}:{sasl}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {jaas_users};"
            ),
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            # Single node: internal topics cannot have more replicas than brokers.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # A consumer group forms at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
            # Topics come only from topics/; a typo must fail, not create a topic.
            "auto.create.topics.enable": "false",
        }
        properties.update(self.extra_properties)
        return properties

    def _write_properties(self) -> None:
        lines = [
            f"{key}={value.replace(chr(92), chr(92) * 2)}"
            for key, value in self.server_properties().items()
        ]
        self.properties_file.write_text("\n".join(lines) + "\n")

    def _pick_ports(self) -> None:
        wanted = {
            "port": self.port,
            "SASL port": self.sasl_port,
            "controller port": self.controller_port,
        }
        for name, port in wanted.items():
            if port and not port_is_free(port):
                raise BrokerStartError(f"{name} {port} on {HOST} is already in use; pick another")
        free = iter(free_ports(sum(1 for port in wanted.values() if not port)))
        self.port = self.port or next(free)
        self.sasl_port = self.sasl_port or next(free)
        self.controller_port = self.controller_port or next(free)

    def _jvm(self, java: str, libs: Path, heap: str, *flags: str) -> list[str]:
        return [
            java,
            f"-Xmx{heap}",
            *flags,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            str(libs / "*"),
        ]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        """Fetch jars if needed, format storage, launch the broker and wait until it is ready."""
        if self.running:
            return self
        began = time.monotonic()
        libs = fetch_jars(self.version)
        java = find_java()
        self.fetch_seconds = time.monotonic() - began
        requested = (self.port, self.sasl_port, self.controller_port)
        attempt = 1
        while True:
            try:
                self._start_once(java, libs)
            except BrokerStartError as exc:
                # A port picked free can be taken by another process before the broker binds it;
                # pick again rather than fail a test run on that race.
                lost_a_port = "Address already in use" in exc.details and not all(requested)
                if not lost_a_port or attempt >= _START_ATTEMPTS:
                    raise
                self.port, self.sasl_port, self.controller_port = requested
                attempt += 1
            else:
                return self

    def _start_once(self, java: str, libs: Path) -> None:
        atexit.register(self.stop)
        try:
            try:
                self._prepare_data_dir()
                self._pick_ports()
                self._write_properties()
                self._format(java, libs)
                self._launch(java, libs)
            except OSError as exc:  # a data dir we cannot write, a java we cannot run
                raise BrokerStartError(f"could not start the Kafka broker: {exc}") from exc
        except BaseException:
            self._keep_failure_log()
            self.stop()
            raise

    def _prepare_data_dir(self) -> None:
        if self._given_data_dir is not None:
            self._data_dir = self._given_data_dir.expanduser().resolve()
            self._data_dir.mkdir(parents=True, exist_ok=True)
            self._owns_data_dir = False
        else:
            self._data_dir = Path(tempfile.mkdtemp(prefix="mesh-kafka-"))
            self._owns_data_dir = True

    def _formatted_before(self) -> bool:
        log_dirs = self.server_properties()["log.dirs"].split(",")
        return all((Path(log_dir) / "meta.properties").is_file() for log_dir in log_dirs)

    def _format(self, java: str, libs: Path) -> None:
        if self._formatted_before():  # a kept data_dir: its cluster id must stay as it is
            self.format_seconds = 0.0
            return
        argv = [
            # A short-lived tool: the quick JIT tier and the serial GC save ~0.2 s of its ~1 s.
            *self._jvm(java, libs, "256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            new_cluster_id(),
            "--config",
            str(self.properties_file),
        ]
        began = time.monotonic()
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.start_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerStartError(
                f"formatting Kafka storage did not finish within {self.start_timeout:g} s",
                _tail(_as_text(exc.stdout) + _as_text(exc.stderr), _LOG_TAIL_LINES),
            ) from exc
        except OSError as exc:
            raise BrokerStartError(f"could not run {java} to format Kafka storage: {exc}") from exc
        self.format_seconds = time.monotonic() - began
        if done.returncode != 0:
            output = _tail(done.stdout + done.stderr, _LOG_TAIL_LINES)
            hint = _error_hint(output)
            raise BrokerStartError(
                f"formatting Kafka storage in {self.data_dir} failed "
                f"(exit code {done.returncode}){': ' + hint if hint else ''}",
                output,
            )

    def _launch(self, java: str, libs: Path) -> None:
        argv = [*self._jvm(java, libs, self.heap), "kafka.Kafka", str(self.properties_file)]
        self._log = self.log_file.open("ab")
        earlier_runs = self.log_file.stat().st_size  # a kept data_dir appends to its old log
        began = time.monotonic()
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in a terminal reaches us, and we stop it in order; and a
            # background broker survives the shell that started it.
            start_new_session=True,
        )
        self._wait_ready(log_offset=earlier_runs)
        self.start_seconds = time.monotonic() - began

    def _wait_ready(self, log_offset: int) -> None:
        """Until the broker logged that it started and both client listeners accept."""
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        offset, carry, started = log_offset, b"", False
        while True:
            if not started:
                with self.log_file.open("rb") as log:
                    log.seek(offset)
                    chunk = log.read()
                offset += len(chunk)
                started = READY_LINE in carry + chunk
                carry = (carry + chunk)[-len(READY_LINE) :]
            code = self._process.poll()
            if code is not None:
                tail = self.log_tail()
                hint = _error_hint(tail)
                raise BrokerStartError(
                    f"the Kafka broker exited with code {code} while starting"
                    f"{': ' + hint if hint else ''} (full log: {failure_log()})",
                    tail,
                )
            if started and accepts_connections(self.port) and accepts_connections(self.sasl_port):
                return
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                raise BrokerStartError(
                    f"the Kafka broker was not ready within {self.start_timeout:g} s "
                    f"(full log: {failure_log()})",
                    tail,
                )
            time.sleep(_POLL_SECONDS)

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the broker's log."""
        try:
            data = self.log_file.read_bytes()[-256 * 1024 :]
        except (OSError, RuntimeError):
            return ""
        return _tail(data.decode(errors="replace"), lines)

    def _keep_failure_log(self) -> None:
        """Copy the log out of the data dir that is about to be removed."""
        with contextlib.suppress(OSError, RuntimeError):
            target = failure_log()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.log_file, target)

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the broker exits (or ``timeout`` passes); its exit code, or None."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM, up to 20 s for a clean shutdown, then SIGKILL; remove owned storage.

        Safe to call more than once, and on a broker that never started.
        """
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._owns_data_dir = False

    def detach(self) -> BrokerState:
        """Leave the running broker to itself (for ``start``); what ``stop`` needs to find it."""
        if self._process is None or self.start_seconds is None:
            raise RuntimeError("only a started broker can be detached")
        state = self.state()
        atexit.unregister(self.stop)
        self._process = None
        self._owns_data_dir = False
        if self._log is not None:
            self._log.close()
            self._log = None
        return state

    def state(self) -> BrokerState:
        if self._process is None:
            raise RuntimeError("the broker is not running")
        return BrokerState(
            pid=self._process.pid,
            version=self.version,
            port=self.port,
            sasl_port=self.sasl_port,
            controller_port=self.controller_port,
            data_dir=str(self.data_dir),
            owns_data_dir=self._owns_data_dir,
            properties_file=str(self.properties_file),
            log_file=str(self.log_file),
            started_at=time.time(),
            format_seconds=self.format_seconds or 0.0,
            start_seconds=self.start_seconds or 0.0,
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# A broker started by an earlier `start`


def read_state() -> BrokerState | None:
    """The recorded background broker, or None (no record, or one we cannot read)."""
    try:
        return BrokerState(**json.loads(state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_state(state: BrokerState) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(asdict(state), indent=2) + "\n")
    staging.replace(path)


def recorded_broker_running(state: BrokerState) -> bool:
    """True if the recorded pid is alive and still our broker (pids are reused)."""
    if not pid_alive(state.pid):
        return False
    command = _command_line(state.pid)
    return command is None or state.properties_file in command


def stop_recorded(state: BrokerState) -> bool:
    """Stop a background broker and forget it; False if it was no longer running."""
    was_running = recorded_broker_running(state)
    if was_running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGTERM)
        if not _wait_gone(state.pid, STOP_GRACE_SECONDS):
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, signal.SIGKILL)
            if not _wait_gone(state.pid, 10.0):
                raise KafkaToolingError(f"the Kafka broker (pid {state.pid}) did not stop")
    if state.owns_data_dir:
        shutil.rmtree(state.data_dir, ignore_errors=True)
    state_file().unlink(missing_ok=True)
    return was_running


# --------------------------------------------------------------------------------------------
# Command line

PROG = "kafka-broker"


def _describe(kafka: ApacheKafka | BrokerState, format_seconds: float, start_seconds: float) -> str:
    users = ", ".join(f"{user}/{password}" for user, password in SASL_USERS.items())
    return (
        f"Apache Kafka {kafka.version} ready\n"
        f"  bootstrap servers:       {kafka.bootstrap_servers}\n"
        f"  SASL_PLAINTEXT (PLAIN):  {kafka.sasl_bootstrap_servers}  users {users}\n"
        f"  storage format {format_seconds:.2f} s, broker start {start_seconds:.2f} s"
    )


def _broker_from(args: argparse.Namespace) -> ApacheKafka:
    return ApacheKafka(
        version=args.kafka_version,
        data_dir=args.data_dir,
        port=args.port,
        sasl_port=args.sasl_port,
        heap=args.heap,
        start_timeout=args.timeout,
    )


def _cmd_fetch(args: argparse.Namespace) -> int:
    began = time.monotonic()
    libs = fetch_jars(args.kafka_version)
    print(libs)
    print(f"({time.monotonic() - began:.2f} s)", file=sys.stderr)
    return 0


def _refuse_if_running() -> None:
    state = read_state()
    if state is not None and recorded_broker_running(state):
        raise KafkaToolingError(
            f"a Kafka broker is already running (pid {state.pid}, {state.bootstrap_servers}); "
            f"stop it first with `{PROG} stop`"
        )


def _cmd_start(args: argparse.Namespace) -> int:
    _refuse_if_running()
    kafka = _broker_from(args).start()
    state = kafka.detach()
    write_state(state)
    print(_describe(kafka, state.format_seconds, state.start_seconds))
    print(f"  pid {state.pid}, log {state.log_file}\n  stop it with: {PROG} stop")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        print("no Kafka broker recorded; nothing to stop")
        return 0
    if stop_recorded(state):
        print(f"stopped the Kafka broker (pid {state.pid}, {state.bootstrap_servers})")
    else:
        print(f"the recorded Kafka broker (pid {state.pid}) was not running; record removed")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        print("not running (no broker recorded)")
        return 1
    if not recorded_broker_running(state):
        print(f"not running (the recorded pid {state.pid} is gone; `{PROG} stop` clears it)")
        return 1
    serving = accepts_connections(state.port) and accepts_connections(state.sasl_port)
    print(
        f"{'running' if serving else 'running but not accepting connections'}: "
        f"Apache Kafka {state.version}, pid {state.pid}, bootstrap servers "
        f"{state.bootstrap_servers}, SASL_PLAINTEXT {state.sasl_bootstrap_servers}, "
        f"data {state.data_dir}"
    )
    return 0 if serving else 1


def _cmd_run(args: argparse.Namespace) -> int:
    _refuse_if_running()
    kafka = _broker_from(args)

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    our_pid: int | None = None
    try:
        kafka.start()
        state = kafka.state()
        our_pid = state.pid
        write_state(state)
        print(_describe(kafka, state.format_seconds, state.start_seconds))
        print("  Ctrl-C stops it", flush=True)
        code = kafka.wait()
        kafka._keep_failure_log()
        raise KafkaToolingError(
            f"the Kafka broker exited on its own with code {code} (log: {failure_log()})"
        )
    except KeyboardInterrupt:
        print("stopping the Kafka broker", file=sys.stderr)
        return 0
    finally:
        kafka.stop()
        recorded = read_state()
        if recorded is not None and recorded.pid == our_pid:
            state_file().unlink(missing_ok=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="A real Apache Kafka broker (KRaft, single node) on 127.0.0.1."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_version(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--kafka-version", default=None, help="Kafka version (default: the pom's)")
        return sub

    def with_broker_options(sub: argparse.ArgumentParser) -> None:
        with_version(sub)
        sub.add_argument("--port", type=int, default=0, help="PLAINTEXT port (default: free)")
        sub.add_argument("--sasl-port", type=int, default=0, help="SASL_PLAINTEXT port")
        sub.add_argument("--data-dir", type=Path, default=None, help="kept storage directory")
        sub.add_argument("--heap", default=DEFAULT_HEAP, help="maximum heap (default: 512m)")
        sub.add_argument(
            "--timeout", type=float, default=DEFAULT_START_TIMEOUT, help="seconds to get ready"
        )

    with_version(commands.add_parser("fetch", help="download the jars; print their directory"))
    with_broker_options(commands.add_parser("start", help="start in the background"))
    commands.add_parser("stop", help="stop the background broker")
    commands.add_parser("status", help="is the background broker running?")
    with_broker_options(commands.add_parser("run", help="run in the foreground until Ctrl-C"))
    return parser


_COMMANDS = {
    "fetch": _cmd_fetch,
    "start": _cmd_start,
    "stop": _cmd_stop,
    "status": _cmd_status,
    "run": _cmd_run,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except KafkaToolingError as exc:
        print(f"{PROG}: error: {exc.summary}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
