"""The task path as users feel it, beside a raw aiokafka pipeline of the same hops in the same run.

    python -m bench.bench_task_path [--broker embedded|kafka] [--workflows 8] [--tasks 400]
        [--agents 4] [--rate 200] [--seconds 10] [--gate] [--json]

The mesh runs as real processes on a fresh broker: the Workflow Manager, the Agent Manager, no-op
Python agents (and, with ``--gate``, the Resource Allocator with the resource gate on). Each run
uses its own topic prefix and consumer groups. Figures:

- **burst**: ``--workflows`` parallel workflows of ``--tasks`` no-op tasks published at once;
  tasks/s from the first plan to the last ``workflow.completed``, and p50/p99 of each task's
  scheduled → completion folded (broker timestamps of its ``task.scheduled`` and
  ``task.completed`` history records);
- **paced**: one-task workflows at ``--rate`` per second for ``--seconds``; p50/p99 of the same
  latency;
- **CPU**: milliseconds of CPU (user + system, from ``/proc``) per task for every mesh process
  during the burst, and their sum (the broker's own shown apart);
- **raw**: the same hops with plain aiokafka clients in one process, on the same broker, same
  client settings: plans → (fan out) ready → assigned → results → folded. Its burst throughput
  and paced latency are the baseline the mesh's figures are divided by.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from bench._common import ROOT, broker, console, percentiles, progress, report
from mesh.broker import FETCH_MAX_WAIT_MS
from mesh.client import PlanRequest, submit_plan
from mesh.events import ExecutionPlan, Mapper, TaskSpec
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs, consumer_kwargs, producer_kwargs
from mesh.settings import Settings
from mesh.supervisor import Child, Supervisor
from mesh.topics import apply_topics, load_topics

MESH = [sys.executable, "-m", "mesh"]
_TICK = os.sysconf("SC_CLK_TCK")
_READY = {"workflows ready", "agent manager ready", "agent ready", "resources ready"}


# -- the mesh --------------------------------------------------------------------------------


def _is_ready(_child: Child, entry: dict[str, Any]) -> bool:
    return entry.get("event") in _READY


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _plan(tasks: int) -> ExecutionPlan:
    return ExecutionPlan(
        plan_id="bench",
        workflow_type="parallel",
        tasks=[
            TaskSpec(task_id=f"t{i}", name=f"t{i}", capabilities=[{"name": "noop"}])  # type: ignore[list-item]
            for i in range(tasks)
        ],
    )


@dataclass
class Mesh:
    settings: Settings
    supervisor: Supervisor
    children: dict[str, Child] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        return {name: _cpu_seconds(child.pid) for name, child in self.children.items()}


@contextlib.asynccontextmanager
async def running_mesh(base: Settings, agents: int, gate: bool) -> AsyncIterator[Mesh]:
    """A fresh prefix, its topics, and the mesh's processes on it."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = base.model_copy(update={"topic_prefix": prefix, "resource_gate": gate})
    await apply_topics(settings, load_topics(ROOT / "topics", prefix=prefix).topics)
    supervisor = Supervisor(is_ready=_is_ready)
    mesh = Mesh(settings, supervisor)
    env = settings.to_env()
    try:
        if gate:
            mesh.children["resources"] = await supervisor.spawn(
                "resources", [*MESH, "run", "resources"], env=env
            )
        mesh.children["workflows"] = await supervisor.spawn(
            "workflows", [*MESH, "run", "workflows"], env=env
        )
        mesh.children["agent-manager"] = await supervisor.spawn(
            "agent-manager", [*MESH, "run", "agents", "--no-lifecycle"], env=env
        )
        for i in range(agents):
            mesh.children[f"agent-{i}"] = await supervisor.spawn(
                f"agent-{i}",
                [
                    *(*MESH, "agent", "run", "--kind", "python", "--module", "mesh.agents.demo"),
                    *("--id", f"{prefix}noop-{i}", "--max-concurrency", "64"),
                ],
                env=env,
            )
        missing = await supervisor.wait_ready(180)
        if missing:
            raise RuntimeError(f"not ready: {missing}")
        yield mesh
    finally:
        await supervisor.stop_all()


