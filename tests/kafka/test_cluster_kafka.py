"""The task path on a 3-node Apache Kafka cluster (KRaft, each node broker+controller).

The mesh's topics come from ``topics/overlays/cluster`` (replication factor 3,
``min.insync.replicas=2``), as on a user's own cluster. The cluster starts once per session and
only if a test here asks for it; a node a test kills is restarted by ``cluster_settings``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs
from mesh.kafka.partitions import partition_for
from mesh.replay import replay_workflow
from mesh.settings import Settings
from tests._fixtures.kafka import CLUSTER_TOPICS, partition_leader
from tests.contract.task_path import check_diamond
from tests.e2e import (
    eventually,
    layered_plan,
    plan_file,
    run_log_counts,
    running_mesh,
    submit,
    wait_final,
    wait_for,
)
from tests.helpers import run_mesh
from tooling.kafka.kafka_broker import ApacheKafka

WAIT = 60.0


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    return admin


def test_mesh_topics_on_the_cluster_have_three_replicas_and_two_in_sync(
    cluster_settings: Settings,
) -> None:
    """`mesh topics apply --dir topics/overlays/cluster` creates every mesh topic with three
    replicas and min.insync.replicas 2; `check` then finds the cluster in sync."""
    env = cluster_settings.to_env()
    applied = run_mesh("topics", "apply", "--dir", str(CLUSTER_TOPICS), env=env)
    assert applied.code == 0, applied.stderr
    described = run_mesh("topics", "describe", "--json", env=env)
    assert described.code == 0, described.stderr
    topics = json.loads(described.stdout)["topics"]
    assert len(topics) == 18
    assert {t["replication_factor"] for t in topics} == {3}
    assert {t["configs"]["min.insync.replicas"] for t in topics} == {"2"}
    checked = run_mesh("topics", "check", "--dir", str(CLUSTER_TOPICS), env=env)
    assert checked.code == 0, checked.stdout + checked.stderr


async def test_internal_topics_are_replicated_on_every_node(
    kafka_cluster: ApacheKafka, cluster_settings: Settings
) -> None:
    """Each node runs with replication factor 3 and min ISR 2 for the offsets and transaction
    state topics (and min ISR 2 as the default of topics without their own)."""
    admin = await _admin(cluster_settings)
    try:
        resources = [
            ConfigResource(ConfigResourceType.BROKER, str(node.node_id))
            for node in kafka_cluster.nodes
        ]
        answers = await admin.describe_configs(resources)
    finally:
        await stop_clients(admin)
    wanted = {
        "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3",
        "transaction.state.log.min.isr": "2",
        "min.insync.replicas": "2",
    }
    seen = []
    for answer in answers:
        for resource in answer.resources:
            configs = {entry[0]: entry[1] for entry in resource[4]}
            seen.append({key: configs.get(key) for key in wanted})
    assert seen == [wanted] * 3


async def test_a_killed_leader_hands_over_loses_nothing_and_rejoins(
    kafka_cluster: ApacheKafka, cluster_settings: Settings
) -> None:
    """kill -9 of the node leading a partition: another node leads it, acks=all writes go on
    with two replicas in sync, every acknowledged record is there; restarted, the node is back
    in the in-sync replicas."""
    topic = cluster_settings.topic("handover")
    admin = await _admin(cluster_settings)
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 3, topic_configs={"min.insync.replicas": "2"})]
        )
    finally:
        await stop_clients(admin)
    producer = AIOKafkaProducer(**client_kwargs(cluster_settings), acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"before-{i}".encode())
        victim = await partition_leader(cluster_settings, kafka_cluster, topic, 0)
        victim.kill()

        successor = await partition_leader(cluster_settings, kafka_cluster, topic, 0)
        for i in range(10):
            await asyncio.wait_for(producer.send_and_wait(topic, f"after-{i}".encode()), WAIT)
    finally:
        await stop_clients(producer)

    consumer = AIOKafkaConsumer(
        topic, **client_kwargs(cluster_settings), auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        async with asyncio.timeout(WAIT):
            while len(values) < 20:
                values.append((await consumer.getone()).value)
    finally:
        await stop_clients(consumer)
    assert successor.node_id != victim.node_id
    assert values == [f"before-{i}".encode() for i in range(10)] + [
        f"after-{i}".encode() for i in range(10)
    ]

    victim.restart(kafka_cluster.start_timeout)

    async def back_in_sync() -> bool:
        admin = await _admin(cluster_settings)
        try:
            [described] = await admin.describe_topics([topic])
        finally:
            await stop_clients(admin)
        return victim.node_id in described["partitions"][0]["isr"]

    await eventually(back_in_sync, within=WAIT, what=f"node {victim.node_id} back in the ISR")


async def test_diamond_completes_on_the_cluster(cluster_settings: Settings) -> None:
    """The diamond on three nodes: completed, in order, replay equal to live, no dead letter."""
    await check_diamond(cluster_settings, exact_offsets=True, topics_dir=CLUSTER_TOPICS)


@pytest.mark.timeout(900)
async def test_kill_9_of_the_workflow_partition_leader_mid_workflow(
    kafka_cluster: ApacheKafka, cluster_settings: Settings, tmp_path: Path
) -> None:
    """kill -9 of the node leading the workflow's `workflow.events` partition in the middle of
    a 200-task workflow: every component stays up with no restart by hand, the workflow
    completes, every task ran exactly once, and replay equals the live snapshot."""
    settings = cluster_settings
    run_log = tmp_path / "runs.log"
    path = plan_file(tmp_path, layered_plan(run_log, width=10, depth=20))
    async with running_mesh(
        settings, topics_dir=CLUSTER_TOPICS, shell_agents=3, python_agents=0
    ) as mesh:
        submitted = await submit(settings, path)
        partition = partition_for(submitted.workflow_id, 6)
        await wait_for(
            lambda: sum(run_log_counts(run_log).values()) >= 60, within=240, what="60 task runs"
        )
        victim = await partition_leader(
            settings, kafka_cluster, settings.topic("workflow.events"), partition
        )
        victim.kill()
        done_before_kill = sum(run_log_counts(run_log).values())
        state, _ = await wait_final(settings, submitted, idle_timeout=240)
        exited = {
            name: child.lines[-5:]
            for name, child in mesh.supervisor.children.items()
            if not child.running or child.incarnation
        }
    assert exited == {}, f"components exited after node {victim.node_id} was killed: {exited}"
    assert state.status == "completed", state.reason
    assert done_before_kill < 200  # the kill really happened mid-run
    replay = await replay_workflow(settings, submitted.workflow_id)
    counts = run_log_counts(run_log)
    assert len(counts) == 200
    twice = {task for task, n in counts.items() if n != 1}
    assert twice == set(), _what_happened_to(twice, run_log, replay.events)
    assert replay.equal is True, replay.differences


def _what_happened_to(tasks: set[str], run_log: Path, events: list[Any]) -> str:
    """The runs and the history events of ``tasks``: what a person needs to see why."""
    runs = [line for line in run_log.read_text().splitlines() if line.split()[0] in tasks]
    story = [
        f"{e.sequence} {e.type} {getattr(e, 'attempt', '')} {getattr(e, 'agent_id', '')}"
        for e in events
        if getattr(e, "task_id", None) in tasks
    ]
    return f"runs {runs}; history {story}"
