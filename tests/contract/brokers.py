"""The two brokers a contract runs on, and what each of them can do.

A contract case asks ``self.broker`` for a capability instead of knowing which broker it runs on;
the flags are the gaps of the embedded broker that the README lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from mesh.broker.embedded import EmbeddedBroker
from mesh.settings import Settings
from tooling.kafka.kafka_broker import ApacheKafka


@dataclass(frozen=True)
class Broker:
    """What a broker offers that changes what a case may expect."""

    name: str
    transactional: bool
    """Transactions: exactly-once for read_committed readers, fenced zombies."""
    exact_offsets: bool
    """ListOffsets answers the true end of a partition (Tansu's may stop short)."""
    time_lookup: bool
    """Offsets by timestamp (``--from-time``, ``groups reset --to-time``)."""
    alter_configs: bool
    """AlterConfigs: a changed topic config can be applied."""
    create_partitions: bool
    """CreatePartitions: a topic can grow."""


EMBEDDED = Broker(
    name="embedded",
    transactional=False,
    exact_offsets=False,
    time_lookup=False,
    alter_configs=False,
    create_partitions=False,
)
KAFKA = Broker(
    name="kafka",
    transactional=True,
    exact_offsets=True,
    time_lookup=True,
    alter_configs=True,
    create_partitions=True,
)


class Contract:
    """Base of every component's contract: the broker its tier binds, and its settings."""

    broker: ClassVar[Broker]

    @pytest.fixture
    def settings(self, broker_settings: Settings) -> Settings:
        """The broker's settings under a fresh prefix (a contract may add its topics)."""
        return broker_settings


class OnEmbedded:
    """Binds a contract to the embedded Tansu broker (started once per session)."""

    broker: ClassVar[Broker] = EMBEDDED

    @pytest.fixture
    def broker_settings(self, embedded_settings: Settings) -> Settings:
        """Settings for the embedded broker under a fresh topic prefix."""
        return embedded_settings

    @pytest.fixture(scope="class")
    @classmethod
    def bootstrap_servers(cls, embedded_broker: EmbeddedBroker) -> str:
        """For fixtures that outlive one test (and pick their own prefix)."""
        return embedded_broker.bootstrap_servers


class OnKafka:
    """Binds a contract to the real Apache Kafka broker (started once per session)."""

    broker: ClassVar[Broker] = KAFKA

    @pytest.fixture
    def broker_settings(self, kafka_settings: Settings) -> Settings:
        """Settings for Apache Kafka's PLAINTEXT listener under a fresh topic prefix."""
        return kafka_settings

    @pytest.fixture(scope="class")
    @classmethod
    def bootstrap_servers(cls, real_kafka: ApacheKafka) -> str:
        """For fixtures that outlive one test (and pick their own prefix)."""
        return real_kafka.bootstrap_servers
