"""Which partition a key lands on: the Java client's murmur2, as aiokafka's default partitioner.

Readers that follow one workflow (``mesh submit --wait``, replay) or one agent's inbox assign
exactly that partition instead of scanning the whole topic; this only works if they compute the
partition exactly as producers do.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition the default partitioner picks for ``key`` among ``partitions``."""
    data = key.encode() if isinstance(key, str) else key
    return int(murmur2(data) & 0x7FFFFFFF) % partitions
