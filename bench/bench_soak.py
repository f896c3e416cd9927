"""Soak: the mesh at half its sustainable rate for minutes, and the memory of each process.

    python -m bench.bench_soak [--broker embedded|kafka] [--minutes 10] [--rate TASKS_PER_S]
        [--tasks 4] [--agents 2] [--no-gate] [--json]

The mesh runs as real processes (``bench.bench_task_path.running_mesh``: the Workflow Manager,
the Agent Manager, no-op Python agents and, unless ``--no-gate``, the Resource Allocator). The
sustainable rate is measured first with a burst on its own mesh (``--rate`` skips that); then
workflows of ``--tasks`` no-op tasks are published at half of it for ``--minutes``. Every minute
the RSS of each mesh process is printed with the workflows completed so far; at the end, the
growth of each process over the last five minutes (or the whole run if shorter), in MB per
minute. A process that keeps what it has finished grows by a fixed amount per workflow;
one that drops it levels off once its caches and pools are warm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench._common import broker, console, following, report
from bench.bench_task_path import Mesh, _plan, mesh_burst, running_mesh
from mesh.broker import FETCH_MAX_WAIT_MS
from mesh.client import new_workflow_id
from mesh.events import Mapper, PlanCreated, Producer, meta
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, producer_kwargs
from mesh.settings import Settings

_ME = Producer(component="client", instance="bench-soak")
_MB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident set size of a process now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Completed:
    """Counts ``workflow.completed`` records on the history (by their type header only)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = 0

    async def follow(self) -> None:
        consumer = AIOKafkaConsumer(
            self.settings.topic("workflow.events"),
            **client_kwargs(self.settings),
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=5_000)
                for records in batch.values():
                    for record in records:
                        if dict(record.headers).get("mesh-type") == b"workflow.completed":
                            self.count += 1
        finally:
            await stop_clients(consumer)


class Published:
    count = 0


async def publish_paced(
    settings: Settings, rate: float, tasks: int, stop: asyncio.Event, seen: Published
) -> int:
    """Publish workflows of ``tasks`` tasks so that ``rate`` tasks a second start, until
    ``stop``; how many were published (also counted in ``seen`` as it goes)."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    plan = _plan(tasks)
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    published = 0
    every = tasks / rate
    began = time.perf_counter()
    try:
        while not stop.is_set():
            workflow_id = new_workflow_id()
            created = PlanCreated(
                **meta(_ME, correlation_id=f"req-{workflow_id}"),
                workflow_id=workflow_id,
                request_id=f"req-{workflow_id}",
                plan=plan.model_copy(update={"plan_id": workflow_id}),
            )
            key, value, headers = mapper.encode(created)
            await producer.send(settings.topic("plans"), value, key=key, headers=headers)
            published += 1
            seen.count = published
            with contextlib.suppress(TimeoutError):
                delay = began + published * every - time.perf_counter()
                await asyncio.wait_for(stop.wait(), max(0.0, delay))
        await producer.flush()
    finally:
        await stop_clients(producer)
    return published


async def soak(mesh: Mesh, rate: float, tasks: int, minutes: int) -> list[dict[str, Any]]:
    """Run the paced load; one sample (RSS per process, workflows completed) per minute."""
    samples: list[dict[str, Any]] = []
    stop = asyncio.Event()
    sent = Published()
    async with following(Completed(mesh.settings)) as completed:
        publisher = asyncio.create_task(publish_paced(mesh.settings, rate, tasks, stop, sent))
        began = time.perf_counter()
        try:
            for minute in range(minutes + 1):
                await asyncio.sleep(max(0.0, began + 60 * minute - time.perf_counter()))
                if publisher.done():
                    publisher.result()  # raises what stopped it
                rss = {name: rss_bytes(child.pid) for name, child in mesh.children.items()}
                samples.append({"minute": minute, "completed": completed.count, "rss": rss})
                console.print(
                    f"minute {minute:>2}: {completed.count:>7,} workflows completed, "
                    f"{sent.count - completed.count:,} behind  "
                    + "  ".join(f"{name} {value / _MB:,.1f} MB" for name, value in rss.items())
                )
        finally:
            stop.set()
            published = await publisher
    console.print(f"published {published:,} workflows of {tasks} tasks")
    return samples


def growth(samples: list[dict[str, Any]], window: int = 5) -> tuple[int, dict[str, float]]:
    """MB per minute each process grew over the last ``window`` minutes (or all samples)."""
    last = samples[-1]
    first = samples[max(0, len(samples) - 1 - window)]
    minutes = last["minute"] - first["minute"]
    if minutes <= 0:
        return 0, {}
    return minutes, {
        name: (last["rss"][name] - first["rss"][name]) / _MB / minutes for name in last["rss"]
    }


async def main_async(args: argparse.Namespace) -> None:
    with broker(args.broker) as servers:
        wait = FETCH_MAX_WAIT_MS if args.broker == "embedded" else 500
        settings = Settings(bootstrap_servers=servers, fetch_max_wait_ms=wait)
        gate = not args.no_gate
        rate = args.rate
        rows: list[list[Any]] = []
        if rate is None:
            console.print("sustainable rate: a burst of 4 × 200 tasks …")
            async with running_mesh(settings, args.agents, gate) as mesh:
                burst = await mesh_burst(mesh, 4, 200)
            rate = burst["tasks_per_s"] / 2
            rows.append(["burst (sustainable)", f"{burst['tasks_per_s']:,.0f} tasks/s", ""])
        console.print(f"soak: {rate:,.0f} tasks/s for {args.minutes} min …")
        async with running_mesh(settings, args.agents, gate) as mesh:
            samples = await soak(mesh, rate, args.tasks, args.minutes)
    minutes, per_minute = growth(samples)
    done = samples[-1]["completed"]
    rows.append(["soak rate", f"{rate:,.0f} tasks/s", f"{done:,} workflows completed"])
    for name, value in per_minute.items():
        start = samples[0]["rss"][name] / _MB
        end = samples[-1]["rss"][name] / _MB
        rows.append(
            [
                f"RSS {name}",
                f"{start:,.1f} → {end:,.1f} MB",
                f"{value:+.2f} MB/min over the last {minutes} min",
            ]
        )
    report(
        f"soak on the {args.broker} broker, {args.minutes} min",
        ["what", "figure", "growth"],
        rows,
        as_json=args.json,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("embedded", "kafka"), default="embedded")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=None, help="Tasks/s (default: half a burst).")
    parser.add_argument("--tasks", type=int, default=4, help="Tasks per workflow.")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--no-gate", action="store_true", help="Without the Resource Allocator.")
    parser.add_argument("--json", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
