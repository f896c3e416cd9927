"""Partitions: of a just-created topic (metadata may lag), and of the key an agent id hashes to."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from mesh.kafka.partitions import topic_partitions
from mesh.settings import Settings


async def partitions_of(producer: AIOKafkaProducer, settings: Settings, name: str) -> list[int]:
    """The partition ids of the logical topic ``name``, in order; ``ConfigError`` if it is
    missing once the request timeout has passed (metadata may lag behind a topic created a
    moment ago)."""
    grace = settings.request_timeout_ms / 1000
    return await topic_partitions(producer, settings, settings.topic(name), grace=grace)


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
