"""``mesh topics`` on a broker: capabilities, apply, re-apply, check, describe, a changed config,
more partitions, and topics made by hand.

Each case works under its own fresh prefix on a tmp copy of topics/, so cases never collide, and
waits on conditions with a deadline, never on fixed sleeps. What a broker cannot do (Tansu has no
AlterConfigs and no CreatePartitions) is planned as "unsupported", skipped with a line saying so,
and still reported by ``check``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
    read_cluster,
)
from tests.contract.brokers import Contract
from tests.helpers import Run, run_mesh

SHIPPED = Path(__file__).resolve().parents[2] / "topics"
WAIT = 30.0


def mesh(settings: Settings, *args: str, env: dict[str, str] | None = None) -> Run:
    """``mesh topics ARGS`` as a subprocess against the test's broker and prefix."""
    full_env = {
        "MESH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "MESH_TOPIC_PREFIX": settings.topic_prefix,
        **(env or {}),
    }
    return run_mesh("topics", *args, env=full_env)


def applied(
    settings: Settings, topics_dir: Path, *flags: str, code: int = 0
) -> dict[str, list[dict[str, object]]]:
    """``mesh topics apply --json``'s document, after checking it ran quietly with the exit code
    expected (2: a difference refused or left as is)."""
    done = mesh(settings, "apply", "--json", "--dir", str(topics_dir), *flags)
    assert done.code == code, done.stderr
    assert done.stderr == ""
    document: dict[str, list[dict[str, object]]] = json.loads(done.stdout)
    return document


async def apply_declared(settings: Settings, topics_dir: Path) -> None:
    """The declared topics, applied in-process: the starting point of a case about a change."""
    await apply_topics(settings, load_topics(topics_dir, prefix=settings.topic_prefix).topics)


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


async def create_by_hand(admin: AIOKafkaAdminClient, *names: str) -> None:
    """What a person would do with another tool: one-partition topics, once they are visible."""
    await admin.create_topics([NewTopic(name, 1, 1) for name in names])
    for name in names:

        async def visible(name: str = name) -> bool:
            return await partitions_of(admin, name) == 1

        await until(visible, f"{name} is visible")


def copy_shipped(tmp_path: Path) -> Path:
    """A copy of the shipped declarations that a case may edit."""
    target = tmp_path / "topics"
    shutil.copytree(SHIPPED, target)
    return target


