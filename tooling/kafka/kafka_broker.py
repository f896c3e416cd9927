"""Real Apache Kafka on loopback, for the integration tests and for users' scripts.

KRaft mode, run straight from the Maven Central artifacts of ``org.apache.kafka:kafka_2.13`` (no
Docker, no distribution tarball): one combined broker+controller, or a 3-node cluster. Standard
library only: it runs before mesh is installed (a fresh clone, the first step of CI).

- :func:`fetch_jars` resolves the jars with Maven (``_jars``).
- :class:`ApacheKafka` formats storage, makes per-run SASL users and TLS certificates, picks free
  ports, starts the nodes, waits until they serve clients and stops them again (``_broker``;
  one node is a :class:`KafkaNode`, which tests kill and restart).
- The command line (``scripts/kafka-broker fetch|start|stop|status|run``) does the same for a
  person or a script; ``start`` leaves the nodes running in the background and records them in
  ``$MESH_CACHE_DIR/kafka/run.json`` so that ``status`` and ``stop`` find them later.

Passwords are made per run and never printed: clients read them from the env files that
``start`` names (``set -a; . FILE; set +a``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `tooling.kafka` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tooling.kafka._broker import (
    DEFAULT_HEAP,
    DEFAULT_START_TIMEOUT,
    STOP_GRACE_SECONDS,
    ApacheKafka,
)
from tooling.kafka._jars import POM, fetch_jars, kafka_version
from tooling.kafka._node import CLIENT_LISTENERS, READY_LINE, KafkaNode, NodePorts
from tooling.kafka._process import (
    HOST,
    BrokerStartError,
    JarFetchError,
    KafkaToolingError,
    accepts_connections,
    cache_root,
    command_line,
    failure_log,
    find_java,
    free_ports,
    new_cluster_id,
    pid_alive,
    port_is_free,
    wait_gone,
)
from tooling.kafka._security import (
    SASL_MECHANISMS,
    SCRAM_MECHANISMS,
    Secrets,
    client_env,
)

PROG = "kafka-broker"


def state_file() -> Path:
    """Where ``start`` records the background broker."""
    return cache_root() / "kafka" / "run.json"


# --------------------------------------------------------------------------------------------
# A broker started by an earlier `start`


@dataclass(frozen=True)
class NodeState:
    node_id: int
    pid: int
    ports: dict[str, int]
    properties_file: str
    log_file: str

    def running(self) -> bool:
        """True if the pid is alive and still this node (pids are reused)."""
        if not pid_alive(self.pid):
            return False
        command = command_line(self.pid)
        return command is None or self.properties_file in command

    def serving(self) -> bool:
        return all(accepts_connections(port) for port in self.ports.values())


@dataclass(frozen=True)
class BrokerState:
    """What ``start`` records so that ``status`` and ``stop`` find a background broker."""

    version: str
    data_dir: str
    owns_data_dir: bool
    started_at: float
    format_seconds: float
    start_seconds: float
    nodes: tuple[NodeState, ...]
    users: tuple[str, ...]
    ca_file: str
    clients_dir: str

    @classmethod
    def of(cls, kafka: ApacheKafka) -> BrokerState:
        nodes = []
        for node in kafka.nodes:
            if node.pid is None:
                raise RuntimeError("only a started broker has a state")
            nodes.append(
                NodeState(
                    node.node_id,
                    node.pid,
                    node.ports.by_listener(),
                    str(node.properties_file),
                    str(node.log_file),
                )
            )
        return cls(
            version=kafka.version,
            data_dir=str(kafka.data_dir),
            owns_data_dir=kafka.owns_data_dir,
            started_at=time.time(),
            format_seconds=kafka.format_seconds or 0.0,
            start_seconds=kafka.start_seconds or 0.0,
            nodes=tuple(nodes),
            users=tuple(kafka.sasl_users),
            ca_file=str(kafka.ca_file),
            clients_dir=str(kafka.clients_dir),
        )

    @classmethod
    def from_json(cls, text: str) -> BrokerState:
        data: dict[str, Any] = json.loads(text)
        data["nodes"] = tuple(NodeState(**node) for node in data["nodes"])
        data["users"] = tuple(data["users"])
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def servers(self, listener: str) -> str:
        return ",".join(f"{HOST}:{node.ports[listener]}" for node in self.nodes)

    @property
    def bootstrap_servers(self) -> str:
        return self.servers("PLAINTEXT")


def read_state() -> BrokerState | None:
    """The recorded background broker, or None (no record, or one we cannot read)."""
    try:
        return BrokerState.from_json(state_file().read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write_state(state: BrokerState) -> None:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(state.to_json())
    staging.replace(path)


def recorded_broker_running(state: BrokerState) -> bool:
    """True if any recorded node still runs."""
    return any(node.running() for node in state.nodes)


def stop_recorded(state: BrokerState) -> bool:
    """Stop a background broker's nodes and forget them; False if none was running."""
    running = [node for node in state.nodes if node.running()]
    for node in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for node in running:
        if not wait_gone(node.pid, max(deadline - time.monotonic(), 0.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.pid, signal.SIGKILL)
            if not wait_gone(node.pid, 10.0):
                raise KafkaToolingError(f"Kafka node {node.node_id} (pid {node.pid}) did not stop")
    if state.owns_data_dir:
        shutil.rmtree(state.data_dir, ignore_errors=True)
    state_file().unlink(missing_ok=True)
    return bool(running)


# --------------------------------------------------------------------------------------------
# Command line


def describe(state: BrokerState) -> str:
    """What a person needs to connect, passwords excepted (they are in the env files)."""
    count = len(state.nodes)
    rf = min(3, count)
    shape = "one broker+controller" if count == 1 else f"{count} nodes, each broker+controller"
    mechanisms = {name: f"  ({', '.join(found)})" for name, found in SASL_MECHANISMS.items()}
    lines = [
        f"Apache Kafka {state.version} ready: {shape}; internal topics with replication factor "
        f"{rf}, min.insync.replicas {max(1, rf - 1)}",
        *(
            f"  {listener + ':':<16} {state.servers(listener)}{mechanisms.get(listener, '')}"
            for listener in CLIENT_LISTENERS
        ),
        f"  {'SASL users:':<16} {', '.join(state.users)} (passwords made per run, in the env "
        "files below)",
        f"  {'CA certificate:':<16} {state.ca_file}  (MESH_SSL_CAFILE)",
        f"  {'client settings:':<16} {state.clients_dir}/<listener>.env, e.g. "
        f"set -a; . {state.clients_dir}/sasl-ssl.env; set +a",
        f"  storage format and certificates {state.format_seconds:.2f} s, "
        f"start {state.start_seconds:.2f} s",
    ]
    return "\n".join(lines)


def _broker_from(args: argparse.Namespace) -> ApacheKafka:
    return ApacheKafka(
        nodes=args.nodes,
        version=args.kafka_version,
        data_dir=args.data_dir,
        port=args.port,
        sasl_port=args.sasl_port,
        sasl_ssl_port=args.sasl_ssl_port,
        ssl_port=args.ssl_port,
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
            f"a Kafka broker is already running ({state.bootstrap_servers}); "
            f"stop it first with `{PROG} stop`"
        )


def _cmd_start(args: argparse.Namespace) -> int:
    _refuse_if_running()
    kafka = _broker_from(args).start()
    state = BrokerState.of(kafka)
    kafka.detach()
    write_state(state)
    print(describe(state))
    pids = ", ".join(str(node.pid) for node in state.nodes)
    print(f"  pid {pids}, data {state.data_dir}\n  stop it with: {PROG} stop")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        print("no Kafka broker recorded; nothing to stop")
        return 0
    count = len(state.nodes)
    what = "the Kafka broker" if count == 1 else f"the {count}-node Kafka cluster"
    if stop_recorded(state):
        print(f"stopped {what} ({state.bootstrap_servers})")
    else:
        print(f"{what} recorded ({state.bootstrap_servers}) was not running; record removed")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        print("not running (no broker recorded)")
        return 1
    running = [node for node in state.nodes if node.running()]
    if not running:
        print(f"not running (the recorded nodes are gone; `{PROG} stop` clears the record)")
        return 1
    serving = [node for node in running if node.serving()]
    count = len(state.nodes)
    healthy = len(serving) == count
    print(
        f"{'running' if healthy else 'degraded'}: Apache Kafka {state.version}, "
        f"{len(serving)} of {count} node{'s' if count != 1 else ''} serving; bootstrap servers "
        f"{state.bootstrap_servers}, SASL_PLAINTEXT {state.servers('SASL_PLAINTEXT')}, "
        f"SASL_SSL {state.servers('SASL_SSL')}, SSL {state.servers('SSL')}; "
        f"client settings {state.clients_dir}; data {state.data_dir}"
    )
    if count > 1 or not healthy:
        for node in state.nodes:
            condition = (
                "serving"
                if node in serving
                else "running but not accepting connections"
                if node in running
                else "not running"
            )
            print(f"  node {node.node_id}: pid {node.pid}, {condition}")
    return 0 if healthy else 1


def _cmd_run(args: argparse.Namespace) -> int:
    _refuse_if_running()
    kafka = _broker_from(args)

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    recorded: BrokerState | None = None
    try:
        kafka.start()
        recorded = BrokerState.of(kafka)
        write_state(recorded)
        print(describe(recorded))
        print("  Ctrl-C stops it", flush=True)
        code = kafka.wait()
        kafka.keep_failure_log()
        raise KafkaToolingError(
            f"a Kafka node exited on its own with code {code} (log: {failure_log()})"
        )
    except KeyboardInterrupt:
        print("stopping Kafka", file=sys.stderr)
        return 0
    finally:
        kafka.stop()
        current = read_state()
        if recorded is not None and current is not None and current.nodes == recorded.nodes:
            state_file().unlink(missing_ok=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Real Apache Kafka (KRaft) on 127.0.0.1: one node or a 3-node cluster.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_version(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--kafka-version", default=None, help="Kafka version (default: the pom's)")
        return sub

    def with_broker_options(sub: argparse.ArgumentParser) -> None:
        with_version(sub)
        sub.add_argument(
            "--nodes",
            type=int,
            choices=(1, 3),
            default=1,
            help="1 (default), or 3: a cluster with replication factor 3, min.insync.replicas 2",
        )
        sub.add_argument("--port", type=int, default=0, help="PLAINTEXT port (default: free)")
        sub.add_argument("--sasl-port", type=int, default=0, help="SASL_PLAINTEXT port")
        sub.add_argument("--sasl-ssl-port", type=int, default=0, help="SASL_SSL port")
        sub.add_argument("--ssl-port", type=int, default=0, help="SSL port")
        sub.add_argument("--data-dir", type=Path, default=None, help="kept storage directory")
        sub.add_argument(
            "--heap", default=DEFAULT_HEAP, help=f"maximum heap per node (default: {DEFAULT_HEAP})"
        )
        sub.add_argument(
            "--timeout", type=float, default=DEFAULT_START_TIMEOUT, help="seconds to get ready"
        )

    with_version(commands.add_parser("fetch", help="download the jars; print their directory"))
    with_broker_options(commands.add_parser("start", help="start in the background"))
    commands.add_parser("stop", help="stop the background broker or cluster")
    commands.add_parser("status", help="is the background broker or cluster running?")
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


__all__ = [
    "CLIENT_LISTENERS",
    "DEFAULT_HEAP",
    "HOST",
    "POM",
    "READY_LINE",
    "SASL_MECHANISMS",
    "SCRAM_MECHANISMS",
    "ApacheKafka",
    "BrokerStartError",
    "BrokerState",
    "JarFetchError",
    "KafkaNode",
    "KafkaToolingError",
    "NodePorts",
    "NodeState",
    "Secrets",
    "accepts_connections",
    "client_env",
    "describe",
    "fetch_jars",
    "find_java",
    "free_ports",
    "kafka_version",
    "main",
    "new_cluster_id",
    "pid_alive",
    "port_is_free",
    "read_state",
    "recorded_broker_running",
    "state_file",
    "stop_recorded",
    "write_state",
]

if __name__ == "__main__":
    sys.exit(main())
