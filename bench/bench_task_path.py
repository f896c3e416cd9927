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
import itertools
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from bench._common import BROKER_PIDS, ROOT, broker, console, percentiles, progress, report
from mesh.broker import FETCH_MAX_WAIT_MS
from mesh.client import Client, new_workflow_id
from mesh.events import ExecutionPlan, Mapper, PlanCreated, Producer, TaskSpec, meta
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


_BENCH = Producer(component="bench", instance=f"bench-{os.getpid()}")


async def _start(client: Client, tasks: int) -> str:
    """Publish a plan of ``tasks`` no-op tasks as a client does, on the bench's one connection
    (``Client.start_workflow`` also opens a history cursor per workflow, which is the
    caller's cost, not the task path's)."""
    workflow_id = new_workflow_id()
    request_id = f"req-{workflow_id}"
    await client.publish(
        PlanCreated(
            **meta(_BENCH, correlation_id=request_id),
            workflow_id=workflow_id,
            request_id=request_id,
            plan=_plan(tasks),
        ),
        "plans",
    )
    return workflow_id


@dataclass
class Mesh:
    settings: Settings
    supervisor: Supervisor
    children: dict[str, Child] = field(default_factory=dict)

    def cpu(self) -> dict[str, float]:
        return {name: _cpu_seconds(child.pid) for name, child in self.children.items()}

    def broker_cpu(self) -> float | None:
        """CPU seconds of the broker process so far (None: not a process this run started)."""
        pid = BROKER_PIDS.get(self.settings.bootstrap_servers)
        return _cpu_seconds(pid) if pid is not None else None


