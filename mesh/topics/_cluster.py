"""What the cluster looks like, as plain data: the input of the planner, free of aiokafka.

Two brokers answer DescribeConfigs differently, and the planner must read both right:

- Apache Kafka reports every topic config, defaults included; ``config_source`` tells an override
  set on the topic (``DYNAMIC_TOPIC_CONFIG`` = 1) from a default.
- The embedded Tansu broker reports only the configs given when the topic was created (as
  ``DEFAULT_CONFIG`` = 5), and nothing at all for a topic created without any.

``ObservedTopic.overrides`` hides that difference: it is what was set on the topic, either way.

What the brokers would refuse is planned from here too: ``ClusterState.brokers`` (how many
brokers serve, so a replication factor above it is refused before apply) and the brokers'
default ``min.insync.replicas`` (a topic that does not set its own inherits it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from mesh.topics._configs import ALWAYS_REPORTED

DYNAMIC_TOPIC_CONFIG = 1
DEFAULT_CONFIG = 5


class Api(IntEnum):
    """Kafka admin API keys whose presence in ApiVersions decides what we may ask for."""

    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DESCRIBE_ACLS = 29
    CREATE_ACLS = 30
    DELETE_ACLS = 31
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    CREATE_PARTITIONS = 37
    INCREMENTAL_ALTER_CONFIGS = 44
    DESCRIBE_CLIENT_QUOTAS = 48
    ALTER_CLIENT_QUOTAS = 49

    @property
    def label(self) -> str:
        """The API's name as Kafka's protocol guide spells it (``AlterConfigs``)."""
        return self.name.title().replace("_", "")


@dataclass(frozen=True)
class BrokerCapabilities:
    """The admin APIs the broker offers (from its ApiVersions answer)."""

    apis: frozenset[int] = frozenset(Api)

    def offers(self, api: Api) -> bool:
        return int(api) in self.apis

    @property
    def validates(self) -> bool:
        """Whether mesh may ask the broker to check changes without making them
        (``validate_only``). Only a broker with the whole topic admin API is asked: the
        embedded Tansu broker (no AlterConfigs, no CreatePartitions) ignores the flag and
        creates the topic it was asked only to check."""
        return self.offers(Api.ALTER_CONFIGS) and self.offers(Api.CREATE_PARTITIONS)

    @classmethod
    def of(cls, apis: Iterable[int]) -> BrokerCapabilities:
        return cls(frozenset(int(api) for api in apis))


@dataclass(frozen=True)
class ObservedConfig:
    """One DescribeConfigs entry."""

    value: str | None
    source: int = DYNAMIC_TOPIC_CONFIG


@dataclass(frozen=True)
class ObservedTopic:
    """One live topic: its full name, partition count, replication factor and config entries."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, ObservedConfig] = field(default_factory=dict)
    internal: bool = False

    @property
    def configs_reported(self) -> bool:
        """False when the broker answered DescribeConfigs with no entries for this topic."""
        return bool(self.configs)

    @property
    def reports_defaults(self) -> bool:
        """True on Apache Kafka (every config reported); False on a broker like Tansu."""
        return self.configs.keys() >= ALWAYS_REPORTED

    def overrides(self) -> dict[str, str]:
        """Configs set on this topic rather than inherited, by key."""
        return {
            key: entry.value or ""
            for key, entry in sorted(self.configs.items())
            if entry.source == DYNAMIC_TOPIC_CONFIG or not self.reports_defaults
        }

    def value_of(self, key: str) -> str | None:
        """The value in force for ``key`` (whatever its source), None if not reported."""
        entry = self.configs.get(key)
        return entry.value if entry is not None else None


@dataclass(frozen=True)
class ClusterState:
    """The topics the cluster reported (by full name) and what its broker can do."""

    topics: Mapping[str, ObservedTopic] = field(default_factory=dict)
    capabilities: BrokerCapabilities = field(default_factory=BrokerCapabilities)
    brokers: int | None = None
    """How many brokers serve (None: not read)."""
    default_min_insync: int | None = None
    """The brokers' ``min.insync.replicas``, which a topic without its own inherits (None: the
    broker did not say)."""

    def under(self, prefix: str) -> list[ObservedTopic]:
        """Topics mesh owns: under the prefix, never internal ones (``__consumer_offsets``)."""
        return [
            topic
            for name, topic in sorted(self.topics.items())
            if name.startswith(prefix) and not topic.internal and not name.startswith("__")
        ]
