"""Workflow Manager throughput, latency, rebuild time and memory, beside raw aiokafka.

    python -m bench.bench_workflows [--broker kafka|embedded] [--tasks 400] [--rebuild N] [--json]

Every process is real: the Workflow Manager, the Agent Manager and the no-op Python agents run
as ``mesh`` subprocesses on a broker started for the run. Figures:

- tasks/s end to end: one parallel workflow of ``--tasks`` no-op tasks, from publishing the plan
  to ``workflow.completed``, with 1 and with 4 agent processes;
- p50/p99 from a task's ``task.scheduled`` (the TaskReady) to its completion being folded (the
  history record of ``task.completed``), from the history records' broker timestamps;
- rebuild time for ``--rebuild`` workflows (a fresh manager's "partitions rebuilt" figure);
- peak RSS of the Workflow Manager process (VmHWM);
- the raw aiokafka baseline on the same broker in the same run, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench._common import ROOT, aiokafka_baseline, broker, console, percentiles, progress, report
from mesh.client import PlanRequest, submit_plan
from mesh.events import ExecutionPlan, Mapper, PlanCreated, Producer, TaskSpec, meta
from mesh.kafka.connection import client_kwargs
from mesh.settings import Settings
from mesh.supervisor import Child, Supervisor
from mesh.topics import apply_topics, load_topics

MESH = [sys.executable, "-m", "mesh"]


def _is_ready(_child: Child, entry: dict[str, Any]) -> bool:
    return entry.get("event") in {"workflows ready", "agent manager ready", "agent ready"}


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _plan(tasks: int, capability: str) -> ExecutionPlan:
    return ExecutionPlan(
        plan_id="bench",
        workflow_type="parallel",
        tasks=[
            TaskSpec(task_id=f"t{i}", name=f"t{i}", capabilities=[{"name": capability}])  # type: ignore[list-item]
            for i in range(tasks)
        ],
    )


async def _run_workflow(settings: Settings, tasks: int) -> dict[str, float]:
    """Submit one parallel no-op workflow; time it and read task latencies from the history."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    began = time.perf_counter()
    submitted = await submit_plan(settings, PlanRequest(_plan(tasks, "noop"), None, None, ""))
    consumer = AIOKafkaConsumer(**client_kwargs(settings), isolation_level="read_committed")
    await consumer.start()
    scheduled: dict[str, int] = {}
    folded: dict[str, int] = {}
    try:
        tp = TopicPartition(submitted.cursor.topic, submitted.cursor.partition)
        consumer.assign([tp])
        consumer.seek(tp, submitted.cursor.offset)
        with progress() as bar:
            job = bar.add_task(f"{tasks} tasks", total=tasks)
            done = False
            while not done:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    event = mapper.decode(record.value, record.headers)
                    if getattr(event, "workflow_id", None) != submitted.workflow_id:
                        continue
                    task = getattr(event, "task_id", None)
                    if event.type == "task.scheduled" and task:
                        scheduled.setdefault(task, record.timestamp)
                    elif event.type == "task.completed" and task:
                        folded[task] = record.timestamp
                        bar.update(job, completed=len(folded))
                    elif event.type in ("workflow.completed", "workflow.failed"):
                        done = True
    finally:
        await consumer.stop()
    elapsed = time.perf_counter() - began
    latencies = [(folded[t] - scheduled[t]) / 1000 for t in folded if t in scheduled]
    return {"tasks_per_s": tasks / elapsed, "seconds": elapsed, **percentiles(latencies)}


async def _throughput(settings: Settings, tasks: int, agents: int) -> dict[str, float]:
    supervisor = Supervisor(is_ready=_is_ready)
    env = settings.to_env()
    try:
        wm = await supervisor.spawn(
            "workflows",
            [*MESH, "run", "workflows", "--group", settings.group(f"wf{agents}")],
            env=env,
        )
        await supervisor.spawn(
            "agent-manager",
            [*MESH, "run", "agents", "--no-lifecycle"],
            env=env,
        )
        for i in range(agents):
            await supervisor.spawn(
                f"agent-{i}",
                [
                    *MESH,
                    "agent",
                    "run",
                    "--kind",
                    "python",
                    "--id",
                    f"bench-{agents}-{i}",
                    "--module",
                    "mesh.agents.demo",
                    "--max-concurrency",
                    "8",
                ],
                env=env,
            )
        missing = await supervisor.wait_ready(120)
        if missing:
            raise RuntimeError(f"not ready: {missing}")
        figures = await _run_workflow(settings, tasks)
        figures["wm_peak_rss_mib"] = _peak_rss(wm.pid) / 2**20
        return figures
    finally:
        await supervisor.stop_all()


