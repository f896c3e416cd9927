"""``mesh topics`` on the embedded Tansu broker: apply, re-apply, check, describe, and its gaps.

Tansu has no AlterConfigs and no CreatePartitions, and reports only the configs a topic was
created with; these tests pin how mesh reads that (capabilities from ApiVersions, no false drift).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from mesh.kafka.clients import stop_clients
from mesh.settings import Settings
from mesh.topics import (
    Api,
    ChangeKind,
    ChangeStatus,
    apply_topics,
    describe_topics,
    load_topics,
    plan_topics,
    read_cluster,
)
from tests.helpers import Run, run_mesh

SHIPPED = Path(__file__).resolve().parents[2] / "topics"


@pytest.fixture
def topics_dir(tmp_path: Path) -> Path:
    target = tmp_path / "topics"
    shutil.copytree(SHIPPED, target)
    return target


@pytest.fixture
async def admin(embedded_settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A plain aiokafka admin client, for what a person would do by hand."""
    client = AIOKafkaAdminClient(bootstrap_servers=embedded_settings.bootstrap_servers)
    try:
        await client.start()
        yield client
    finally:
        await stop_clients(client)


def mesh(settings: Settings, *args: str) -> Run:
    env = {
        "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": settings.topic_prefix,
    }
    return run_mesh("topics", *args, env=env)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


async def test_capabilities_come_from_api_versions(embedded_settings: Settings) -> None:
    caps = (await read_cluster(embedded_settings)).capabilities
    assert caps.offers(Api.CREATE_TOPICS)
    assert caps.offers(Api.DELETE_TOPICS)
    assert caps.offers(Api.DESCRIBE_CONFIGS)
    assert not caps.offers(Api.ALTER_CONFIGS)
    assert not caps.offers(Api.CREATE_PARTITIONS)


def test_apply_then_apply_again_check_and_describe(
    embedded_settings: Settings, topics_dir: Path
) -> None:
    """The issue's round trip on the embedded broker: create all, then nothing left to do."""
    first = mesh(embedded_settings, "apply", "--json", "--dir", str(topics_dir))
    assert first.code == 0, first.stderr
    document = json.loads(first.stdout)
    assert len(document["changes"]) == 16
    assert {c["kind"] for c in document["changes"]} == {"create"}
    assert {c["status"] for c in document["changes"]} == {"applied"}

    second = mesh(embedded_settings, "apply", "--json", "--dir", str(topics_dir))
    assert second.code == 0, second.stderr
    assert json.loads(second.stdout)["changes"] == []
    assert json.loads(second.stdout)["skipped"] == []

    text = mesh(embedded_settings, "apply", "--dir", str(topics_dir))
    assert "no changes" in text.stdout

    check = mesh(embedded_settings, "check", "--dir", str(topics_dir))
    assert check.code == 0, check.stdout + check.stderr
    assert "in sync" in check.stdout

    described = mesh(embedded_settings, "describe", "--json", "--dir", str(topics_dir))
    topics = {t["name"]: t for t in json.loads(described.stdout)["topics"]}
    assert len(topics) == 16
    events = topics["workflow.events"]
    assert events["topic"] == embedded_settings.topic("workflow.events")
    assert (events["partitions"], events["replication_factor"]) == (6, 1)
    assert events["configs"]["retention.ms"] == "7776000000"
    assert events["declared"] is True

    table = mesh(embedded_settings, "describe", "--dir", str(topics_dir))
    assert table.code == 0, table.stderr
    assert embedded_settings.topic("workflow.state") in table.stdout


async def test_changed_config_is_unsupported_skipped_and_still_drift(
    embedded_settings: Settings, topics_dir: Path
) -> None:
    """No AlterConfigs: plan says so, apply skips it with a line, check keeps failing (exit 2)."""
    prefix = embedded_settings.topic_prefix
    declarations = load_topics(topics_dir, prefix=prefix)
    await apply_topics(embedded_settings, declarations.topics)
    edit(topics_dir / "dlq.yaml", "retention.ms: 2592000000", "retention.ms: 86400000")

    planned = mesh(embedded_settings, "plan", "--json", "--dir", str(topics_dir))
    (change,) = json.loads(planned.stdout)["changes"]
    assert (change["kind"], change["status"]) == ("alter_config", "unsupported")
    assert change["details"]["config"]["retention.ms"] == {
        "old": "2592000000",
        "new": "86400000",
    }

    applied = mesh(embedded_settings, "apply", "--dir", str(topics_dir))
    assert applied.code == 2, applied.stderr  # a difference left as is
    assert "unsupported by this broker" in applied.stdout
    assert "AlterConfigs" in applied.stdout

    check = mesh(embedded_settings, "check", "--dir", str(topics_dir))
    assert check.code == 2
    assert "unsupported by this broker" in check.stdout


