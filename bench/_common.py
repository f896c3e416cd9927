"""Shared benchmark plumbing: brokers, a raw aiokafka baseline, timing, memory and reporting.

Every benchmark prints its figures beside a baseline measured in the same run on the same
machine (for Kafka paths: a raw aiokafka produce→consume on the same broker), so that the ratio
means something on a noisy 2-core machine. Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import statistics
import sys
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mesh.broker.embedded import EmbeddedBroker
from mesh.kafka.connection import client_kwargs
from mesh.settings import Settings

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
console = Console(stderr=True)


@dataclass(frozen=True)
class Measured:
    """Wall time and peak Python-heap memory of one call."""

    seconds: float
    peak_bytes: int
    value: Any = None


def measure(fn: Callable[[], T]) -> Measured:
    """Run ``fn`` once under tracemalloc; peak is what Python allocated during the call."""
    tracemalloc.start()
    began = time.perf_counter()
    try:
        value = fn()
    finally:
        seconds = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return Measured(seconds, peak, value)


def max_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50 and p99 of latency samples (seconds)."""
    if not samples:
        return {"p50": float("nan"), "p99": float("nan")}
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def progress() -> Progress:
    """A progress bar on stderr (benchmarks keep stdout for figures)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def report(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, as_json: bool
) -> None:
    """Print the figures: a table on stdout, or one JSON document with ``--json``."""
    if as_json:
        print(
            json.dumps({"title": title, "rows": [dict(zip(columns, r, strict=True)) for r in rows]})
        )
        return
    table = Table(title=title, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_fmt(cell) for cell in row))
    Console().print(table)


def _fmt(cell: Any) -> str:
    if isinstance(cell, float):
        return f"{cell:,.3f}" if cell < 100 else f"{cell:,.0f}"
    if isinstance(cell, int):
        return f"{cell:,}"
    return str(cell)


BROKER_PIDS: dict[str, int] = {}
"""Bootstrap servers → pid of the broker process :func:`broker` started (for its CPU)."""


@contextlib.contextmanager
def broker(kind: str) -> Iterator[str]:
    """Bootstrap servers of a fresh broker: ``embedded`` (Tansu) or ``kafka`` (Apache Kafka)."""
    if kind == "embedded":
        with EmbeddedBroker() as embedded:
            if embedded.pid is not None:
                BROKER_PIDS[embedded.bootstrap_servers] = embedded.pid
            yield embedded.bootstrap_servers
        return
    sys.path.insert(0, str(ROOT))
    from tooling.kafka.kafka_broker import ApacheKafka

    with ApacheKafka() as kafka:
        if kafka.pid is not None:
            BROKER_PIDS[kafka.bootstrap_servers] = kafka.pid
        yield kafka.bootstrap_servers


async def create_topic(settings: Settings, name: str, partitions: int = 6) -> None:
    """A plain topic for baselines (declared topics come from ``mesh topics apply``)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def aiokafka_baseline(settings: Settings, messages: int, size: int = 300) -> dict[str, float]:
    """Raw aiokafka on the same broker: produce ``messages`` records, then consume them.

    Returns messages per second for each direction and the produce→consume latency
    percentiles of a separate ping-pong of 200 single records.
    """
    topic = f"bench.baseline.{uuid.uuid4().hex[:8]}"
    await create_topic(settings, topic)
    payload = b"x" * size
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=5)
    consumer = AIOKafkaConsumer(
        topic, **client_kwargs(settings), group_id=f"g-{topic}", auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    try:
        began = time.perf_counter()
        futures = [
            await producer.send(topic, payload, key=str(i).encode()) for i in range(messages)
        ]
        await asyncio.gather(*futures)
        produce_s = time.perf_counter() - began
        began = time.perf_counter()
        seen = 0
        while seen < messages:
            batch = await consumer.getmany(timeout_ms=1000, max_records=1000)
            seen += sum(len(records) for records in batch.values())
        consume_s = time.perf_counter() - began
        latencies = []
        for i in range(200):
            sent = time.perf_counter()
            await producer.send_and_wait(topic, payload, key=f"lat{i}".encode())
            got = 0
            while not got:
                batch = await consumer.getmany(timeout_ms=1000)
                got = sum(len(records) for records in batch.values())
            latencies.append(time.perf_counter() - sent)
    finally:
        await consumer.stop()
        await producer.stop()
    return {
        "produce_per_s": messages / produce_s,
        "consume_per_s": messages / consume_s,
        **percentiles(latencies),
    }


class _Follows(Protocol):
    async def follow(self) -> None: ...


_F = TypeVar("_F", bound=_Follows)


@contextlib.asynccontextmanager
async def following(follower: _F) -> AsyncIterator[_F]:
    """``follower.follow()`` runs in the background for the block, and is cancelled after it."""
    task = asyncio.create_task(follower.follow())
    try:
        yield follower
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
