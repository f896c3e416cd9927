"""``mesh topics`` against real Apache Kafka: the issue's acceptance, deletes, partitions, SASL.

Each test works under its own fresh prefix on a tmp copy of topics/, so tests never collide, and
waits on conditions with a deadline, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from mesh.kafka.clients import stop_clients
from mesh.settings import Settings
from tests.helpers import Run, assert_one_line_error, run_mesh
from tooling.kafka.kafka_broker import ApacheKafka

SHIPPED = Path(__file__).resolve().parents[2] / "topics"
WAIT = 30.0
DYNAMIC_TOPIC_CONFIG = 1


@pytest.fixture
def topics_dir(tmp_path: Path) -> Path:
    target = tmp_path / "topics"
    shutil.copytree(SHIPPED, target)
    return target


@pytest.fixture
async def admin(kafka_settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A plain aiokafka admin client, for what a person would do by hand."""
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    try:
        await client.start()
        yield client
    finally:
        await stop_clients(client)


def mesh(settings: Settings, *args: str, env: dict[str, str] | None = None) -> Run:
    full_env = {
        "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": settings.topic_prefix,
        **(env or {}),
    }
    return run_mesh("topics", *args, env=full_env)


def applied(
    settings: Settings, topics_dir: Path, *flags: str, code: int = 0
) -> dict[str, list[dict[str, object]]]:
    """``apply --json``'s document, after checking its exit code (2: something left as is)."""
    done = mesh(settings, "apply", "--json", "--dir", str(topics_dir), *flags)
    assert done.code == code, done.stderr
    assert done.stderr == ""
    document: dict[str, list[dict[str, object]]] = json.loads(done.stdout)
    return document


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


async def partitions_of(admin: AIOKafkaAdminClient, topic: str) -> int | None:
    for found in await admin.describe_topics():  # all topics: naming one may auto-create it
        if found["topic"] == topic:
            return len(found["partitions"])
    return None


async def overrides_of(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    (resource,) = response.to_object()["resources"]
    return {
        entry["config_names"]: entry["config_value"]
        for entry in resource["config_entries"]
        if entry["config_source"] == DYNAMIC_TOPIC_CONFIG
    }


async def create_by_hand(admin: AIOKafkaAdminClient, *names: str) -> None:
    await admin.create_topics([NewTopic(name, 1, 1) for name in names])
    for name in names:

        async def visible(name: str = name) -> bool:
            return await partitions_of(admin, name) == 1

        await until(visible, f"{name} is visible")


def test_changed_retention_is_planned_applied_and_checked(
    kafka_settings: Settings, topics_dir: Path
) -> None:
    """The issue's acceptance: plan shows the retention change, apply fixes it, check goes
    from non-zero to zero, and a second apply has nothing left to do."""
    first = applied(kafka_settings, topics_dir)
    assert len(first["changes"]) == 16
    assert mesh(kafka_settings, "check", "--dir", str(topics_dir)).code == 0
    assert applied(kafka_settings, topics_dir)["changes"] == []

    edit(topics_dir / "workflow.yaml", "retention.ms: 7776000000", "retention.ms: 1209600000")
    plan = mesh(kafka_settings, "plan", "--json", "--dir", str(topics_dir))
    assert plan.code == 0, plan.stderr
    (change,) = json.loads(plan.stdout)["changes"]
    assert change == {
        "kind": "alter_config",
        "topic": kafka_settings.topic("workflow.events"),
        "name": "workflow.events",
        "status": "planned",
        "reason": None,
        "details": {"config": {"retention.ms": {"old": "7776000000", "new": "1209600000"}}},
    }
    text = mesh(kafka_settings, "plan", "--dir", str(topics_dir))
    assert "retention.ms 7776000000 → 1209600000" in text.stdout

    drift = mesh(kafka_settings, "check", "--dir", str(topics_dir))
    assert drift.code == 2
    assert "retention.ms 7776000000 → 1209600000" in drift.stdout

    fixed = applied(kafka_settings, topics_dir)
    assert [c["kind"] for c in fixed["changes"]] == ["alter_config"]
    assert mesh(kafka_settings, "check", "--dir", str(topics_dir)).code == 0
    assert applied(kafka_settings, topics_dir)["changes"] == []


async def test_override_set_by_hand_is_drift_and_apply_removes_it(
    kafka_settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
) -> None:
    """AlterConfigs (non-incremental) replaces all overrides: the undeclared one disappears."""
    applied(kafka_settings, topics_dir)
    topic = kafka_settings.topic("requests")
    declared = await overrides_of(admin, topic)
    await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {**declared, "segment.ms": "1234567"})]
    )

    async def overridden() -> bool:
        return "segment.ms" in await overrides_of(admin, topic)

    await until(overridden, "the hand-made override shows")
    drift = mesh(kafka_settings, "check", "--json", "--dir", str(topics_dir))
    assert drift.code == 2
    (change,) = json.loads(drift.stdout)["changes"]
    assert change["details"] == {"config": {"segment.ms": {"old": "1234567", "new": None}}}

    applied(kafka_settings, topics_dir)
    assert await overrides_of(admin, topic) == declared
    assert mesh(kafka_settings, "check", "--dir", str(topics_dir)).code == 0


