"""The aiokafka side of topics as code: read the cluster, then create, alter, grow and delete.

What the broker can do is read from its ApiVersions answer, not guessed from errors: the
embedded Tansu broker offers no AlterConfigs and no CreatePartitions, and aiokafka would only
fail with "cannot be used if the API version is unknown" once asked.

Configs are changed with the non-incremental AlterConfigs API on purpose: it replaces every
override of the topic with the set sent, so the declared set becomes the whole truth and an
override set by hand disappears, which is what topics as code means.

Every change waits until the metadata shows it (a created topic with a leader for each partition,
the new partition count, a deleted topic gone), so a ``check`` right after ``apply`` is stable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code
from aiokafka.protocol.admin import (
    AlterConfigsRequest,
    ApiVersionRequest,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    DescribeConfigsRequest,
)

from mesh.errors import BrokerError
from mesh.kafka.connection import kafka_errors
from mesh.settings import Settings
from mesh.topics._cluster import (
    DEFAULT_CONFIG,
    DYNAMIC_TOPIC_CONFIG,
    Api,
    BrokerCapabilities,
    ClusterState,
    ObservedConfig,
    ObservedTopic,
)
from mesh.topics._plan import Change

_OK = 0
_UNKNOWN_TOPIC = 3
_TOPIC_EXISTS = 36
_REQUESTS: dict[Api, Any] = {
    Api.CREATE_TOPICS: CreateTopicsRequest,
    Api.DELETE_TOPICS: DeleteTopicsRequest,
    Api.DESCRIBE_CONFIGS: DescribeConfigsRequest,
    Api.ALTER_CONFIGS: AlterConfigsRequest,
    Api.CREATE_PARTITIONS: CreatePartitionsRequest,
}


@dataclass(frozen=True)
class _Metadata:
    partitions: int
    replication_factor: int
    internal: bool
    led: bool
    """Every partition has a leader (a fresh topic is usable only then)."""


class TopicAdmin:
    """Topic operations over one started ``AIOKafkaAdminClient``."""

    def __init__(
        self, admin: AIOKafkaAdminClient, settings: Settings, *, visible_within: float = 30.0
    ) -> None:
        self._admin = admin
        self._settings = settings
        self._visible_within = visible_within

    async def capabilities(self) -> BrokerCapabilities:
        """The admin APIs this broker offers in a version aiokafka can speak."""
        with kafka_errors(self._settings, "ask the broker for its API versions"):
            # aiokafka keeps the versions it negotiated private; asking again is one round trip.
            response = await self._admin._send_request(ApiVersionRequest())
        offered = {int(key): (int(low), int(high)) for key, low, high in response.api_versions}
        return BrokerCapabilities.of(
            key for key, (low, high) in offered.items() if _speakable(key, low, high)
        )

    async def read_cluster(self, prefix: str) -> ClusterState:
        """Partitions and replication factor of every topic; configs of those under ``prefix``."""
        capabilities = await self.capabilities()
        metadata = await self._metadata()
        owned = [n for n, m in metadata.items() if n.startswith(prefix) and not m.internal]
        configs: dict[str, dict[str, ObservedConfig]] = {}
        if owned and capabilities.offers(Api.DESCRIBE_CONFIGS):
            configs = await self._describe_configs(owned)
        topics = {
            name: ObservedTopic(
                name, m.partitions, m.replication_factor, configs.get(name, {}), m.internal
            )
            for name, m in metadata.items()
        }
        return ClusterState(topics, capabilities)

    async def create(self, changes: Sequence[Change], done: Callable[[Change], None]) -> None:
        """Create topics with their configs; each is done once it has a leader everywhere."""
        topics = [
            NewTopic(c.topic, c.new, c.replication_factor, topic_configs=dict(c.config))
            for c in changes
        ]
        with kafka_errors(self._settings, "create topics"):
            response = await self._admin.create_topics(topics)
        # Another apply (a second replica, the compose init job) may have created it meanwhile.
        failed = _refused(response.topic_errors, tolerated={_TOPIC_EXISTS})
        await self._wait(
            [c for c in changes if c.topic not in failed],
            lambda c, meta: c.topic in meta and meta[c.topic].led and meta[c.topic].partitions > 0,
            done,
            "appear",
        )
        _raise_refused("create", failed)

    async def alter_configs(
        self, changes: Sequence[Change], done: Callable[[Change], None]
    ) -> None:
        """Replace each topic's overrides with its declared set (non-incremental AlterConfigs)."""
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, c.topic, dict(c.config)) for c in changes
        ]
        with kafka_errors(self._settings, "alter topic configs"):
            responses = await self._admin.alter_configs(resources)
        failed = _refused(
            (name, code, message)
            for response in responses
            for code, message, _type, name in response.resources
        )
        for change in changes:
            if change.topic not in failed:
                done(change)
        _raise_refused("alter configs of", failed)

    async def add_partitions(
        self, changes: Sequence[Change], done: Callable[[Change], None]
    ) -> None:
        """Grow partition counts; each is done once the metadata shows the new count."""
        counts = {c.topic: NewPartitions(c.new) for c in changes}
        with kafka_errors(self._settings, "add partitions"):
            await self._admin.create_partitions(counts)
        await self._wait(
            changes,
            lambda c, meta: c.topic in meta and meta[c.topic].partitions == c.new,
            done,
            "show the new partition count",
        )

    async def delete(self, changes: Sequence[Change], done: Callable[[Change], None]) -> None:
        """Delete topics; each is done once it is gone from the metadata."""
        with kafka_errors(self._settings, "delete topics"):
            response = await self._admin.delete_topics([c.topic for c in changes])
        failed = _refused(
            ((topic, code, None) for topic, code in response.topic_error_codes),
            tolerated={_UNKNOWN_TOPIC},  # already gone is what we wanted
        )
        remaining = [c for c in changes if c.topic not in failed]
        await self._wait(remaining, lambda c, meta: c.topic not in meta, done, "disappear")
        _raise_refused("delete", failed)

    async def _metadata(self) -> dict[str, _Metadata]:
        # All topics in one request: asking for named topics may auto-create them (Tansu does).
        with kafka_errors(self._settings, "read topic metadata"):
            topics = await self._admin.describe_topics()
        found: dict[str, _Metadata] = {}
        for topic in topics:
            partitions = topic["partitions"] or []
            found[str(topic["topic"])] = _Metadata(
                partitions=len(partitions),
                replication_factor=max((len(p["replicas"]) for p in partitions), default=0),
                internal=bool(topic["is_internal"]),
                led=all(p["leader"] >= 0 for p in partitions),
            )
        return found

    async def _describe_configs(self, names: Iterable[str]) -> dict[str, dict[str, ObservedConfig]]:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        with kafka_errors(self._settings, "describe topic configs"):
            responses = await self._admin.describe_configs(resources)
        found: dict[str, dict[str, ObservedConfig]] = {}
        for response in responses:
            for resource in response.to_object()["resources"]:
                code = resource["error_code"]
                if code == _UNKNOWN_TOPIC:  # deleted since the metadata was read
                    continue
                if code != _OK:
                    name = resource["resource_name"]
                    _raise_refused(
                        "describe configs of", {name: resource["error_message"] or _text(code)}
                    )
                found[resource["resource_name"]] = {
                    entry["config_names"]: ObservedConfig(entry["config_value"], _source(entry))
                    for entry in resource["config_entries"]
                }
        return found

    async def _wait(
        self,
        changes: Sequence[Change],
        reached: Callable[[Change, dict[str, _Metadata]], bool],
        done: Callable[[Change], None],
        what: str,
    ) -> None:
        """Poll the metadata until every change is visible, reporting each as it shows."""
        pending = list(changes)
        if not pending:
            return
        deadline = time.monotonic() + self._visible_within
        pause = 0.05
        while True:
            meta = await self._metadata()
            for change in [c for c in pending if reached(c, meta)]:
                pending.remove(change)
                done(change)
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(c.topic for c in pending)
                raise BrokerError(
                    f"the broker accepted the request but {names} did not {what} in the "
                    f"metadata within {self._visible_within:g} s; 'mesh topics check' shows "
                    "the state"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)


