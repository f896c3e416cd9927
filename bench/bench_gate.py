"""The resource gate's hop: scheduled → assigned with the gate on, beside the gate off.

    python -m bench.bench_gate [--broker embedded|kafka] [--rate 20] [--seconds 5] [--json]

The mesh runs as real processes on a fresh broker (``bench.bench_task_path.running_mesh``: the
Workflow Manager, the Agent Manager, no-op agents and, with the gate on, the Resource
Allocator). One-task workflows are submitted at ``--rate`` per second for ``--seconds``, first
with the resource gate off, then on; each task's scheduled → assigned is taken from the broker
timestamps of its ``task.scheduled`` and ``task.assigned`` history records. With the gate off
that hop is the Agent Manager alone; with it on, the ready task also goes through the allocator
(``tasks.ready`` → ``ResourceRequested``/``ResourceAllocated`` on ``resources`` → the Agent
Manager), so the difference between the two rows is what the gate costs. One workflow before
the timed ones warms the mesh up (the first assignment waits for the agent to be seen live).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench._common import broker, console, percentiles, report
from bench.bench_task_path import _plan, running_mesh
from mesh.broker import FETCH_MAX_WAIT_MS
from mesh.client import PlanRequest, submit_plan
from mesh.events import Mapper
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs
from mesh.settings import Settings

_KINDS = ("task.scheduled", "task.assigned")


class Hops:
    """Follows ``workflow.events``: when each task was scheduled and first assigned."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        self.at: dict[str, dict[tuple[str, str], int]] = {kind: {} for kind in _KINDS}
        self.changed = asyncio.Event()

    async def follow(self, started: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            self.settings.topic("workflow.events"),
            **client_kwargs(self.settings),
            auto_offset_reset="latest",
            isolation_level="read_committed",
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5_000)
                started.set()  # the first fetch fixed the "latest" position
                for records in batch.values():
                    for record in records:
                        kind = dict(record.headers).get("mesh-type", b"").decode()
                        if kind in _KINDS:
                            event = self.mapper.decode(record.value, record.headers)
                            key = (event.workflow_id, event.task_id)  # type: ignore[attr-defined]
                            self.at[kind].setdefault(key, record.timestamp)
                self.changed.set()
        finally:
            await stop_clients(consumer)

    def latencies(self) -> list[float]:
        scheduled, assigned = self.at["task.scheduled"], self.at["task.assigned"]
        return [(at - scheduled[k]) / 1000 for k, at in assigned.items() if k in scheduled]


@contextlib.asynccontextmanager
async def hops(settings: Settings) -> AsyncIterator[Hops]:
    seen = Hops(settings)
    started = asyncio.Event()
    task = asyncio.create_task(seen.follow(started))
    try:
        async with asyncio.timeout(30):
            await started.wait()
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def paced_hop(settings: Settings, gate: bool, rate: float, seconds: float) -> dict[str, Any]:
    count = int(rate * seconds)
    async with running_mesh(settings, 1, gate) as mesh, hops(mesh.settings) as seen:
        # Warm up: the first assignment waits for the agent to be seen live (and the view to
        # catch up), which is start-up, not the hop.
        await submit_plan(mesh.settings, PlanRequest(_plan(1), None, None, ""))
        async with asyncio.timeout(120):
            while not seen.latencies():
                seen.changed.clear()
                await seen.changed.wait()
        seen.at = {kind: {} for kind in _KINDS}
        began = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
            await submit_plan(mesh.settings, PlanRequest(_plan(1), None, None, ""))
        async with asyncio.timeout(120):
            while len(seen.latencies()) < count:
                seen.changed.clear()
                await seen.changed.wait()
    return {"count": count, **percentiles(seen.latencies())}


async def main_async(args: argparse.Namespace) -> None:
    rows: list[list[Any]] = []
    with broker(args.broker) as servers:
        wait = FETCH_MAX_WAIT_MS if args.broker == "embedded" else 500
        settings = Settings(bootstrap_servers=servers, fetch_max_wait_ms=wait)
        for gate in (False, True):
            label = "gate on" if gate else "gate off"
            console.print(f"mesh, {label}, paced {args.rate:g}/s …")
            fig = await paced_hop(settings, gate, args.rate, args.seconds)
            rows.append(
                [label, fig["count"], f"{fig['p50'] * 1000:.1f}", f"{fig['p99'] * 1000:.1f}"]
            )
    report(
        f"scheduled → assigned on the {args.broker} broker",
        ["resource gate", "tasks", "p50 ms", "p99 ms"],
        rows,
        as_json=args.json,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=("embedded", "kafka"), default="embedded")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