async def test_undeclared_topic_is_deleted_only_with_allow_delete(
    kafka_settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
) -> None:
    """A topic made by hand under the prefix is 'would delete' until --allow-delete; a topic
    outside the prefix survives even apply --allow-delete."""
    handmade = kafka_settings.topic("handmade")
    outside = f"outside-{kafka_settings.topic_prefix}kept"
    await create_by_hand(admin, handmade, outside)

    plan = mesh(kafka_settings, "plan", "--dir", str(topics_dir))
    assert f"would delete {handmade}" in plan.stdout
    assert outside not in plan.stdout

    kept = applied(kafka_settings, topics_dir, code=2)
    assert [(c["kind"], c["status"]) for c in kept["skipped"]] == [("delete", "blocked")]
    assert await partitions_of(admin, handmade) == 1
    assert mesh(kafka_settings, "check", "--dir", str(topics_dir)).code == 2

    deleted = applied(kafka_settings, topics_dir, "--allow-delete")
    assert [(c["kind"], c["topic"]) for c in deleted["changes"]] == [("delete", handmade)]
    assert await partitions_of(admin, handmade) is None
    assert await partitions_of(admin, outside) == 1
    assert mesh(kafka_settings, "check", "--dir", str(topics_dir)).code == 0


async def test_partition_increase_is_applied(
    kafka_settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
) -> None:
    applied(kafka_settings, topics_dir)
    edit(topics_dir / "dlq.yaml", "partitions: 3", "partitions: 5")
    plan = mesh(kafka_settings, "plan", "--dir", str(topics_dir))
    assert f"add partitions to {kafka_settings.topic('dlq')}: 3 → 5" in plan.stdout
    grown = applied(kafka_settings, topics_dir)
    assert [(c["kind"], c["details"]) for c in grown["changes"]] == [
        ("add_partitions", {"partitions": {"old": 3, "new": 5}})
    ]
    assert await partitions_of(admin, kafka_settings.topic("dlq")) == 5
    assert mesh(kafka_settings, "check", "--dir", str(topics_dir)).code == 0


async def test_partition_decrease_is_refused_with_the_reason(
    kafka_settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
) -> None:
    applied(kafka_settings, topics_dir)
    edit(topics_dir / "dlq.yaml", "partitions: 3", "partitions: 2")
    result = applied(kafka_settings, topics_dir, code=2)
    assert result["changes"] == []
    (refused,) = result["skipped"]
    assert (refused["kind"], refused["status"]) == ("reduce_partitions", "refused")
    assert "Kafka cannot remove partitions" in str(refused["reason"])
    text = mesh(kafka_settings, "apply", "--dir", str(topics_dir))
    assert text.code == 2
    assert "refused: Kafka cannot remove partitions" in text.stdout
    assert await partitions_of(admin, kafka_settings.topic("dlq")) == 3
    assert mesh(kafka_settings, "check", "--dir", str(topics_dir)).code == 2


