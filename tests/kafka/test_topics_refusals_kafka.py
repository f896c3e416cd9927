"""Plans that see what apply would do, on real Apache Kafka (one broker): what the brokers
would refuse is refused by ``plan`` before ``apply``, a removed override is drift, and a change
that fails halfway is reported with the others' outcome.

Each test works under its own fresh prefix on a tmp copy of topics/.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from mesh.kafka.clients import stop_clients
from mesh.settings import Settings
from mesh.topics import ChangeStatus, TopicPlan, apply_topics, load_topics
from tests.contract.topics import (
    applied,
    edit,
    mesh,
    partitions_of,
    until,
)
from tests.kafka.test_topics_kafka import overrides_of


def test_what_the_brokers_refuse_is_refused_by_the_plan(
    kafka_settings: Settings, topics_dir: Path
) -> None:
    """A config this broker rejects (tiered storage is off; the offline validation cannot
    know) is refused by plan and dry run in one line; apply makes the rest and exits 2."""
    edit(
        topics_dir / "resources.yaml",
        "cleanup.policy: compact",
        "cleanup.policy: compact\n      remote.storage.enable: 'true'",
    )
    resources = kafka_settings.topic("resources")
    plan = mesh(kafka_settings, "plan", "--json", "--dir", str(topics_dir))
    assert plan.code == 0, plan.stderr
    refused = {
        c["topic"]: c["reason"]
        for c in json.loads(plan.stdout)["changes"]
        if c["status"] == "refused"
    }
    assert set(refused) == {resources}, refused
    assert "\n" not in refused[resources]
    assert len(refused[resources]) < 400
    assert "tiered storage" in refused[resources].lower()

    dry = mesh(kafka_settings, "apply", "--dry-run", "--dir", str(topics_dir))
    assert dry.code == 2
    assert "would apply 17 changes; 1 left as they are" in dry.stdout

    document = applied(kafka_settings, topics_dir, code=2)
    assert len(document["changes"]) == 17
    assert document["failed"] == []
    assert [c["topic"] for c in document["skipped"]] == [resources]
    assert mesh(kafka_settings, "check", "--dir", str(topics_dir)).code == 2


def test_validate_cluster_refuses_what_the_brokers_would(
    kafka_settings: Settings, topics_dir: Path
) -> None:
    """validate --cluster: one line per topic the single broker cannot hold with 3 replicas,
    exit 1; without the flag, or with a replication factor it can hold, valid."""
    rf3 = ("--dir", str(topics_dir), "--replication-factor", "3")
    assert mesh(kafka_settings, "validate", *rf3).code == 0
    refused = mesh(kafka_settings, "validate", "--cluster", *rf3)
    assert refused.code == 1
    lines = refused.stdout.splitlines()
    assert len(lines) == 18
    assert all("replication factor 3 needs 3 brokers; the cluster has 1" in line for line in lines)
    assert refused.stderr.startswith("mesh: error: 18 problems in the topic declarations")
    fine = mesh(kafka_settings, "validate", "--cluster", "--dir", str(topics_dir))
    assert fine.code == 0, fine.stderr
    assert f"valid for prefix {kafka_settings.topic_prefix!r} on " in fine.stdout


async def test_a_removed_override_is_drift_even_when_the_default_matches(
    kafka_settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
) -> None:
    """cleanup.policy=delete is Kafka's default: removed by hand it is still drift, because a
    later change of the brokers' default would change the topic."""
    applied(kafka_settings, topics_dir)
    topic = kafka_settings.topic("dlq")
    declared = await overrides_of(admin, topic)
    assert declared["cleanup.policy"] == "delete"
    kept = {key: value for key, value in declared.items() if key != "cleanup.policy"}
    await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, kept)])

    async def removed() -> bool:
        return "cleanup.policy" not in await overrides_of(admin, topic)

    await until(removed, "the override is gone")
    drift = mesh(kafka_settings, "check", "--json", "--dir", str(topics_dir))
    assert drift.code == 2
    (change,) = json.loads(drift.stdout)["changes"]
    assert change["details"] == {
        "config": {"cleanup.policy": {"old": None, "new": "delete", "default": "delete"}}
    }
    text = mesh(kafka_settings, "check", "--dir", str(topics_dir))
    assert "cleanup.policy (unset; default delete) → delete" in text.stdout

    applied(kafka_settings, topics_dir)
    assert await overrides_of(admin, topic) == declared
    assert mesh(kafka_settings, "check", "--dir", str(topics_dir)).code == 0


async def test_a_change_failing_halfway_is_reported_with_the_others(
    kafka_settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
) -> None:
    """Planned: create dlq again and alter requests' retention; between plan and apply
    someone deletes requests. The create is done, the alter failed with one line, and the
    result (apply --json's document) says both, with exit code 1."""
    applied(kafka_settings, topics_dir)
    dlq, requests = kafka_settings.topic("dlq"), kafka_settings.topic("requests")
    await admin.delete_topics([dlq])

    async def gone() -> bool:
        return await partitions_of(admin, dlq) is None

    await until(gone, "dlq is deleted")
    edit(
        topics_dir / "client.yaml",
        "cleanup.policy: delete",
        "cleanup.policy: delete\n      segment.ms: 3600000",
    )
    declared = load_topics(topics_dir, prefix=kafka_settings.topic_prefix).topics

    def delete_requests_by_hand(plan: TopicPlan) -> None:
        assert {(c.kind, c.topic) for c in plan.planned} >= {("create", dlq)}
        # apply's event loop waits here: the hand-made change runs on its own loop and client.
        thread = threading.Thread(target=asyncio.run, args=(_delete(kafka_settings, requests),))
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive()

    result = await apply_topics(kafka_settings, declared, on_plan=delete_requests_by_hand)
    assert result.exit_code == 1
    document = result.as_dict()
    assert [(c["kind"], c["topic"]) for c in document["changes"]] == [("create", dlq)]
    failed = [c for c in document["failed"] if c["topic"] == requests]
    assert [(c["kind"], c["status"]) for c in failed] == [("alter_config", ChangeStatus.FAILED)]
    assert "\n" not in failed[0]["reason"]
    assert (
        "does not exist" in failed[0]["reason"].lower() or "unknown" in failed[0]["reason"].lower()
    )


async def _delete(settings: Settings, topic: str) -> None:
    client = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        await client.start()
        await client.delete_topics([topic])
    finally:
        await stop_clients(client)
