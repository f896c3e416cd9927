"""The topics contract (tests/contract/topics.py) on the embedded Tansu broker, and cases run here
only: Tansu reports only the configs a topic was created with (how mesh reads that: no false
drift), and two CLI paths that do not depend on the broker (describe by name, a dry run)."""

from __future__ import annotations

import json
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from mesh.settings import Settings
from mesh.topics import load_topics, plan_topics
from tests.contract.brokers import OnEmbedded
from tests.contract.topics import TopicsContract, mesh


class TestTopicsOnEmbedded(OnEmbedded, TopicsContract):
    """``mesh topics`` on the embedded broker, which has no AlterConfigs and no CreatePartitions."""

    async def test_topic_without_reported_configs_is_a_note(
        self, settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
    ) -> None:
        """A declared topic made by hand without configs: Tansu reports none, so there is nothing to
        compare."""
        await admin.create_topics([NewTopic(settings.topic("dlq"), 3, 1)])
        declarations = load_topics(topics_dir, prefix=settings.topic_prefix)
        dlq = [spec for spec in declarations.topics if spec.name == "dlq"]
        plan = await plan_topics(settings, dlq)
        assert plan.in_sync
        assert [n.message for n in plan.notes] == [
            "configs not reported by this broker; they cannot be compared"
        ]
        described = mesh(settings, "describe", "dlq", "--dir", str(topics_dir))
        assert "not reported by this broker" in described.stdout

    def test_describe_by_logical_or_full_name(self, settings: Settings, topics_dir: Path) -> None:
        assert mesh(settings, "apply", "--dir", str(topics_dir)).code == 0
        for name in ("plans", settings.topic("plans")):
            done = mesh(settings, "describe", name, "--json")
            (topic,) = json.loads(done.stdout)["topics"]
            assert topic["topic"] == settings.topic("plans")
        missing = mesh(settings, "describe", "nope")
        assert missing.code == 1
        assert missing.stderr.startswith("mesh: error: no topic 'nope'")

    def test_dry_run_changes_nothing(self, settings: Settings, topics_dir: Path) -> None:
        dry = mesh(settings, "apply", "--dry-run", "--json", "--dir", str(topics_dir))
        document = json.loads(dry.stdout)
        assert document["dry_run"] is True
        assert len(document["changes"]) == 18
        assert {c["status"] for c in document["changes"]} == {"planned"}
        after = mesh(settings, "plan", "--json", "--dir", str(topics_dir))
        assert len(json.loads(after.stdout)["changes"]) == 18