def test_replication_factor_beyond_the_cluster_is_refused_by_the_plan(
    kafka_settings: Settings, topics_dir: Path
) -> None:
    """Three replicas on one broker: plan, apply --dry-run and apply refuse each topic with one
    readable line before anything is created (apply exits 2, nothing failed); existing topics
    asked for another replication factor are refused, not moved."""
    rf3 = ("--dir", str(topics_dir), "--replication-factor", "3")
    plan = mesh(kafka_settings, "plan", *rf3)
    assert plan.code == 0, plan.stderr
    refusal = "refused: replication factor 3 needs 3 brokers; the cluster has 1"
    lines = [line for line in plan.stdout.splitlines() if refusal in line]
    assert len(lines) == 16
    assert all(len(line) < 300 for line in lines)
    assert "16 differences: 16 refused" in plan.stdout

    dry = mesh(kafka_settings, "apply", "--dry-run", *rf3)
    assert dry.code == 2
    assert "would apply 0 changes; 16 left as they are" in dry.stdout
    document = applied(kafka_settings, topics_dir, "--replication-factor", "3", code=2)
    assert (document["changes"], document["failed"]) == ([], [])
    assert {c["status"] for c in document["skipped"]} == {"refused"}
    assert mesh(kafka_settings, "check", *rf3).code == 2

    applied(kafka_settings, topics_dir)
    plan = mesh(
        kafka_settings, "plan", "--json", "--dir", str(topics_dir), "--replication-factor", "2"
    )
    changes = json.loads(plan.stdout)["changes"]
    assert len(changes) == 16
    assert {(c["kind"], c["status"]) for c in changes} == {("change_replication_factor", "refused")}


def test_values_kafka_rewrites_are_not_drift(kafka_settings: Settings, topics_dir: Path) -> None:
    """Kafka reports min.cleanable.dirty.ratio 0.50 as 0.5: still in sync."""
    ratio = "\n      min.cleanable.dirty.ratio: '0.50'"  # a string, so it is sent as written
    edit(
        topics_dir / "resources.yaml", "cleanup.policy: compact", "cleanup.policy: compact" + ratio
    )
    applied(kafka_settings, topics_dir)
    assert mesh(kafka_settings, "check", "--dir", str(topics_dir)).code == 0


def test_sasl_wrong_password_is_one_line_and_right_password_applies(
    real_kafka: ApacheKafka, topic_prefix: str, topics_dir: Path
) -> None:
    user, password = next(iter(real_kafka.sasl_users.items()))
    env = {
        "MESH_BOOTSTRAP_SERVERS": real_kafka.sasl_bootstrap_servers,
        "MESH_TOPIC_PREFIX": topic_prefix,
        "MESH_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "MESH_SASL_MECHANISM": "PLAIN",
        "MESH_SASL_USERNAME": user,
    }
    wrong = run_mesh(
        "topics", "apply", "--dir", str(topics_dir), env={**env, "MESH_SASL_PASSWORD": "wrong"}
    )
    line = assert_one_line_error(wrong)
    assert "SASL" in line
    assert wrong.stdout.count("\n") <= 1  # at most the header; nothing was applied

    right_env = {**env, "MESH_SASL_PASSWORD": password}
    right = run_mesh("topics", "apply", "--json", "--dir", str(topics_dir), env=right_env)
    assert right.code == 0, right.stderr
    assert right.stderr == ""  # aiokafka's "password in the clear" warning stays quiet
    assert len(json.loads(right.stdout)["changes"]) == 16
    check = run_mesh("topics", "check", "--dir", str(topics_dir), env=right_env)
    assert check.code == 0, check.stdout + check.stderr
