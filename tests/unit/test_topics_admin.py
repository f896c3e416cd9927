"""The aiokafka adapter over a fake admin client: refusals, the visibility wait, capabilities."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from mesh.settings import Settings
from mesh.topics import Api, Change, ChangeKind
from mesh.topics._admin import TopicAdmin

TOPIC_ALREADY_EXISTS = 36
INVALID_REPLICATION_FACTOR = 38


@dataclass
class FakeAdmin:
    """Just enough of ``AIOKafkaAdminClient``: topics appear after ``lag`` metadata reads."""

    api_versions: list[tuple[int, int, int]] = field(
        default_factory=lambda: [(18, 0, 3), (19, 0, 7), (20, 0, 6), (32, 0, 4), (33, 0, 2)]
    )
    refuse: dict[str, int] = field(default_factory=dict)
    lag: int = 2
    topics: dict[str, int] = field(default_factory=dict)
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)
    metadata_reads: int = 0

    async def _send_request(self, request: Any) -> Any:
        return SimpleNamespace(api_versions=self.api_versions)

    async def create_topics(self, new_topics: list[Any]) -> Any:
        errors = []
        for topic in new_topics:
            code = self.refuse.get(topic.name, 0)
            if code == 0:
                self.pending[topic.name] = (topic.num_partitions, self.metadata_reads + self.lag)
            errors.append((topic.name, code, "no" if code else None))
        return SimpleNamespace(topic_errors=errors)

    async def describe_topics(self) -> list[dict[str, Any]]:
        self.metadata_reads += 1
        for name, (partitions, visible_at) in list(self.pending.items()):
            if self.metadata_reads >= visible_at:
                self.topics[name] = partitions
                del self.pending[name]
        return [
            {
                "topic": name,
                "is_internal": False,
                "partitions": [{"leader": 1, "replicas": [1]} for _ in range(count)],
            }
            for name, count in self.topics.items()
        ]


def create(name: str) -> Change:
    return Change(ChangeKind.CREATE, name, name, new=2, replication_factor=1)


def adapter(fake: FakeAdmin, visible_within: float = 5.0) -> TopicAdmin:
    return TopicAdmin(fake, Settings(), visible_within=visible_within)


async def test_create_waits_until_the_metadata_shows_the_topic() -> None:
    fake = FakeAdmin(lag=3)
    done: list[str] = []
    await adapter(fake).create([create("a"), create("b")], lambda c: done.append(c.topic), refused)
    assert sorted(done) == ["a", "b"]
    assert fake.metadata_reads >= 3  # not reported done before the metadata had it


def refused(change: Change, reason: str) -> None:
    raise AssertionError(f"{change.topic} failed: {reason}")


async def test_a_refused_topic_is_reported_on_its_own_and_the_others_complete() -> None:
    fake = FakeAdmin(refuse={"bad": INVALID_REPLICATION_FACTOR, "old": TOPIC_ALREADY_EXISTS})
    fake.topics["old"] = 2
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    await adapter(fake).create(
        [create("good"), create("bad"), create("old")],
        lambda c: done.append(c.topic),
        lambda c, reason: failed.append((c.topic, reason)),
    )
    assert failed == [("bad", "the brokers cannot place 1 replica of each partition (no)")]
    assert sorted(done) == ["good", "old"]  # "already exists" is not a failure


async def test_a_topic_that_never_shows_fails_with_a_readable_reason() -> None:
    fake = FakeAdmin(lag=10**9)
    failed: list[tuple[str, str]] = []
    await adapter(fake, visible_within=0.2).create(
        [create("a")], lambda c: None, lambda c, reason: failed.append((c.topic, reason))
    )
    ((topic, reason),) = failed
    assert topic == "a"
    assert "did not appear in the metadata within 0.2 s" in reason


async def test_capabilities_are_the_api_keys_offered() -> None:
    caps = await adapter(FakeAdmin()).capabilities()
    assert caps.offers(Api.ALTER_CONFIGS)
    assert not caps.offers(Api.CREATE_PARTITIONS)


async def test_an_api_only_offered_in_versions_aiokafka_lacks_is_not_offered() -> None:
    """AlterConfigs only from v9 on: aiokafka speaks v0-v1, so it counts as absent."""
    caps = await adapter(FakeAdmin(api_versions=[(33, 9, 9), (37, 0, 3)])).capabilities()
    assert not caps.offers(Api.ALTER_CONFIGS)
    assert caps.offers(Api.CREATE_PARTITIONS)