def _speakable(key: int, low: int, high: int) -> bool:
    """Whether aiokafka implements a version of ``key`` inside the broker's range."""
    request = _REQUESTS.get(Api(key)) if key in Api._value2member_map_ else None
    versions = [cls.API_VERSION for cls in getattr(request, "_CLASSES", ())]
    return not versions or any(low <= version <= high for version in versions)


def _source(entry: dict[str, Any]) -> int:
    if "config_source" in entry:
        return int(entry["config_source"])
    return DEFAULT_CONFIG if entry.get("is_default") else DYNAMIC_TOPIC_CONFIG  # v0 answers


def _refused(
    answers: Iterable[tuple[str, int, str | None]],
    tolerated: frozenset[int] | set[int] = frozenset(),
) -> dict[str, str]:
    """The topics the broker refused, with its own words for why."""
    return {
        topic: message or _text(code)
        for topic, code, message in answers
        if code not in (_OK, *tolerated)
    }


def _raise_refused(action: str, failed: dict[str, str]) -> None:
    """One ``BrokerError`` naming every refused topic (after the others were seen through)."""
    if failed:
        reasons = "; ".join(f"{topic}: {why}" for topic, why in failed.items())
        raise BrokerError(f"the broker refused to {action} {reasons}")


def _text(code: int) -> str:
    error = for_code(code)
    return str(getattr(error, "description", "") or error.__name__)
