"""The topics contract (tests/contract/topics.py) on real Apache Kafka, and what only Kafka has:
overrides set by hand, partition counts it refuses, replication beyond the cluster, values it
rewrites, and SASL."""

from __future__ import annotations

import json
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from mesh.settings import Settings
from tests.contract.brokers import OnKafka
from tests.contract.topics import TopicsContract, applied, edit, mesh, partitions_of, until
from tests.helpers import assert_one_line_error, run_mesh
from tooling.kafka.kafka_broker import ApacheKafka

DYNAMIC_TOPIC_CONFIG = 1


async def overrides_of(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    (resource,) = response.to_object()["resources"]
    return {
        entry["config_names"]: entry["config_value"]
        for entry in resource["config_entries"]
        if entry["config_source"] == DYNAMIC_TOPIC_CONFIG
    }


class TestTopicsOnKafka(OnKafka, TopicsContract):
    """``mesh topics`` on Apache Kafka."""

    async def test_override_set_by_hand_is_drift_and_apply_removes_it(
        self, settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
    ) -> None:
        """AlterConfigs (non-incremental) replaces all overrides: the undeclared one disappears."""
        applied(settings, topics_dir)
        topic = settings.topic("requests")
        declared = await overrides_of(admin, topic)
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {**declared, "segment.ms": "1234567"})]
        )

        async def overridden() -> bool:
            return "segment.ms" in await overrides_of(admin, topic)

        await until(overridden, "the hand-made override shows")
        drift = mesh(settings, "check", "--json", "--dir", str(topics_dir))
        assert drift.code == 2
        (change,) = json.loads(drift.stdout)["changes"]
        assert change["details"] == {"config": {"segment.ms": {"old": "1234567", "new": None}}}

        applied(settings, topics_dir)
        assert await overrides_of(admin, topic) == declared
        assert mesh(settings, "check", "--dir", str(topics_dir)).code == 0

    async def test_partition_decrease_is_refused_with_the_reason(
        self, settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
    ) -> None:
        applied(settings, topics_dir)
        edit(topics_dir / "dlq.yaml", "partitions: 3", "partitions: 2")
        result = applied(settings, topics_dir, code=2)
        assert result["changes"] == []
        (refused,) = result["skipped"]
        assert (refused["kind"], refused["status"]) == ("reduce_partitions", "refused")
        assert "Kafka cannot remove partitions" in str(refused["reason"])
        text = mesh(settings, "apply", "--dir", str(topics_dir))
        assert text.code == 2
        assert "refused: Kafka cannot remove partitions" in text.stdout
        assert await partitions_of(admin, settings.topic("dlq")) == 3
        assert mesh(settings, "check", "--dir", str(topics_dir)).code == 2

    def test_replication_factor_beyond_the_cluster_is_refused_by_the_plan(
        self, settings: Settings, topics_dir: Path
    ) -> None:
        """Three replicas on one broker: plan, apply --dry-run and apply refuse each topic with one
        readable line before anything is created (apply exits 2, nothing failed); existing topics
        asked for another replication factor are refused, not moved."""
        rf3 = ("--dir", str(topics_dir), "--replication-factor", "3")
        plan = mesh(settings, "plan", *rf3)
        assert plan.code == 0, plan.stderr
        refusal = "refused: replication factor 3 needs 3 brokers; the cluster has 1"
        lines = [line for line in plan.stdout.splitlines() if refusal in line]
        assert len(lines) == 18
        assert all(len(line) < 300 for line in lines)
        assert "18 differences: 18 refused" in plan.stdout

        dry = mesh(settings, "apply", "--dry-run", *rf3)
        assert dry.code == 2
        assert "would apply 0 changes; 18 left as they are" in dry.stdout
        document = applied(settings, topics_dir, "--replication-factor", "3", code=2)
        assert (document["changes"], document["failed"]) == ([], [])
        assert {c["status"] for c in document["skipped"]} == {"refused"}
        assert mesh(settings, "check", *rf3).code == 2

        applied(settings, topics_dir)
        plan = mesh(
            settings, "plan", "--json", "--dir", str(topics_dir), "--replication-factor", "2"
        )
        changes = json.loads(plan.stdout)["changes"]
        assert len(changes) == 18
        assert {(c["kind"], c["status"]) for c in changes} == {
            ("change_replication_factor", "refused")
        }

    def test_values_kafka_rewrites_are_not_drift(
        self, settings: Settings, topics_dir: Path
    ) -> None:
        """Kafka reports min.cleanable.dirty.ratio 0.50 as 0.5: still in sync."""
        ratio = "\n      min.cleanable.dirty.ratio: '0.50'"  # a string, so it is sent as written
        edit(
            topics_dir / "resources.yaml",
            "cleanup.policy: compact",
            "cleanup.policy: compact" + ratio,
        )
        applied(settings, topics_dir)
        assert mesh(settings, "check", "--dir", str(topics_dir)).code == 0

    def test_sasl_wrong_password_is_one_line_and_right_password_applies(
        self, real_kafka: ApacheKafka, topic_prefix: str, topics_dir: Path
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
        assert len(json.loads(right.stdout)["changes"]) == 18
        check = run_mesh("topics", "check", "--dir", str(topics_dir), env=right_env)
        assert check.code == 0, check.stdout + check.stderr