class History:
    """Follows ``workflow.events`` and times each task: scheduled → completion folded."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        self.scheduled: dict[tuple[str, str], int] = {}
        self.folded: dict[tuple[str, str], int] = {}
        self.ended: set[str] = set()
        self.changed = asyncio.Event()

    async def follow(self) -> None:
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
                for records in batch.values():
                    for record in records:
                        self._fold(record)
                self.changed.set()
        finally:
            await stop_clients(consumer)

    def _fold(self, record: Any) -> None:
        kind = dict(record.headers).get("mesh-type", b"").decode()
        if kind not in ("task.scheduled", "task.completed", "workflow.completed"):
            return
        event = self.mapper.decode(record.value, record.headers)
        wid = event.workflow_id  # type: ignore[attr-defined]
        if kind == "workflow.completed":
            self.ended.add(wid)
        elif kind == "task.scheduled":
            self.scheduled.setdefault((wid, event.task_id), record.timestamp)  # type: ignore[attr-defined]
        else:
            self.folded[(wid, event.task_id)] = record.timestamp  # type: ignore[attr-defined]

    def latencies(self) -> list[float]:
        return [
            (at - self.scheduled[key]) / 1000
            for key, at in self.folded.items()
            if key in self.scheduled
        ]

    async def until(self, done: Callable[[], bool], what: str, total: int, within: float) -> None:
        with progress() as bar:
            job = bar.add_task(what, total=total)
            async with asyncio.timeout(within):
                while not done():
                    self.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await self.changed.wait()
                    bar.update(job, completed=len(self.folded))


@contextlib.asynccontextmanager
async def history(settings: Settings) -> AsyncIterator[History]:
    seen = History(settings)
    task = asyncio.create_task(seen.follow())
    await asyncio.sleep(1.0)  # let the consumer take its "latest" position before anything is sent
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def mesh_burst(mesh: Mesh, workflows: int, tasks: int) -> dict[str, Any]:
    async with history(mesh.settings) as seen:
        cpu_before = mesh.cpu()
        began = time.perf_counter()
        ids = []
        for _ in range(workflows):
            submitted = await submit_plan(mesh.settings, PlanRequest(_plan(tasks), None, None, ""))
            ids.append(submitted.workflow_id)
        await seen.until(lambda: set(ids) <= seen.ended, "burst", workflows * tasks, within=900)
        seconds = time.perf_counter() - began
        cpu_after = mesh.cpu()
    total = workflows * tasks
    cpu_ms = {n: (cpu_after[n] - cpu_before[n]) * 1000 / total for n in cpu_before}
    return {
        "tasks_per_s": total / seconds,
        "seconds": seconds,
        "cpu_ms_per_task": cpu_ms,
        **percentiles(seen.latencies()),
    }


async def mesh_paced(mesh: Mesh, rate: float, seconds: float) -> dict[str, Any]:
    count = int(rate * seconds)
    async with history(mesh.settings) as seen:
        ids = []
        began = time.perf_counter()
        with progress() as bar:
            job = bar.add_task(f"paced {rate:g}/s", total=count)
            for i in range(count):
                await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
                submitted = await submit_plan(mesh.settings, PlanRequest(_plan(1), None, None, ""))
                ids.append(submitted.workflow_id)
                bar.update(job, advance=1)
        await seen.until(lambda: set(ids) <= seen.ended, "paced", count, within=300)
    return percentiles(seen.latencies())


# -- the raw pipeline ------------------------------------------------------------------------


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Sets ``ready`` once the group gave this consumer its partitions."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned:
            self.ready.set()


class Raw:
    """plans → ready (fan out) → assigned → results → folded, with plain aiokafka clients.

    Written as a careful raw pipeline would be: each hop has its own producer (as each of the
    mesh's hops is another process), sends a fetched batch without waiting per record, and
    commits the batch's offsets once its sends are acknowledged (at-least-once, what the mesh
    gives on the embedded broker). The clock starts only when every hop's consumer holds its
    partitions and positions: joining a group is start-up, not per-task cost.
    """

    HOPS = ("plans", "ready", "assigned", "results")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = f"raw-{uuid.uuid4().hex[:8]}."
        self.done: dict[bytes, float] = {}
        self.sent_ready: dict[bytes, int] = {}
        self.latencies: list[float] = []
        self.changed = asyncio.Event()
        self.joined: list[asyncio.Event] = []

    def topic(self, hop: str) -> str:
        return f"{self.prefix}{hop}"

    async def create(self) -> None:
        from bench._common import create_topic

        for hop in self.HOPS:
            await create_topic(self.settings, self.topic(hop))

    async def consumer(self, hop: str) -> AIOKafkaConsumer:
        """A started consumer of ``hop`` in its own group; ready once it holds its positions."""
        consumer = AIOKafkaConsumer(
            **consumer_kwargs(self.settings),
            group_id=f"{self.prefix}{hop}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        assigned = _Assigned()
        consumer.subscribe([self.topic(hop)], listener=assigned)
        await consumer.start()
        joined = asyncio.Event()
        self.joined.append(joined)

        async def join() -> None:
            # The group assigns on the first fetches; resolve every position before saying so.
            while not assigned.ready.is_set():
                batch = await consumer.getmany(timeout_ms=50)
                assert not batch, "nothing is sent before every hop has joined"
            for tp in consumer.assignment():
                await consumer.position(tp)
            joined.set()

        await join()
        return consumer

    async def relay(self, hop: str, out: str, fan: Callable[[Any], list[bytes]]) -> None:
        producer = AIOKafkaProducer(**producer_kwargs(self.settings))
        await producer.start()
        consumer = await self.consumer(hop)
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=1_000)
                if not batch:
                    continue
                futures = [
                    await producer.send(self.topic(out), record.value, key=key)
                    for records in batch.values()
                    for record in records
                    for key in fan(record)
                ]
                await asyncio.gather(*futures)
                await consumer.commit()
        finally:
            await stop_clients(consumer, producer)

    async def fold(self) -> None:
        consumer = await self.consumer("results")
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=1_000)
                if not batch:
                    continue
                for records in batch.values():
                    for record in records:
                        assert record.key is not None
                        self.done[record.key] = time.perf_counter()
                        sent = self.sent_ready.pop(record.key, None)
                        if sent is not None:
                            self.latencies.append((record.timestamp - sent) / 1000)
                await consumer.commit()
                self.changed.set()
        finally:
            await stop_clients(consumer)

    @contextlib.asynccontextmanager
    async def running(self, fan_out: int) -> AsyncIterator[AIOKafkaProducer]:
        producer = AIOKafkaProducer(**producer_kwargs(self.settings))
        await producer.start()

        def spread(record: Any) -> list[bytes]:
            keys = [record.key + f"/{i}".encode() for i in range(fan_out)]
            now = int(time.time() * 1000)
            for key in keys:
                self.sent_ready[key] = now
            return keys

        jobs = [
            asyncio.create_task(self.relay("plans", "ready", spread)),
            asyncio.create_task(self.relay("ready", "assigned", lambda r: [r.key])),
            asyncio.create_task(self.relay("assigned", "results", lambda r: [r.key])),
            asyncio.create_task(self.fold()),
        ]
        try:
            async with asyncio.timeout(60):
                while len(self.joined) < len(jobs) or not all(j.is_set() for j in self.joined):
                    done = [job for job in jobs if job.done()]
                    if done:
                        done[0].result()  # a hop that failed to start says why
                    await asyncio.sleep(0.05)
            yield producer
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
            await stop_clients(producer)

    async def until(self, count: int, within: float) -> None:
        async with asyncio.timeout(within):
            while len(self.done) < count:
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self.changed.wait()


async def raw_burst(settings: Settings, workflows: int, tasks: int) -> dict[str, float]:
    raw = Raw(settings)
    await raw.create()
    async with raw.running(fan_out=tasks) as producer:
        began = time.perf_counter()
        for i in range(workflows):
            await producer.send_and_wait(raw.topic("plans"), b"p" * 300, key=f"w{i}".encode())
        await raw.until(workflows * tasks, within=600)
        seconds = time.perf_counter() - began
    return {"tasks_per_s": workflows * tasks / seconds, **percentiles(raw.latencies)}


async def raw_paced(settings: Settings, rate: float, seconds: float) -> dict[str, float]:
    raw = Raw(settings)
    await raw.create()
    count = int(rate * seconds)
    async with raw.running(fan_out=1) as producer:
        began = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
            await producer.send(raw.topic("plans"), b"p" * 300, key=f"w{i}".encode())
        await raw.until(count, within=300)
    return percentiles(raw.latencies)


# -- the run ---------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    rows: list[list[Any]] = []
    with broker(args.broker) as servers:
        # The same client settings for the raw pipeline and the mesh: the embedded broker's
        # short fetch wait (see mesh.broker.FETCH_MAX_WAIT_MS) for both, or Kafka's defaults.
        wait = FETCH_MAX_WAIT_MS if args.broker == "embedded" else 500
        settings = Settings(bootstrap_servers=servers, fetch_max_wait_ms=wait)
        console.print("raw aiokafka pipeline, burst …")
        rb = await raw_burst(settings, args.workflows, args.tasks)
        console.print("raw aiokafka pipeline, paced …")
        rp = await raw_paced(settings, args.rate, args.seconds)
        rows.append(["raw burst", f"{rb['tasks_per_s']:,.0f} tasks/s", "", "", "1.00"])
        rows.append(
            ["raw paced", "", f"{rp['p50'] * 1000:.1f} ms", f"{rp['p99'] * 1000:.1f} ms", "1.00"]
        )
        gates = (False, True) if args.gate else (False,)
        for gate in gates:
            label = "gate on" if gate else "gate off"
            console.print(f"mesh, {label}, burst …")
            async with running_mesh(settings, args.agents, gate) as mesh:
                fig = await mesh_burst(mesh, args.workflows, args.tasks)
            console.print(f"mesh, {label}, paced …")
            async with running_mesh(settings, args.agents, gate) as mesh:
                paced = await mesh_paced(mesh, args.rate, args.seconds)
            cpu = fig["cpu_ms_per_task"]
            rows.append(
                [
                    f"mesh burst {args.workflows}×{args.tasks}, {args.agents} agents, {label}",
                    f"{fig['tasks_per_s']:,.0f} tasks/s",
                    f"{fig['p50'] * 1000:.0f} ms",
                    f"{fig['p99'] * 1000:.0f} ms",
                    f"{fig['tasks_per_s'] / rb['tasks_per_s']:.3f} of raw",
                ]
            )
            rows.append(
                [
                    f"mesh paced {args.rate:g}/s, {label}",
                    "",
                    f"{paced['p50'] * 1000:.0f} ms",
                    f"{paced['p99'] * 1000:.0f} ms",
                    f"p50 {paced['p50'] / rp['p50']:.1f}× raw, "
                    f"p99 {paced['p99'] / rp['p99']:.1f}× raw",
                ]
            )
            rows.append(
                [
                    f"CPU ms per task, {label}",
                    f"{sum(cpu.values()):.3f} ms summed",
                    "",
                    "",
                    ", ".join(f"{n} {v:.3f}" for n, v in sorted(cpu.items())),
                ]
            )
    report(
        f"task path on the {args.broker} broker",
        ["what", "throughput", "p50", "p99", "against raw"],
        rows,
        as_json=args.json,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("embedded", "kafka"), default="embedded")
    parser.add_argument("--workflows", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--gate", action="store_true", help="Also run with the resource gate on.")
    parser.add_argument("--json", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