@contextlib.asynccontextmanager
async def running_mesh(
    base: Settings,
    agents: int,
    gate: bool,
    log_dir: Path | None = None,
    profile_dir: Path | None = None,
) -> AsyncIterator[Mesh]:
    """A fresh prefix, its topics, and the mesh's processes on it (their log lines in
    ``log_dir``/<prefix><process>.log, and each one's cProfile in
    ``profile_dir``/<prefix><process>.prof, when given)."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    settings = base.model_copy(update={"topic_prefix": prefix, "resource_gate": gate})
    await apply_topics(settings, load_topics(ROOT / "topics", prefix=prefix).topics)
    files: dict[str, Any] = {}

    def keep(child: Child, entry: dict[str, Any] | str) -> None:
        assert log_dir is not None
        if child.name not in files:
            files[child.name] = (log_dir / f"{prefix}{child.name}.log").open("a")
        line = entry if isinstance(entry, str) else json.dumps(entry)
        files[child.name].write(line + "\n")

    supervisor = Supervisor(is_ready=_is_ready, on_log=keep if log_dir is not None else None)
    mesh = Mesh(settings, supervisor)
    env = settings.to_env()

    def mesh_argv(name: str) -> list[str]:
        if profile_dir is None:
            return MESH
        out = profile_dir / f"{prefix}{name}.prof"
        return [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "mesh"]

    try:
        if gate:
            mesh.children["resources"] = await supervisor.spawn(
                "resources", [*mesh_argv("resources"), "run", "resources"], env=env
            )
        mesh.children["workflows"] = await supervisor.spawn(
            "workflows", [*mesh_argv("workflows"), "run", "workflows"], env=env
        )
        mesh.children["agent-manager"] = await supervisor.spawn(
            "agent-manager",
            [*mesh_argv("agent-manager"), "run", "agents", "--no-lifecycle"],
            env=env,
        )
        for i in range(agents):
            mesh.children[f"agent-{i}"] = await supervisor.spawn(
                f"agent-{i}",
                [
                    *mesh_argv(f"agent-{i}"),
                    *("agent", "run", "--kind", "python", "--module", "mesh.agents.demo"),
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
        for file in files.values():
            file.close()


_STAGES = {
    # (channel, mesh-type) -> the stage a task reaches when that record is written
    ("workflow.events", "task.scheduled"): "scheduled",
    ("tasks.ready", "task.ready"): "ready",
    ("tasks.assigned", "task.assigned"): "assigned",
    ("tasks.results", "task.started"): "started",
    ("tasks.results", "task.completed"): "completed",
    ("workflow.events", "task.completed"): "folded",
}
STAGES = ("scheduled", "ready", "assigned", "started", "completed", "folded")


class History:
    """Follows the task path's topics and times each task at every hop (broker timestamps of
    the records each hop wrote): scheduled → ready → assigned → started → completed → folded."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        self.at: dict[str, dict[tuple[str, str], int]] = {stage: {} for stage in STAGES}
        self.scheduled = self.at["scheduled"]
        self.folded = self.at["folded"]
        self.ended: set[str] = set()
        self.changed = asyncio.Event()
        self.joined = asyncio.Event()
        self._channels = {settings.topic(c): c for c in {c for c, _ in _STAGES}}

    async def follow(self) -> None:
        consumer = AIOKafkaConsumer(
            **client_kwargs(self.settings),
            auto_offset_reset="latest",
            isolation_level="read_committed",
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            tps = [
                TopicPartition(topic, p)
                for topic in self._channels
                for p in consumer.partitions_for_topic(topic) or ()
            ]
            consumer.assign(tps)
            for tp in tps:  # take the "latest" position before anything is sent
                await consumer.position(tp)
            self.joined.set()
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5_000)
                for tp, records in batch.items():
                    channel = self._channels[tp.topic]
                    for record in records:
                        self._fold(channel, record)
                self.changed.set()
        finally:
            await stop_clients(consumer)

    def _fold(self, channel: str, record: Any) -> None:
        kind = dict(record.headers).get("mesh-type", b"").decode()
        stage = _STAGES.get((channel, kind))
        if stage is None and kind != "workflow.completed":
            return
        event = self.mapper.decode(record.value, record.headers)
        wid = event.workflow_id  # type: ignore[attr-defined]
        if stage is None:
            self.ended.add(wid)
        else:
            # The first attempt's records: a task here runs once.
            self.at[stage].setdefault((wid, event.task_id), record.timestamp)  # type: ignore[attr-defined]

    def latencies(self) -> list[float]:
        return [
            (at - self.scheduled[key]) / 1000
            for key, at in self.folded.items()
            if key in self.scheduled
        ]

    def hops(self) -> dict[str, dict[str, float]]:
        """p50/p99 of each hop (previous stage → this one) over the tasks seen at both."""
        out = {}
        for before, after in itertools.pairwise(STAGES):
            gaps = [
                (at - self.at[before][key]) / 1000
                for key, at in self.at[after].items()
                if key in self.at[before]
            ]
            out[f"{before}→{after}"] = percentiles(gaps)
        return out

    def trace(self) -> list[dict[str, Any]]:
        """Every task's stages (broker timestamps, ms), for ``--trace``."""
        return [
            {"task": list(key), **{s: self.at[s].get(key) for s in STAGES}}
            for key in self.scheduled
        ]

    def slowest(self, count: int) -> list[tuple[tuple[str, str], list[int | None]]]:
        """The ``count`` slowest tasks: each stage's time in ms after scheduled (None: unseen)."""
        ranked = sorted(
            (key for key in self.folded if key in self.scheduled),
            key=lambda k: self.folded[k] - self.scheduled[k],
            reverse=True,
        )[:count]
        return [
            (
                key,
                [
                    self.at[s][key] - self.scheduled[key] if key in self.at[s] else None
                    for s in STAGES
                ],
            )
            for key in ranked
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
    joined = asyncio.create_task(seen.joined.wait())
    try:
        async with asyncio.timeout(60):
            await asyncio.wait([task, joined], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # it failed to start: say why
        yield seen
    finally:
        task.cancel()
        joined.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def mesh_burst(mesh: Mesh, workflows: int, tasks: int) -> dict[str, Any]:
    async with history(mesh.settings) as seen, Client(mesh.settings) as client:
        cpu_before, broker_before = mesh.cpu(), mesh.broker_cpu()
        began = time.perf_counter()
        ids = [await _start(client, tasks) for _ in range(workflows)]
        await seen.until(lambda: set(ids) <= seen.ended, "burst", workflows * tasks, within=900)
        seconds = time.perf_counter() - began
        cpu_after, broker_after = mesh.cpu(), mesh.broker_cpu()
    total = workflows * tasks
    cpu_ms = {n: (cpu_after[n] - cpu_before[n]) * 1000 / total for n in cpu_before}
    broker_ms = (
        (broker_after - broker_before) * 1000 / total
        if broker_before is not None and broker_after is not None
        else None
    )
    return {
        "tasks_per_s": total / seconds,
        "seconds": seconds,
        "cpu_ms_per_task": cpu_ms,
        "broker_cpu_ms_per_task": broker_ms,
        **percentiles(seen.latencies()),
        "hops": seen.hops(),
        "slowest": seen.slowest(5),
        "trace": seen.trace(),
    }


async def mesh_paced(mesh: Mesh, rate: float, seconds: float) -> dict[str, Any]:
    count = int(rate * seconds)
    async with history(mesh.settings) as seen, Client(mesh.settings) as client:
        began = time.perf_counter()
        sends = []
        with progress() as bar:
            job = bar.add_task(f"paced {rate:g}/s", total=count)
            for i in range(count):
                await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
                # Not awaited one by one: a send waiting for its acknowledgement would hold
                # back the next plan, and the rate would be the client's, not ``rate``.
                sends.append(asyncio.create_task(_start(client, 1)))
                bar.update(job, advance=1)
            ids = await asyncio.gather(*sends)
        sent_in = time.perf_counter() - began
        await seen.until(lambda: set(ids) <= seen.ended, "paced", count, within=300)
    return {
        **percentiles(seen.latencies()),
        "rate": count / sent_in,
        "hops": seen.hops(),
        "slowest": seen.slowest(5),
        "trace": seen.trace(),
    }


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


async def raw_burst(settings: Settings, workflows: int, tasks: int) -> dict[str, Any]:
    raw = Raw(settings)
    await raw.create()
    async with raw.running(fan_out=tasks) as producer:
        began = time.perf_counter()
        for i in range(workflows):
            await producer.send_and_wait(raw.topic("plans"), b"p" * 300, key=f"w{i}".encode())
        await raw.until(workflows * tasks, within=600)
        seconds = time.perf_counter() - began
    return {"tasks_per_s": workflows * tasks / seconds, **percentiles(raw.latencies)}


async def raw_paced(settings: Settings, rate: float, seconds: float) -> dict[str, Any]:
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


def _ms(at: int | None) -> str:
    return "—" if at is None else f"{at} ms"


async def main_async(args: argparse.Namespace) -> None:
    rows: list[list[Any]] = []
    hops: list[list[Any]] = []
    slow: list[list[Any]] = []
    burst, paced = args.only in (None, "burst"), args.only in (None, "paced")
    with broker(args.broker) as servers:
        # The same client settings for the raw pipeline and the mesh: the embedded broker's
        # short fetch wait (see mesh.broker.FETCH_MAX_WAIT_MS) for both, or Kafka's defaults.
        wait = FETCH_MAX_WAIT_MS if args.broker == "embedded" else 500
        settings = Settings(bootstrap_servers=servers, fetch_max_wait_ms=wait)
        if burst:
            console.print("raw aiokafka pipeline, burst …")
            rb = await raw_burst(settings, args.workflows, args.tasks)
            rows.append(["raw burst", f"{rb['tasks_per_s']:,.0f} tasks/s", "", "", "1.00"])
        if paced:
            console.print("raw aiokafka pipeline, paced …")
            rp = await raw_paced(settings, args.rate, args.seconds)
            rows.append(
                [
                    "raw paced",
                    "",
                    f"{rp['p50'] * 1000:.1f} ms",
                    f"{rp['p99'] * 1000:.1f} ms",
                    "1.00",
                ]
            )
        for gate in (False, True) if args.gate else (False,):
            label = "gate on" if gate else "gate off"
            runs: list[tuple[str, dict[str, Any]]] = []
            if burst:
                console.print(f"mesh, {label}, burst …")
                async with running_mesh(
                    settings, args.agents, gate, args.log_dir, args.profile_dir
                ) as mesh:
                    fig = await mesh_burst(mesh, args.workflows, args.tasks)
                runs.append(("burst", fig))
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
                        f"CPU ms per task, {label}",
                        f"{sum(cpu.values()):.3f} ms summed",
                        "",
                        "",
                        ", ".join(f"{n} {v:.3f}" for n, v in sorted(cpu.items())),
                    ]
                )
                if fig["broker_cpu_ms_per_task"] is not None:
                    rows.append(
                        [
                            f"broker CPU ms per task, {label}",
                            f"{fig['broker_cpu_ms_per_task']:.3f} ms",
                            "",
                            "",
                            f"the {args.broker} broker's own process, apart from the sum",
                        ]
                    )
            if paced:
                console.print(f"mesh, {label}, paced …")
                async with running_mesh(
                    settings, args.agents, gate, args.log_dir, args.profile_dir
                ) as mesh:
                    fig = await mesh_paced(mesh, args.rate, args.seconds)
                runs.append(("paced", fig))
                rows.append(
                    [
                        f"mesh paced {args.rate:g}/s, {label}",
                        f"sent at {fig['rate']:,.0f}/s",
                        f"{fig['p50'] * 1000:.0f} ms",
                        f"{fig['p99'] * 1000:.0f} ms",
                        f"p50 {fig['p50'] / rp['p50']:.1f}× raw, "
                        f"p99 {fig['p99'] / rp['p99']:.1f}× raw",
                    ]
                )
            for what, fig in runs:
                if args.trace is not None:
                    with args.trace.open("a") as out:
                        for task in fig["trace"]:
                            out.write(json.dumps({"run": f"{what}, {label}", **task}) + "\n")
                hops.extend(
                    [
                        f"{what}, {label}",
                        hop,
                        f"{v['p50'] * 1000:.0f} ms",
                        f"{v['p99'] * 1000:.0f} ms",
                    ]
                    for hop, v in fig["hops"].items()
                )
                slow.extend(
                    [f"{what}, {label}", f"{wid}/{tid}", *(_ms(at) for at in ats)]
                    for (wid, tid), ats in fig["slowest"]
                )
    report(
        f"task path on the {args.broker} broker",
        ["what", "throughput", "p50", "p99", "against raw"],
        rows,
        as_json=args.json,
    )
    report(
        "each hop of the mesh (broker timestamps of the records each hop wrote)",
        ["run", "hop", "p50", "p99"],
        hops,
        as_json=args.json,
    )
    report(
        "the slowest tasks: each stage's time after scheduled",
        ["run", "task", *STAGES],
        slow,
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
    parser.add_argument(
        "--log-dir", type=Path, help="Keep the mesh processes' log lines here, one file each."
    )
    parser.add_argument(
        "--profile-dir", type=Path, help="Run each mesh process under cProfile; profiles here."
    )
    parser.add_argument(
        "--trace", type=Path, help="Append every task's stage timestamps here (JSON lines)."
    )
    parser.add_argument(
        "--only", choices=("burst", "paced"), help="Measure only this (raw and mesh)."
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
