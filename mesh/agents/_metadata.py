"""Partitions: of a just-created topic (metadata may lag), and of the key an agent id hashes to."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner

from mesh.errors import ConfigError
from mesh.kafka.connection import kafka_errors
from mesh.settings import Settings

_RETRY_SECONDS = 0.2


async def partitions_of(producer: AIOKafkaProducer, settings: Settings, name: str) -> list[int]:
    """The partition ids of the logical topic ``name``, in order; ``ConfigError`` if it is missing.

    The topic is first looked for in the cluster's topic list, because asking for one topic's
    metadata makes some brokers (the embedded Tansu) create it with default settings, behind
    ``mesh topics apply``'s back. Both lookups are retried for a while: metadata may lag behind
    a topic created a moment ago.
    """
    topic = settings.topic(name)
    deadline = time.monotonic() + settings.request_timeout_ms / 1000
    with kafka_errors(settings, f"read the partitions of {topic}"):
        while topic not in (await producer.client.fetch_all_metadata()).topics():
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"topic {topic} does not exist; create it with 'mesh topics apply'"
                )
            await asyncio.sleep(_RETRY_SECONDS)
        try:
            partitions = await producer.partitions_for(topic)
        except UnknownTopicOrPartitionError:
            raise ConfigError(
                f"topic {topic} does not exist; create it with 'mesh topics apply'"
            ) from None
    return sorted(partitions)


def partition_for(agent_id: str, partitions: Iterable[int]) -> int:
    """The ``tasks.assigned`` partition a record keyed by ``agent_id`` lands in.

    The same ``DefaultPartitioner`` (murmur2, as the Java client) the producers use, over the
    partitions in id order, as Kafka numbers them.
    """
    ordered = sorted(partitions)
    if not ordered:
        raise ValueError("the topic has no partitions")
    result: int = DefaultPartitioner()(agent_id.encode(), ordered, ordered)
    return result


__all__ = ["partition_for", "partitions_of"]