@contextlib.asynccontextmanager
async def admin_client(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A plain aiokafka admin client, for what a person would do by hand."""
    client = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        await client.start()
        yield client
    finally:
        await stop_clients(client)


class TopicsContract(Contract):
    """Topics as code: what ``mesh topics`` plans, applies and checks on a broker."""

    @pytest.fixture
    def topics_dir(self, tmp_path: Path) -> Path:
        return copy_shipped(tmp_path)

    @pytest.fixture
    async def admin(self, settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
        async with admin_client(settings) as client:
            yield client

    async def test_capabilities_come_from_api_versions(self, settings: Settings) -> None:
        """What the broker can do is read from its ApiVersions, not assumed."""
        caps = (await read_cluster(settings)).capabilities
        assert caps.offers(Api.CREATE_TOPICS)
        assert caps.offers(Api.DELETE_TOPICS)
        assert caps.offers(Api.DESCRIBE_CONFIGS)
        assert caps.offers(Api.ALTER_CONFIGS) is self.broker.alter_configs
        assert caps.offers(Api.CREATE_PARTITIONS) is self.broker.create_partitions

    def test_apply_then_apply_again_check_and_describe(
        self, settings: Settings, topics_dir: Path
    ) -> None:
        """The round trip: create all, then nothing left to do, in sync, described as declared."""
        first = applied(settings, topics_dir)
        assert len(first["changes"]) == 18
        assert {c["kind"] for c in first["changes"]} == {"create"}
        assert {c["status"] for c in first["changes"]} == {"applied"}

        second = applied(settings, topics_dir)
        assert second["changes"] == []
        assert second["skipped"] == []

        text = mesh(settings, "apply", "--dir", str(topics_dir))
        assert "no changes" in text.stdout

        check = mesh(settings, "check", "--dir", str(topics_dir))
        assert check.code == 0, check.stdout + check.stderr
        assert "in sync" in check.stdout

        described = mesh(settings, "describe", "--json", "--dir", str(topics_dir))
        topics = {t["name"]: t for t in json.loads(described.stdout)["topics"]}
        assert len(topics) == 18
        events = topics["workflow.events"]
        assert events["topic"] == settings.topic("workflow.events")
        assert (events["partitions"], events["replication_factor"]) == (6, 1)
        assert events["configs"]["retention.ms"] == "7776000000"
        assert events["declared"] is True

        table = mesh(settings, "describe", "--dir", str(topics_dir))
        assert table.code == 0, table.stderr
        assert settings.topic("workflow.state") in table.stdout

    async def test_changed_retention_is_planned_then_applied_or_skipped(
        self, settings: Settings, topics_dir: Path
    ) -> None:
        """A changed retention shows in plan and makes check fail (exit 2). With AlterConfigs,
        apply fixes it: check goes back to zero and a second apply has nothing left to do.
        Without, plan says "unsupported", apply skips it with a line saying why, and check keeps
        reporting it: it is a real difference."""
        await apply_declared(settings, topics_dir)  # in sync: the round trip shows that
        edit(topics_dir / "workflow.yaml", "retention.ms: 7776000000", "retention.ms: 1209600000")
        plan = mesh(settings, "plan", "--json", "--dir", str(topics_dir))
        assert plan.code == 0, plan.stderr
        (change,) = json.loads(plan.stdout)["changes"]
        details = {"config": {"retention.ms": {"old": "7776000000", "new": "1209600000"}}}
        if self.broker.alter_configs:
            assert change == {
                "kind": "alter_config",
                "topic": settings.topic("workflow.events"),
                "name": "workflow.events",
                "status": "planned",
                "reason": None,
                "details": details,
            }
        else:
            assert (change["kind"], change["status"]) == ("alter_config", "unsupported")
            assert change["details"] == details
        text = mesh(settings, "plan", "--dir", str(topics_dir))
        assert "retention.ms 7776000000 → 1209600000" in text.stdout

        drift = mesh(settings, "check", "--dir", str(topics_dir))
        assert drift.code == 2
        assert "retention.ms 7776000000 → 1209600000" in drift.stdout

        if self.broker.alter_configs:
            fixed = applied(settings, topics_dir)
            assert [c["kind"] for c in fixed["changes"]] == ["alter_config"]
            assert mesh(settings, "check", "--dir", str(topics_dir)).code == 0
            assert applied(settings, topics_dir)["changes"] == []
        else:
            skipped = mesh(settings, "apply", "--dir", str(topics_dir))
            assert skipped.code == 2, skipped.stderr  # a difference left as is
            assert "unsupported by this broker" in skipped.stdout
            assert "AlterConfigs" in skipped.stdout
            check = mesh(settings, "check", "--dir", str(topics_dir))
            assert check.code == 2
            assert "unsupported by this broker" in check.stdout

    async def test_partition_increase_is_applied_or_skipped(
        self, settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
    ) -> None:
        """More partitions for a topic: with CreatePartitions, plan shows them, apply adds them
        and check is in sync; without, apply skips the change as unsupported and the topic keeps
        its partitions."""
        await apply_declared(settings, topics_dir)
        edit(topics_dir / "dlq.yaml", "partitions: 3", "partitions: 5")
        dlq = settings.topic("dlq")
        plan = mesh(settings, "plan", "--dir", str(topics_dir))
        assert f"add partitions to {dlq}: 3 → 5" in plan.stdout
        if self.broker.create_partitions:
            grown = applied(settings, topics_dir)
            assert [(c["kind"], c["details"]) for c in grown["changes"]] == [
                ("add_partitions", {"partitions": {"old": 3, "new": 5}})
            ]
            assert await partitions_of(admin, dlq) == 5
            assert mesh(settings, "check", "--dir", str(topics_dir)).code == 0
        else:
            declarations = load_topics(topics_dir, prefix=settings.topic_prefix)
            result = await apply_topics(settings, declarations.topics)
            assert result.changes == ()
            (skipped,) = result.skipped
            assert (skipped.kind, skipped.status) == (
                ChangeKind.ADD_PARTITIONS,
                ChangeStatus.UNSUPPORTED,
            )
            (described,) = await describe_topics(settings, "dlq")
            assert described.partitions == 3

    async def test_undeclared_topic_is_deleted_only_with_allow_delete(
        self, settings: Settings, topics_dir: Path, admin: AIOKafkaAdminClient
    ) -> None:
        """A topic made by hand under the prefix is 'would delete' (and drift) until
        --allow-delete; a topic outside the prefix survives even apply --allow-delete."""
        handmade = settings.topic("handmade")
        outside = f"outside-{settings.topic_prefix}kept"
        await create_by_hand(admin, handmade, outside)

        plan = mesh(settings, "plan", "--dir", str(topics_dir))
        assert f"would delete {handmade}" in plan.stdout
        assert outside not in plan.stdout

        kept = applied(settings, topics_dir, code=2)  # the delete is left as is
        assert [(c["kind"], c["status"], c["topic"]) for c in kept["skipped"]] == [
            ("delete", "blocked", handmade)
        ]
        assert await partitions_of(admin, handmade) == 1
        assert mesh(settings, "check", "--dir", str(topics_dir)).code == 2

        deleted = applied(settings, topics_dir, "--allow-delete")
        assert [(c["kind"], c["topic"]) for c in deleted["changes"]] == [("delete", handmade)]
        assert await partitions_of(admin, handmade) is None
        names = await admin.list_topics()
        assert handmade not in names
        assert outside in names
        assert await partitions_of(admin, outside) == 1
        assert mesh(settings, "check", "--dir", str(topics_dir)).code == 0
