"""``mesh topics export`` on real Apache Kafka: live topics (hand-made ones and hand-set
overrides included) become declarations that ``plan`` and ``check`` then find in sync.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from mesh.settings import Settings
from tests.contract.topics import (
    applied,
    create_by_hand,
    mesh,
    until,
)
from tests.helpers import assert_one_line_error
from tests.kafka.test_topics_kafka import overrides_of


async def test_export_then_plan_is_in_sync(
    kafka_settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient, tmp_path: Path
) -> None:
    applied(kafka_settings, topics_dir)
    requests, handmade = kafka_settings.topic("requests"), kafka_settings.topic("handmade")
    declared = await overrides_of(admin, requests)
    changed = {**declared, "segment.ms": "3600000"}
    await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, requests, changed)])

    async def overridden() -> bool:
        return "segment.ms" in await overrides_of(admin, requests)

    await until(overridden, "the hand-set override shows")
    await create_by_hand(admin, handmade)

    out = tmp_path / "adopted"
    exported = mesh(kafka_settings, "export", "--out", str(out))
    assert exported.code == 0, exported.stderr
    # the 18 declared topics and the one made by hand
    assert f"exported 19 topics under prefix {kafka_settings.topic_prefix!r}" in exported.stdout
    document = yaml.safe_load((out / "exported.yaml").read_text())
    by_name = {topic["name"]: topic for topic in document["topics"]}
    assert by_name["handmade"] == {"name": "handmade", "partitions": 1, "replication_factor": 1}
    assert by_name["requests"]["config"]["segment.ms"] == "3600000"

    plan = mesh(kafka_settings, "plan", "--dir", str(out))
    assert plan.code == 0, plan.stderr
    assert "no changes" in plan.stdout
    assert mesh(kafka_settings, "check", "--dir", str(out)).code == 0

    again = mesh(kafka_settings, "export", "--out", str(out))
    assert "export never overwrites" in assert_one_line_error(again)

    # --prefix picks the prefix whatever MESH_TOPIC_PREFIX says; printed on stdout.
    other = mesh(
        kafka_settings,
        "export",
        "--prefix",
        kafka_settings.topic_prefix,
        env={"MESH_TOPIC_PREFIX": "someone-else."},
    )
    assert other.code == 0, other.stderr
    assert yaml.safe_load(other.stdout) == document
    as_json = mesh(kafka_settings, "export", "--json")
    assert json.loads(as_json.stdout) == {
        "prefix": kafka_settings.topic_prefix,
        "file": None,
        "topics": document["topics"],
    }

    # A prefix without its separator could hold other prefixes' topics: said on stderr.
    bare = kafka_settings.topic_prefix.rstrip(".")
    await create_by_hand(admin, f"{bare}x.requests")
    loose = mesh(kafka_settings, "export", "--prefix", bare)
    assert loose.code == 0, loose.stderr
    assert loose.stderr == (
        f"warning: the prefix {bare!r} does not end with '.', '_' or '-', so it matches other "
        f"prefixes' topics too; exported among them: {bare}x.requests\n"
    )
