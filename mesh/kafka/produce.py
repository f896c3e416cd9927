"""Records to produce, and producing many without waiting per record.

An :class:`Outgoing` names a logical channel (``tasks.ready``), not a topic, so one component's
decisions are written the same under any topic prefix. :func:`send_all` queues records back to
back (aiokafka batches them per partition) and returns their futures to be awaited together:
one wait per round, not one per record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mesh.events import Encoded
from mesh.observe import metrics


@dataclass(frozen=True)
class Outgoing:
    """One record to produce, to a logical channel; ``partition`` None = by key."""

    channel: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None
    workflow_id: str | None = None
    """Set on history records, so their offsets can be mapped back to the workflow."""

    @classmethod
    def of(
        cls,
        channel: str,
        record: Encoded,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        workflow_id: str | None = None,
    ) -> Outgoing:
        """``record`` to ``channel``; keyed by ``key`` if given, else by its workflow id if
        given (a history record is keyed by its workflow whatever the event's own subject is:
        readers follow a workflow by key), else by the record's own key."""
        if key is None:
            key = workflow_id.encode() if workflow_id is not None else record.key
        return cls(channel, key, record.value, record.headers, partition, workflow_id)


async def send_all(
    producer: Any, topic_of: Callable[[str], str], records: Sequence[Outgoing]
) -> list[asyncio.Future[Any]]:
    """Queue ``records``; the futures resolve to their ``RecordMetadata``."""
    metrics.sent((r.channel for r in records), topic_of)
    return [
        await producer.send(
            topic_of(r.channel), r.value, key=r.key, headers=r.headers, partition=r.partition
        )
        for r in records
    ]


def retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's error as seen (one failure is reported; the rest need not be)."""
    if not future.cancelled():
        future.exception()


async def wait_all(futures: Sequence[asyncio.Future[Any]]) -> list[Any]:
    """Await every future; on a failure, the others' errors are marked seen."""
    try:
        return list(await asyncio.gather(*futures))
    except BaseException:
        for future in futures:
            future.add_done_callback(retrieve)
        raise


__all__ = ["Outgoing", "retrieve", "send_all", "wait_all"]