async def _rebuild(settings: Settings, workflows: int) -> dict[str, float]:
    """Start ``workflows`` one-task workflows that wait (no agent has their capability), then
    time a fresh manager's rebuild of them."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    me = Producer(component="bench", instance="rebuild")
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=20)
    await producer.start()
    try:
        with progress() as bar:
            job = bar.add_task("publishing plans", total=workflows)
            futures = []
            for i in range(workflows):
                event = PlanCreated(
                    **meta(me, correlation_id=f"r{i}"),
                    workflow_id=f"rb-{i}",
                    request_id=f"r{i}",
                    plan=_plan(1, "nobody-has-this"),
                )
                key, value, headers = mapper.encode(event)
                futures.append(
                    await producer.send(settings.topic("plans"), value, key=key, headers=headers)
                )
                bar.update(job, advance=1)
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    group = settings.group("rebuild")
    rebuilt: list[dict[str, Any]] = []

    def watch(_child: Child, entry: dict[str, Any] | str) -> None:
        if isinstance(entry, dict) and entry.get("event") == "partitions rebuilt":
            rebuilt.append(entry)

    # First manager: folds all plans (and writes snapshots); wait until its history has them.
    first = Supervisor(is_ready=_is_ready)
    await first.spawn(
        "workflows",
        [*MESH, "run", "workflows", "--group", group],
        env=settings.to_env(),
    )
    await first.wait_ready(120)
    await _wait_started(settings, workflows)
    await first.stop_all()
    second = Supervisor(is_ready=_is_ready, on_log=watch)
    began = time.perf_counter()
    await second.spawn(
        "workflows",
        [*MESH, "run", "workflows", "--group", group],
        env=settings.to_env(),
    )
    await second.wait_ready(300)
    ready_s = time.perf_counter() - began
    await second.stop_all()
    seconds = sum(float(e.get("seconds", 0)) for e in rebuilt)
    count = sum(int(e.get("workflows", 0)) for e in rebuilt)
    return {"workflows": count, "rebuild_seconds": seconds, "start_to_ready_seconds": ready_s}


async def _wait_started(settings: Settings, workflows: int) -> None:
    """Count workflow.started records until every plan has one."""
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    consumer = AIOKafkaConsumer(
        settings.topic("workflow.events"),
        **client_kwargs(settings),
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: set[str] = set()
    try:
        with progress() as bar:
            job = bar.add_task("waiting for workflow.started", total=workflows)
            while len(seen) < workflows:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        if b"workflow.started" in (record.value or b""):
                            seen.add(mapper.decode(record.value, record.headers).key)
                bar.update(job, completed=len(seen))
    finally:
        await consumer.stop()


async def main_async(args: argparse.Namespace) -> None:
    with broker(args.broker) as servers:
        settings = Settings(bootstrap_servers=servers, topic_prefix="bench.")
        declarations = load_topics(ROOT / "topics", prefix=settings.topic_prefix)
        await apply_topics(settings, declarations.topics)
        console.print("raw aiokafka baseline …")
        base = await aiokafka_baseline(settings, messages=max(2000, args.tasks * 5))
        rows: list[list[Any]] = [
            ["raw aiokafka produce", f"{base['produce_per_s']:,.0f} msg/s", "", "", "1.00"],
            ["raw aiokafka consume", f"{base['consume_per_s']:,.0f} msg/s", "", "", "1.00"],
            [
                "raw aiokafka produce→consume latency",
                "",
                f"{base['p50'] * 1000:.1f} ms",
                f"{base['p99'] * 1000:.1f} ms",
                "1.00",
            ],
        ]
        for agents in (1, 4):
            console.print(f"end to end with {agents} agent process(es) …")
            fig = await _throughput(settings, args.tasks, agents)
            rows.append(
                [
                    f"mesh tasks end to end, {agents} agent(s), "
                    f"WM peak RSS {fig['wm_peak_rss_mib']:.0f} MiB",
                    f"{fig['tasks_per_s']:,.1f} tasks/s",
                    f"{fig['p50'] * 1000:.0f} ms",
                    f"{fig['p99'] * 1000:.0f} ms",
                    f"throughput {fig['tasks_per_s'] / base['consume_per_s']:.4f}x of raw consume; "
                    f"p50 {fig['p50'] / base['p50']:.0f}x raw latency",
                ]
            )
        if args.rebuild:
            console.print(f"rebuild of {args.rebuild} workflows …")
            rb = await _rebuild(settings, args.rebuild)
            rate = base["consume_per_s"]
            rows.append(
                [
                    f"rebuild {rb['workflows']:,} workflows",
                    f"{rb['rebuild_seconds']:.2f} s "
                    f"(start→ready {rb['start_to_ready_seconds']:.1f} s)",
                    "",
                    "",
                    f"{rb['workflows'] / max(rb['rebuild_seconds'], 1e-9) / rate:.3f}x "
                    "of raw consume rate",
                ]
            )
        report(
            f"Workflow Manager on {args.broker} ({servers})",
            ["figure", "rate / time", "p50", "p99", "vs raw aiokafka"],
            rows,
            as_json=args.json,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--broker", choices=["kafka", "embedded"], default="kafka")
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--rebuild", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
