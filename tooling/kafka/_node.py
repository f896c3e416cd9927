"""One Kafka process (broker+controller) of :class:`~tooling.kafka._broker.ApacheKafka`.

A node knows its ports, directory and process: it launches, says whether it is ready, and can
be killed (``kill -9``) and restarted on the same ports and storage, which is what the
3-node tests do to the leader of a partition.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tooling.kafka._process import (
    HOST,
    POLL_SECONDS,
    BrokerStartError,
    accepts_connections,
    error_hint,
    failure_log,
    tail,
)

READY_LINE = b"Kafka Server started"
CLIENT_LISTENERS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
"""Every node listens for clients on each (the listener's name is its security protocol)."""
LOG_TAIL_LINES = 30


@dataclass
class NodePorts:
    """A node's ports; 0 until picked."""

    plaintext: int = 0
    sasl_plaintext: int = 0
    sasl_ssl: int = 0
    ssl: int = 0
    controller: int = 0

    def by_listener(self) -> dict[str, int]:
        """Listener name → port, the controller's included."""
        return {
            "PLAINTEXT": self.plaintext,
            "SASL_PLAINTEXT": self.sasl_plaintext,
            "SASL_SSL": self.sasl_ssl,
            "SSL": self.ssl,
            "CONTROLLER": self.controller,
        }


class KafkaNode:
    """One ``kafka.Kafka`` JVM with its own ports, properties file, log and storage."""

    def __init__(self, node_id: int, ports: NodePorts, directory: Path) -> None:
        self.node_id = node_id
        self.ports = ports
        self.directory = directory
        self._argv: list[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self._started = False
        self._carry = b""

    def __repr__(self) -> str:
        return f"KafkaNode({self.node_id}, {self.address('PLAINTEXT')}, pid={self.pid})"

    @property
    def log_file(self) -> Path:
        return self.directory / "broker.log"

    @property
    def properties_file(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The code the process ended with; None while it runs or if it never ran."""
        return self._process.poll() if self._process is not None else None

    def address(self, listener: str) -> str:
        return f"{HOST}:{self.ports.by_listener()[listener]}"

    def formatted(self) -> bool:
        return (self.log_dir / "meta.properties").is_file()

    # -- lifecycle -----------------------------------------------------------------------------

    def launch(self, argv: Sequence[str]) -> None:
        """Start the JVM (without waiting); :meth:`ready` then tells when it serves clients."""
        self._argv = [*argv, str(self.properties_file)]
        self._log = self.log_file.open("ab")
        self._log_offset = self.log_file.stat().st_size  # a kept data dir appends to its old log
        self._started, self._carry = False, b""
        self._process = subprocess.Popen(
            self._argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in a terminal reaches us, and we stop it in order; and a
            # background broker survives the shell that started it.
            start_new_session=True,
        )

    def ready(self) -> bool:
        """True once the node logged that it started and every listener accepts connections.

        Raises ``BrokerStartError`` if the process exited meanwhile.
        """
        if self._process is None:
            raise RuntimeError(f"node {self.node_id} was never launched")
        if not self._started:
            with self.log_file.open("rb") as log:
                log.seek(self._log_offset)
                chunk = log.read()
            self._log_offset += len(chunk)
            self._started = READY_LINE in self._carry + chunk
            self._carry = (self._carry + chunk)[-len(READY_LINE) :]
        code = self._process.poll()
        if code is not None:
            output = self.log_tail()
            hint = error_hint(output)
            raise BrokerStartError(
                f"Kafka node {self.node_id} exited with code {code} while starting"
                f"{': ' + hint if hint else ''} (full log: {failure_log()})",
                output,
            )
        return self._started and all(
            accepts_connections(port) for port in self.ports.by_listener().values()
        )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() >= deadline:
                raise BrokerStartError(
                    f"Kafka node {self.node_id} was not ready within {timeout:g} s "
                    f"(log: {self.log_file})",
                    self.log_tail(),
                )
            time.sleep(POLL_SECONDS)

    def kill(self) -> None:
        """``kill -9``: the node dies at once, as in a crash; its storage stays."""
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._close_log()

    def restart(self, timeout: float) -> None:
        """Start a stopped or killed node again on its ports and storage; wait until ready."""
        if self.running:
            return
        if self._argv is None:
            raise RuntimeError(f"node {self.node_id} was never launched")
        self._close_log()
        self.launch(self._argv[:-1])
        self.wait_ready(timeout)

    def terminate(self) -> None:
        """Ask for a clean shutdown (SIGTERM) without waiting."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    def wait_stopped(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the process to end, then SIGKILL it; forget it."""
        process, self._process = self._process, None
        if process is not None:
            try:
                process.wait(max(timeout, 0.0))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def forget(self) -> None:
        """Leave the process running on its own (``kafka-broker start``)."""
        self._process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the node's log."""
        try:
            data = self.log_file.read_bytes()[-256 * 1024 :]
        except OSError:
            return ""
        return tail(data.decode(errors="replace"), lines)
