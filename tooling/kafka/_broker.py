"""Apache Kafka in KRaft mode on 127.0.0.1: one node, or a cluster of three.

Every node is a combined broker+controller (``process.roles=broker,controller``): a 3-node
cluster is three JVMs whose controllers form the quorum, rather than three brokers beside a
separate quorum of three controllers (six JVMs, twice the memory and start-up CPU on a 2-core
CI machine). Killing one node then also tests a controller fail-over, and two of three voters
keep the quorum. Internal topics get replication factor ``min(3, nodes)`` and, on three nodes,
``min.insync.replicas=2`` (the broker default, which the offsets topic uses too).

Listeners of every node, named after their security protocol: PLAINTEXT (also between the
brokers and for the controllers' quorum), SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512),
SASL_SSL (SCRAM-SHA-256, SCRAM-SHA-512) and SSL (server certificate only), plus CONTROLLER.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tooling.kafka._jars import fetch_jars, kafka_version
from tooling.kafka._node import CLIENT_LISTENERS, KafkaNode, NodePorts
from tooling.kafka._process import (
    HOST,
    POLL_SECONDS,
    BrokerStartError,
    failure_log,
    find_java,
    free_ports,
    new_cluster_id,
    port_is_free,
    run_tool,
    write_private,
)
from tooling.kafka._security import (
    DEFAULT_USERS,
    SASL_MECHANISMS,
    Secrets,
    TlsFiles,
    client_env,
    find_keytool,
    make_tls,
    write_env_file,
)

HERE = Path(__file__).resolve().parent
LOG4J_CONFIG = HERE / "log4j2.yaml"
DEFAULT_HEAP = "512m"
DEFAULT_START_TIMEOUT = 120.0
STOP_GRACE_SECONDS = 20.0
_START_ATTEMPTS = 3
_SCRAM_CLIENT_MECHANISM = "SCRAM-SHA-512"


class ApacheKafka:
    """Apache Kafka (KRaft) on 127.0.0.1 from Maven Central jars: ``nodes`` combined nodes.

    ``with ApacheKafka() as kafka:`` starts it (fetching jars if needed) and stops it on exit;
    it is also stopped at interpreter exit, so a failing test session leaves no broker behind.
    Ports left at 0 are picked free (fixed ports only with one node); a ``data_dir`` given by the
    caller is kept (and reused, passwords and certificates included, on the next start),
    otherwise storage lives in a temporary directory removed by :meth:`stop`.

    ``users`` are the SASL users made per run (one per component, for ACLs); ``properties``
    add or override server properties, e.g. the KRaft authorizer:
    ``authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer`` with
    ``super.users=User:ANONYMOUS`` (the brokers and controllers talk over PLAINTEXT).
    """

    def __init__(
        self,
        *,
        nodes: int = 1,
        version: str | None = None,
        data_dir: Path | None = None,
        port: int = 0,
        sasl_port: int = 0,
        sasl_ssl_port: int = 0,
        ssl_port: int = 0,
        controller_port: int = 0,
        heap: str = DEFAULT_HEAP,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        properties: Mapping[str, str] | None = None,
        users: Sequence[str] = DEFAULT_USERS,
    ) -> None:
        fixed = (port, sasl_port, sasl_ssl_port, ssl_port, controller_port)
        if nodes < 1:
            raise BrokerStartError(f"a cluster needs at least one node (got {nodes})")
        if nodes > 1 and any(fixed):
            raise BrokerStartError("fixed ports need a single node; a cluster picks free ports")
        self.node_count = nodes
        self.version = version or kafka_version()
        self.heap = heap
        self.start_timeout = start_timeout
        self.extra_properties = dict(properties or {})
        self.user_names = tuple(users)
        self.fetch_seconds: float | None = None
        self.format_seconds: float | None = None
        self.start_seconds: float | None = None
        self._requested = NodePorts(port, sasl_port, sasl_ssl_port, ssl_port, controller_port)
        self._given_data_dir = data_dir
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._secrets: Secrets | None = None
        self.nodes: tuple[KafkaNode, ...] = ()

    # -- what clients need ---------------------------------------------------------------------

    def servers(self, listener: str) -> str:
        """Bootstrap servers of one listener on every node (``host:port,host:port,…``)."""
        if not self.nodes:
            raise RuntimeError("the broker has no ports before start()")
        return ",".join(node.address(listener) for node in self.nodes)

    @property
    def bootstrap_servers(self) -> str:
        return self.servers("PLAINTEXT")

    @property
    def sasl_bootstrap_servers(self) -> str:
        return self.servers("SASL_PLAINTEXT")

    @property
    def sasl_ssl_bootstrap_servers(self) -> str:
        return self.servers("SASL_SSL")

    @property
    def ssl_bootstrap_servers(self) -> str:
        return self.servers("SSL")

    @property
    def sasl_users(self) -> Mapping[str, str]:
        """User → password (PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 alike); per run."""
        if self._secrets is None:
            raise RuntimeError("the users' passwords are made by start()")
        return self._secrets.users

    @property
    def ca_file(self) -> Path:
        """The PEM of the CA that signed every node's certificate (``MESH_SSL_CAFILE``)."""
        return self.tls.ca_file

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles.within(self.data_dir / "security")

    @property
    def clients_dir(self) -> Path:
        """Env files of a client per listener (``set -a; . FILE; set +a``)."""
        return self.data_dir / "clients"

    def client_env(
        self, listener: str, *, mechanism: str = _SCRAM_CLIENT_MECHANISM, user: str | None = None
    ) -> dict[str, str]:
        """The ``MESH_*`` settings of a client of ``listener`` (a SASL one logs in as ``user``,
        default the first user, with ``mechanism``)."""
        name = user or self.user_names[0]
        return client_env(
            self.servers(listener),
            listener,
            mechanism=mechanism,
            user=name,
            password=self.sasl_users[name],
            ca_file=self.ca_file,
        )

    @property
    def replication_factor(self) -> int:
        """Of the internal topics (offsets, transaction state)."""
        return min(3, self.node_count)

    @property
    def min_insync_replicas(self) -> int:
        return max(1, self.replication_factor - 1)

    @property
    def running(self) -> bool:
        return any(node.running for node in self.nodes)

    @property
    def pid(self) -> int | None:
        """The first node's process id."""
        return self.nodes[0].pid if self.nodes else None

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise RuntimeError("the broker has no data directory before start()")
        return self._data_dir

    @property
    def owns_data_dir(self) -> bool:
        return self._owns_data_dir

    def node(self, node_id: int) -> KafkaNode:
        """The node with this ``node.id`` (1, 2, 3 …)."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id} (nodes: {[n.node_id for n in self.nodes]})")

    # -- configuration -------------------------------------------------------------------------

    def server_properties(self, node: KafkaNode) -> dict[str, str]:
        """One node's ``server.properties``."""
        if self._secrets is None:
            raise RuntimeError("the properties need the secrets made by start()")
        voters = ",".join(f"{n.node_id}@{HOST}:{n.ports.controller}" for n in self.nodes)
        ports = node.ports.by_listener()
        rf, min_isr = str(self.replication_factor), str(self.min_insync_replicas)
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": ",".join(f"{name}://{HOST}:{port}" for name, port in ports.items()),
            "advertised.listeners": ",".join(
                f"{name}://{HOST}:{ports[name]}" for name in CLIENT_LISTENERS
            ),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(
                f"{name}:{name}" for name in CLIENT_LISTENERS
            )
            + ",CONTROLLER:PLAINTEXT",
            "log.dirs": str(node.log_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            # The broker default: topics without their own value (the offsets topic among them)
            # survive one node lost on three; mesh topics set theirs in topics/overlays/cluster.
            "min.insync.replicas": min_isr,
            "default.replication.factor": rf,
            # A consumer group forms at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
            # Topics come only from topics/; a typo must fail, not create a topic.
            "auto.create.topics.enable": "false",
            **self.tls.broker_properties(self._secrets.keystore_password),
        }
        for listener, mechanisms in SASL_MECHANISMS.items():
            prefix = f"listener.name.{listener.lower()}"
            properties[f"{prefix}.sasl.enabled.mechanisms"] = ",".join(mechanisms)
            for mechanism in mechanisms:
                properties[f"{prefix}.{mechanism.lower()}.sasl.jaas.config"] = (
                    self._secrets.plain_jaas()
                    if mechanism == "PLAIN"
                    else "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
        properties.update(self.extra_properties)
        return properties

    def _write_properties(self, node: KafkaNode) -> None:
        lines = [
            f"{key}={value.replace(chr(92), chr(92) * 2)}"
            for key, value in self.server_properties(node).items()
        ]
        write_private(node.properties_file, "\n".join(lines) + "\n")  # it holds passwords

    def _pick_ports(self) -> None:
        """Ports for every node: the requested ones (one node only), the others free."""
        requested = self._requested.by_listener()
        for name, port in requested.items():
            if port and not port_is_free(port):
                raise BrokerStartError(
                    f"{name} port {port} on {HOST} is already in use; pick another"
                )
        missing = sum(1 for port in requested.values() if not port) * self.node_count
        free = iter(free_ports(missing))
        nodes = []
        for node_id in range(1, self.node_count + 1):
            chosen = [port or next(free) for port in requested.values()]
            directory = self.data_dir if self.node_count == 1 else self.data_dir / f"node-{node_id}"
            directory.mkdir(parents=True, exist_ok=True)
            nodes.append(KafkaNode(node_id, NodePorts(*chosen), directory))
        self.nodes = tuple(nodes)

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
        """Fetch jars if needed, format storage, launch every node and wait until all serve."""
        if self.running:
            return self
        began = time.monotonic()
        libs = fetch_jars(self.version)
        java = find_java()
        keytool = find_keytool(java)
        self.fetch_seconds = time.monotonic() - began
        attempt = 1
        while True:
            try:
                self._start_once(java, keytool, libs)
            except BrokerStartError as exc:
                # A port picked free can be taken by another process before the broker binds it;
                # pick again rather than fail a test run on that race.
                if "Address already in use" not in exc.details or attempt >= _START_ATTEMPTS:
                    raise
                attempt += 1
            else:
                return self

    def prepare(self) -> bool:
        """Everything but the JVMs: data directory, ports, passwords and every node's
        ``server.properties``. True if the storage was formatted before (kept)."""
        self._prepare_data_dir()
        self._pick_ports()
        formatted = all(node.formatted() for node in self.nodes)
        self._secrets = self._load_or_make_secrets(formatted)
        for node in self.nodes:
            self._write_properties(node)
        return formatted

    def _start_once(self, java: str, keytool: str, libs: Path) -> None:
        atexit.register(self.stop)
        try:
            try:
                formatted = self.prepare()
                self._format_and_certify(java, keytool, libs, formatted)
                self._write_client_envs()
                self._launch(java, libs)
            except OSError as exc:  # a data dir we cannot write, a java we cannot run
                raise BrokerStartError(f"could not start the Kafka broker: {exc}") from exc
        except BaseException:
            self.keep_failure_log()
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

    def _load_or_make_secrets(self, formatted: bool) -> Secrets:
        """Kept storage keeps the passwords its SCRAM users were formatted with."""
        path = self.data_dir / "security" / "secrets.json"
        if formatted:
            kept = Secrets.load(path)
            if kept is None:
                raise BrokerStartError(
                    f"{self.data_dir} holds Kafka storage but no {path.name} with its users' "
                    "passwords (made by an older kafka-broker?); remove it or pick another"
                )
            return kept
        made = Secrets.generate(self.user_names)
        made.save(path)
        return made

    def _format_and_certify(self, java: str, keytool: str, libs: Path, formatted: bool) -> None:
        """Format every node's storage and make the TLS material, side by side (JVM starts)."""
        jobs: list[Future[Any]] = []
        began = time.monotonic()
        with ThreadPoolExecutor(self.node_count + 1) as pool:
            if not (formatted and self.tls.exist()):
                assert self._secrets is not None
                password = self._secrets.keystore_password
                tls_dir = self.tls.keystore.parent
                jobs.append(pool.submit(make_tls, tls_dir, password, keytool=keytool))
            if not formatted:  # kept storage: its cluster id must stay as it is
                cluster_id = new_cluster_id()
                for node in self.nodes:
                    jobs.append(pool.submit(self._format, node, java, libs, cluster_id))
            for job in jobs:
                job.result()
        self.format_seconds = time.monotonic() - began

    def _format(self, node: KafkaNode, java: str, libs: Path, cluster_id: str) -> None:
        assert self._secrets is not None
        # The SCRAM passwords go in an argument file, not on the command line `ps` shows.
        arguments = [
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(node.properties_file),
            *self._secrets.scram_arguments(),
        ]
        argfile = node.directory / "format.args"
        write_private(argfile, "\n".join(_java_quote(a) for a in arguments) + "\n")
        # A short-lived tool: the quick JIT tier and the serial GC save ~0.2 s of its ~1 s.
        argv = [
            *self._jvm(java, libs, "256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"),
            f"@{argfile}",
        ]
        try:
            run_tool(
                argv, what=f"format Kafka storage in {node.directory}", timeout=self.start_timeout
            )
        finally:
            argfile.unlink(missing_ok=True)

    def _write_client_envs(self) -> None:
        for listener in CLIENT_LISTENERS:
            name = listener.lower().replace("_", "-")
            write_env_file(self.clients_dir / f"{name}.env", self.client_env(listener))

    def _launch(self, java: str, libs: Path) -> None:
        """Launch every node at once (a quorum needs a majority up), then wait for each."""
        began = time.monotonic()
        argv = [*self._jvm(java, libs, self.heap), "kafka.Kafka"]
        for node in self.nodes:
            node.launch(argv)
        deadline = began + self.start_timeout
        waiting = list(self.nodes)
        while waiting:
            waiting = [node for node in waiting if not node.ready()]
            if waiting and time.monotonic() >= deadline:
                late = ", ".join(str(node.node_id) for node in waiting)
                raise BrokerStartError(
                    f"Kafka node(s) {late} not ready within {self.start_timeout:g} s "
                    f"(full log: {failure_log()})",
                    waiting[0].log_tail(),
                )
            if waiting:
                time.sleep(POLL_SECONDS)
        self.start_seconds = time.monotonic() - began

    def keep_failure_log(self) -> None:
        """Copy the nodes' logs out of the data dir that is about to be removed."""
        with contextlib.suppress(OSError):
            parts = []
            for node in self.nodes:
                with contextlib.suppress(OSError):
                    parts.append(f"==== node {node.node_id}: {node.log_file}\n")
                    parts.append(node.log_file.read_text(errors="replace"))
            target = failure_log()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(parts))

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until a node exits (or ``timeout`` passes); its exit code, or None."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            for node in self.nodes:
                if node.exit_code is not None:
                    return node.exit_code
            time.sleep(POLL_SECONDS)
        return None

    def stop(self) -> None:
        """Stop every node and remove owned storage. Safe to call more than once.

        Storage about to be removed needs no clean shutdown, so its nodes get SIGKILL at once
        (a 3-node cluster shutting down together waits on its own quorum); kept storage gets
        SIGTERM and up to 20 s before SIGKILL.
        """
        atexit.unregister(self.stop)
        grace = 0.0 if self._owns_data_dir else STOP_GRACE_SECONDS
        for node in self.nodes:
            if grace:
                node.terminate()
            else:
                node.kill()
        deadline = time.monotonic() + grace
        for node in self.nodes:
            node.wait_stopped(deadline - time.monotonic())
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._owns_data_dir = False

    def detach(self) -> None:
        """Leave the running nodes to themselves (for ``kafka-broker start``)."""
        if not self.running or self.start_seconds is None:
            raise RuntimeError("only a started broker can be detached")
        atexit.unregister(self.stop)
        for node in self.nodes:
            node.forget()
        self._owns_data_dir = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _java_quote(argument: str) -> str:
    """One argument of a java ``@argfile``: quoted, backslashes and quotes escaped."""
    escaped = argument.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
