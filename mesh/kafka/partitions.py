"""Which partitions a topic has, and which one a key lands on.

Readers that follow one workflow (``mesh submit --wait``, replay) or one agent's inbox assign
exactly the partition a key hashes to instead of scanning the whole topic; this only works if
they compute the partition exactly as producers do (the Java client's murmur2, as aiokafka's
default partitioner). Partition lists come from fresh metadata of the whole cluster, read by one
function, so "the broker was slow to answer" is never mistaken for "the topic does not exist".
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from mesh.errors import ConfigError
from mesh.kafka.connection import kafka_errors, not_allowed
from mesh.settings import Settings

_ATTEMPTS = 3  # a metadata request that times out on a loaded broker is asked again
_RETRY_SECONDS = 0.25


def partition_for(key: str | bytes, partitions: int | Iterable[int]) -> int:
    """The partition the default partitioner picks for ``key``: among ``partitions`` numbered
    ``0 … partitions-1``, or among the given partition ids (in id order, as Kafka numbers them)."""
    data = key.encode() if isinstance(key, str) else key
    ordered = range(partitions) if isinstance(partitions, int) else sorted(partitions)
    if not ordered:
        raise ValueError("the topic has no partitions")
    return ordered[_hash(data) % len(ordered)]


@functools.lru_cache(maxsize=65_536)
def _hash(data: bytes) -> int:
    """murmur2 as the Java client computes it; aiokafka's is pure Python, and the same keys
    (workflow ids, agent ids) come back with every record."""
    return int(murmur2(data) & 0x7FFFFFFF)


def client_of(client: Any) -> Any:
    """The ``AIOKafkaClient`` inside a producer or consumer (or the client itself)."""
    inner = getattr(client, "_client", None) or getattr(client, "client", None)
    return inner if inner is not None else client


async def cluster_metadata(client: Any, settings: Settings) -> Any:
    """Fresh metadata of the whole cluster from ``client`` (a producer, consumer or their
    ``AIOKafkaClient``); asked again on failure, then a ``BrokerError``.

    Asking for every topic, never one by name, matters: a metadata request naming a missing
    topic makes some brokers (the embedded Tansu) create it with default settings, behind
    ``mesh topics apply``'s back.
    """
    kafka = client_of(client)
    for _ in range(_ATTEMPTS - 1):
        try:
            return await kafka.fetch_all_metadata()
        except KafkaError:
            await asyncio.sleep(_RETRY_SECONDS)
    with kafka_errors(settings, "read the cluster's metadata"):
        return await kafka.fetch_all_metadata()


async def partitions_of(client: Any, settings: Settings, channel: str) -> list[int]:
    """The partition ids of the logical topic ``channel``, in order; ``ConfigError`` if it is
    missing once the request timeout has passed (metadata may lag behind a topic created a
    moment ago)."""
    grace = settings.request_timeout_ms / 1000
    return await topic_partitions(client, settings, settings.topic(channel), grace=grace)


async def topic_partitions(
    client: Any, settings: Settings, topic: str, *, grace: float = 0.0
) -> list[int]:
    """The partition ids of ``topic`` (a full name), in order; ``ConfigError`` if it does not
    exist, once ``grace`` seconds have passed (metadata may lag behind a topic created a moment
    ago)."""
    deadline = time.monotonic() + grace
    while True:
        found = (await cluster_metadata(client, settings)).partitions_for_topic(topic)
        if found:
            return sorted(found)
        if time.monotonic() >= deadline:
            raise ConfigError(f"topic {topic} does not exist{or_hidden(settings, [topic])}")
        await asyncio.sleep(_RETRY_SECONDS)


def or_hidden(settings: Settings, topics: list[str]) -> str:
    """The rest of "topic X does not exist" (or "topics missing: …") for ``topics`` (full
    names): metadata leaves out the topics a principal may not DESCRIBE, so on a cluster that
    authenticates clients it may be an ACL that is missing (the first topic's is named)."""
    it = "it" if len(topics) == 1 else "them"
    if settings.security_protocol == "PLAINTEXT":
        return f"; create {it} with 'mesh topics apply'"
    return (
        f", or {not_allowed(settings, 'DESCRIBE', 'topic', topics[0])} (the metadata leaves out "
        f"the topics a principal may not describe); else create {it} with 'mesh topics apply'"
    )


__all__ = [
    "client_of",
    "cluster_metadata",
    "or_hidden",
    "partition_for",
    "partitions_of",
    "topic_partitions",
]