async def test_partition_increase_is_unsupported(
    embedded_settings: Settings, topics_dir: Path
) -> None:
    declarations = load_topics(topics_dir, prefix=embedded_settings.topic_prefix)
    await apply_topics(embedded_settings, declarations.topics)
    edit(topics_dir / "dlq.yaml", "partitions: 3", "partitions: 4")
    grown = load_topics(topics_dir, prefix=embedded_settings.topic_prefix)
    result = await apply_topics(embedded_settings, grown.topics)
    assert result.changes == ()
    (skipped,) = result.skipped
    assert (skipped.kind, skipped.status) == (ChangeKind.ADD_PARTITIONS, ChangeStatus.UNSUPPORTED)
    (dlq,) = await describe_topics(embedded_settings, "dlq")
    assert dlq.partitions == 3


async def test_hand_made_topics_and_the_prefix_fence(
    embedded_settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
) -> None:
    """Undeclared under the prefix: deleted only with --allow-delete. Outside: never touched."""
    prefix = embedded_settings.topic_prefix
    outside = f"other-{prefix}kept"
    await admin.create_topics([NewTopic(f"{prefix}handmade", 1, 1), NewTopic(outside, 1, 1)])
    first = mesh(embedded_settings, "apply", "--json", "--dir", str(topics_dir))
    assert first.code == 2, first.stderr  # the delete is left as is
    (blocked,) = json.loads(first.stdout)["skipped"]
    assert (blocked["kind"], blocked["status"], blocked["topic"]) == (
        "delete",
        "blocked",
        f"{prefix}handmade",
    )
    plan = mesh(embedded_settings, "plan", "--dir", str(topics_dir))
    assert f"would delete {prefix}handmade" in plan.stdout
    assert outside not in plan.stdout

    deleted = mesh(embedded_settings, "apply", "--allow-delete", "--json", "--dir", str(topics_dir))
    assert deleted.code == 0, deleted.stderr
    (change,) = json.loads(deleted.stdout)["changes"]
    assert (change["kind"], change["topic"]) == ("delete", f"{prefix}handmade")
    names = await admin.list_topics()
    assert f"{prefix}handmade" not in names
    assert outside in names
    assert mesh(embedded_settings, "check", "--dir", str(topics_dir)).code == 0


async def test_topic_without_reported_configs_is_a_note(
    embedded_settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
) -> None:
    """A declared topic made by hand without configs: Tansu reports none, so nothing to compare."""
    await admin.create_topics([NewTopic(embedded_settings.topic("dlq"), 3, 1)])
    declarations = load_topics(topics_dir, prefix=embedded_settings.topic_prefix)
    dlq = [spec for spec in declarations.topics if spec.name == "dlq"]
    plan = await plan_topics(embedded_settings, dlq)
    assert plan.in_sync
    assert [n.message for n in plan.notes] == [
        "configs not reported by this broker; they cannot be compared"
    ]
    described = mesh(embedded_settings, "describe", "dlq", "--dir", str(topics_dir))
    assert "not reported by this broker" in described.stdout


def test_describe_by_logical_or_full_name(embedded_settings: Settings, topics_dir: Path) -> None:
    assert mesh(embedded_settings, "apply", "--dir", str(topics_dir)).code == 0
    for name in ("plans", embedded_settings.topic("plans")):
        done = mesh(embedded_settings, "describe", name, "--json")
        (topic,) = json.loads(done.stdout)["topics"]
        assert topic["topic"] == embedded_settings.topic("plans")
    missing = mesh(embedded_settings, "describe", "nope")
    assert missing.code == 1
    assert missing.stderr.startswith("mesh: error: no topic 'nope'")


def test_dry_run_changes_nothing(embedded_settings: Settings, topics_dir: Path) -> None:
    dry = mesh(embedded_settings, "apply", "--dry-run", "--json", "--dir", str(topics_dir))
    document = json.loads(dry.stdout)
    assert document["dry_run"] is True
    assert len(document["changes"]) == 16
    assert {c["status"] for c in document["changes"]} == {"planned"}
    after = mesh(embedded_settings, "plan", "--json", "--dir", str(topics_dir))
    assert len(json.loads(after.stdout)["changes"]) == 16
