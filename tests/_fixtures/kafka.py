"""Real Apache Kafka (KRaft, from Maven Central jars), started once per test session.

- ``real_kafka``: one broker+controller with every listener (PLAINTEXT, SASL_PLAINTEXT with
  PLAIN and SCRAM, SASL_SSL with SCRAM, SSL) and per-run users and certificates.
- ``kafka_cluster``: three combined broker+controller nodes (replication factor 3,
  ``min.insync.replicas=2``), started only if a test asks for it; ``cluster_settings`` gives a
  test the cluster with every node running, and restarts any node a test killed.
- ``lone_kafka``: a broker of a test's own (one node, same ports and storage across
  :func:`stop_broker` / ``node.restart``), for faults that stop the whole cluster; the session
  broker other tests share is never stopped.

Without Java or Maven the ``kafka`` tier is skipped with the reason, except in CI (``CI=true``),
where a broker that cannot start fails the run: the integration tier must never pass by quietly
running nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs
from mesh.settings import Settings
from tooling.kafka.kafka_broker import ApacheKafka, KafkaNode, KafkaToolingError

CLUSTER_TOPICS = Path(__file__).resolve().parents[2] / "topics" / "overlays" / "cluster"
"""The mesh's topics as a 3-node cluster has them (replication factor 3, min ISR 2)."""

_STARTED = pytest.StashKey[list[tuple[str, ApacheKafka]]]()


def _started(request: pytest.FixtureRequest, what: str, kafka: ApacheKafka) -> ApacheKafka:
    """Start ``kafka``, or skip (fail under ``CI=true``) with the reason it did not start."""
    reason = None
    try:
        kafka.start()
    except KafkaToolingError as exc:
        reason = f"{what} did not start: {exc}"
    if reason is not None:  # outside the except block: the report shows the reason, no chain
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    request.config.stash.setdefault(_STARTED, []).append((what, kafka))
    return kafka


@pytest.fixture(scope="session")
def real_kafka(request: pytest.FixtureRequest) -> Iterator[ApacheKafka]:
    """One Apache Kafka broker on free loopback ports for the whole session."""
    kafka = _started(request, "real Apache Kafka broker", ApacheKafka())
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def kafka_cluster(request: pytest.FixtureRequest) -> Iterator[ApacheKafka]:
    """Three Apache Kafka nodes (each broker+controller) for the whole session."""
    cluster = _started(request, "3-node Apache Kafka cluster", ApacheKafka(nodes=3))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def lone_kafka(request: pytest.FixtureRequest) -> Iterator[ApacheKafka]:
    """A single-node broker of this test's own, which it may stop and start again."""
    kafka = _started(request, "stoppable Apache Kafka broker", ApacheKafka())
    try:
        yield kafka
    finally:
        kafka.stop()


def stop_broker(node: KafkaNode, timeout: float = 30.0) -> None:
    """Stop ``node`` cleanly (SIGTERM, as an operator's restart does), keeping its storage and
    ports for ``node.restart``."""
    node.terminate()
    node.wait_stopped(timeout)


@pytest.fixture
def kafka_settings(real_kafka: ApacheKafka, topic_prefix: str) -> Settings:
    """Settings pointing at the real broker's PLAINTEXT listener under a fresh topic prefix."""
    return Settings(bootstrap_servers=real_kafka.bootstrap_servers, topic_prefix=topic_prefix)


@pytest.fixture
def cluster_settings(kafka_cluster: ApacheKafka, topic_prefix: str) -> Iterator[Settings]:
    """Settings for the 3-node cluster's PLAINTEXT listeners, every node running before and
    after the test (a node a test killed is restarted on its storage)."""
    restart_stopped(kafka_cluster)
    try:
        yield Settings(bootstrap_servers=kafka_cluster.bootstrap_servers, topic_prefix=topic_prefix)
    finally:
        restart_stopped(kafka_cluster)


def restart_stopped(cluster: ApacheKafka) -> None:
    for node in cluster.nodes:
        if not node.running:
            node.restart(cluster.start_timeout)


def secured_settings(
    kafka: ApacheKafka, listener: str, topic_prefix: str, mechanism: str = "SCRAM-SHA-512"
) -> Settings:
    """Settings of a client of ``listener`` (logging in as the first SASL user), as a user would
    write them in ``MESH_*`` variables."""
    env = kafka.client_env(listener, mechanism=mechanism)
    fields: dict[str, Any] = {name.removeprefix("MESH_").lower(): v for name, v in env.items()}
    return Settings(**fields, topic_prefix=topic_prefix)


async def partition_leader(
    settings: Settings, cluster: ApacheKafka, topic: str, partition: int, *, within: float = 60.0
) -> KafkaNode:
    """The node that leads ``partition`` of ``topic`` now, asked of the running nodes.

    While a node is down its peers may still list it for up to ``broker.session.timeout.ms``
    (and a partition may have no leader for a moment): such answers are asked again until
    ``within`` seconds have passed.
    """
    running = ",".join(node.address("PLAINTEXT") for node in cluster.nodes if node.running)
    ask = settings.model_copy(update={"bootstrap_servers": running})
    deadline = time.monotonic() + within
    while True:
        leader = await _leader_id(ask, topic, partition)
        if leader is not None and cluster.node(leader).running:
            return cluster.node(leader)
        if time.monotonic() > deadline:
            raise AssertionError(f"no running node leads {topic}-{partition} after {within:g} s")
        await asyncio.sleep(0.2)


async def _leader_id(settings: Settings, topic: str, partition: int) -> int | None:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    try:
        await admin.start()
        [described] = await admin.describe_topics([topic])
    except KafkaError:  # a request that went to the node just killed
        return None
    finally:
        await stop_clients(admin)
    leaders = [p["leader"] for p in described["partitions"] if p["partition"] == partition]
    return leaders[0] if leaders and leaders[0] >= 0 else None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show how long each broker took to start, so CI logs track it."""
    started = terminalreporter.config.stash.get(_STARTED, [])
    if not started:
        return
    terminalreporter.write_sep("-", "real Apache Kafka")
    for what, kafka in started:
        terminalreporter.write_line(
            f"{what}, Apache Kafka {kafka.version} ({kafka.node_count} "
            f"node{'s' if kafka.node_count != 1 else ''}): "
            f"jars {kafka.fetch_seconds or 0:.2f} s, "
            f"storage format and certificates {kafka.format_seconds or 0:.2f} s, "
            f"start {kafka.start_seconds or 0:.2f} s"
        )
