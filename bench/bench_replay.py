"""Replay rate over a large history, beside a raw aiokafka consumer reading the same records.

    python -m bench.bench_replay [--broker embedded|kafka] [--events 1000000] [--tasks 50] [--json]

The input is written once per run: ``--events`` history records on ``workflow.events`` (the
declared topic, 6 partitions), as complete histories of parallel workflows of ``--tasks`` tasks
(workflow.started, then scheduled/assigned/started/completed per task, workflow.completed),
each keyed by its workflow id on the partition a producer would pick. One history is built
from the real event models and folded once to check that it replays; the others are copies
under other ids (same length, so the bytes and the decoding work are the same), written with
batched produce (``create_batch``/``send_batch``) per partition.

Figures, all on the same records in the same run:

- raw aiokafka: one group-less read_committed consumer, every partition, start to end, counting
  records (no decoding) — the ceiling for anything that reads the topic;
- shadow replay (``mesh.replay.shadow_replay``, what ``mesh replay --all`` runs): decode every
  record through the Mapper and fold every workflow; events/s of its read-and-fold pass;
- with ``--cli``, ``mesh replay --all --json`` as a subprocess (the user's command: snapshots
  read and diffed too), which replays everything a second time;
- memory: the replay's growth in resident memory and this process's peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench._common import ROOT, broker, console, max_rss_bytes, progress, report
from mesh.events import (
    ExecutionPlan,
    Mapper,
    Producer,
    TaskAssigned,
    TaskCompleted,
    TaskScheduled,
    TaskSpec,
    TaskStarted,
    WorkflowCompleted,
    WorkflowEvent,
    WorkflowStarted,
    meta,
)
from mesh.kafka.connection import client_kwargs
from mesh.kafka.partitions import partition_for
from mesh.replay import shadow_replay
from mesh.settings import Settings
from mesh.topics import apply_topics, load_topics
from mesh.workflows import fold

WM = Producer(component="workflow-manager", instance="bench")
TEMPLATE_ID = "wf-bench-0000000000"


def workflow_id(n: int) -> str:
    """Ids of the same length as the template's, so copies are byte-for-byte the same size."""
    return f"wf-bench-{n:010d}"


def template_history(tasks: int) -> list[WorkflowEvent]:
    """One complete, valid history of a parallel workflow of ``tasks`` tasks."""
    specs = [
        TaskSpec(task_id=f"t{i:03d}", name=f"task {i}", capabilities=[{"name": "noop"}])  # type: ignore[list-item]
        for i in range(tasks)
    ]
    plan = ExecutionPlan(plan_id=TEMPLATE_ID, workflow_type="parallel", tasks=specs)
    request = f"req-{TEMPLATE_ID}"
    events: list[WorkflowEvent] = [
        WorkflowStarted(
            **meta(WM, correlation_id=request),
            workflow_id=TEMPLATE_ID,
            request_id=request,
            plan=plan,
        )
    ]
    common: dict[str, Any] = {"workflow_id": TEMPLATE_ID, "attempt": 1}
    for spec in specs:
        task = {**common, "task_id": spec.task_id}
        events.append(TaskScheduled(**meta(WM, correlation_id=request), **task))
        # As the Workflow Manager records it: the history's TaskAssigned leaves out the task
        # spec, which the plan in workflow.started already holds.
        events.append(TaskAssigned(**meta(WM, correlation_id=request), **task, agent_id="agent-1"))
        events.append(TaskStarted(**meta(WM, correlation_id=request), **task, agent_id="agent-1"))
        events.append(
            TaskCompleted(
                **meta(WM, correlation_id=request), **task, agent_id="agent-1", output={"ok": True}
            )
        )
    events.append(
        WorkflowCompleted(
            **meta(WM, correlation_id=request), workflow_id=TEMPLATE_ID, completed_tasks=tasks
        )
    )
    return [e.model_copy(update={"sequence": i}) for i, e in enumerate(events, start=1)]


async def write_history(settings: Settings, events: int, tasks: int) -> tuple[int, int, float]:
    """Write about ``events`` history records; returns (records, workflows, seconds)."""
    history = template_history(tasks)
    state = fold(history)
    if state is None or state.status != "completed":
        raise RuntimeError("the template history does not replay to a completed workflow")
    mapper = Mapper(max_event_bytes=settings.max_event_bytes)
    # Every history record is keyed by its workflow id (task.assigned's own key is its agent).
    template = [(TEMPLATE_ID.encode(), *mapper.encode(e)[1:]) for e in history]
    old = TEMPLATE_ID.encode()
    workflows = max(1, events // len(history))
    topic = settings.topic("workflow.events")
    producer = AIOKafkaProducer(
        **client_kwargs(settings), acks="all", linger_ms=50, max_batch_size=1_000_000
    )
    began = time.perf_counter()
    written = 0
    try:
        await producer.start()
        partitions = await _wait_for_leaders(producer, topic)
        batches: dict[int, Any] = {}
        pending: list[asyncio.Future[Any]] = []

        async def flush(partition: int) -> None:
            batch = batches.pop(partition, None)
            if batch is not None and batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=partition))

        with progress() as bar:
            job = bar.add_task("writing history (batched produce)", total=workflows * len(history))
            for n in range(workflows):
                new = workflow_id(n).encode()
                partition = partition_for(new, partitions)
                for key, value, headers in template:
                    record = (
                        key.replace(old, new),
                        value.replace(old, new),
                        [(h, v.replace(old, new)) for h, v in headers],
                    )
                    batch = batches.get(partition)
                    if batch is None:
                        batch = batches[partition] = producer.create_batch()
                    if (
                        batch.append(
                            key=record[0], value=record[1], timestamp=None, headers=record[2]
                        )
                        is None
                    ):
                        await flush(partition)
                        batch = batches[partition] = producer.create_batch()
                        batch.append(
                            key=record[0], value=record[1], timestamp=None, headers=record[2]
                        )
                    written += 1
                if len(pending) > 64:
                    await asyncio.gather(*pending)
                    pending.clear()
                    bar.update(job, completed=written)
            for partition in list(batches):
                await flush(partition)
            await asyncio.gather(*pending)
            bar.update(job, completed=written)
    finally:
        await producer.stop()
    return written, workflows, time.perf_counter() - began


async def _wait_for_leaders(producer: AIOKafkaProducer, topic: str, within: float = 60) -> int:
    """The topic's partition count once every partition has a leader: real Kafka elects them
    just after creation, and producing earlier only earns NotLeaderForPartition retries."""
    deadline = time.monotonic() + within
    while True:
        await producer.client.force_metadata_update()
        numbers = producer.client.cluster.partitions_for_topic(topic) or set()
        leaders = [
            producer.client.cluster.leader_for_partition(TopicPartition(topic, n)) for n in numbers
        ]
        if numbers and all(leader is not None and leader >= 0 for leader in leaders):
            return len(numbers)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{topic} has no leader for every partition after {within:.0f} s")
        await asyncio.sleep(0.2)


async def raw_consume(settings: Settings) -> tuple[int, float]:
    """Read every record of ``workflow.events`` with a bare aiokafka consumer (no decoding)."""
    topic = settings.topic("workflow.events")
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings),
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_wait_ms=20,
    )
    count = 0
    try:
        await consumer.start()
        await consumer._client.force_metadata_update()  # a fresh view: the topic is new
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        began = time.perf_counter()
        remaining = set(tps)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=200, max_records=5_000)
            count += sum(len(records) for records in batch.values())
            for tp in list(remaining):
                # The embedded broker's end_offsets is the start of the last batch; a fetch
                # response's last stable offset is the real end.
                stable = consumer.last_stable_offset(tp)
                if stable is None:
                    continue
                ends[tp] = max(ends[tp], stable)
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        seconds = time.perf_counter() - began
    finally:
        await consumer.stop()
    return count, seconds


async def cli_replay(settings: Settings) -> tuple[dict[str, Any], float]:
    """``mesh replay --all --json`` as a user runs it; its JSON and the wall time."""
    began = time.perf_counter()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mesh", "replay", "--all", "--json"],
        env={**os.environ, **settings.to_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - began
    if done.returncode not in (0, 1):
        raise RuntimeError(f"mesh replay --all failed: {done.stderr.strip()}")
    document: dict[str, Any] = json.loads(done.stdout)
    return document, seconds


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def main_async(args: argparse.Namespace) -> None:
    with broker(args.broker) as servers:
        settings = Settings(bootstrap_servers=servers, topic_prefix="bench.")
        declarations = load_topics(ROOT / "topics", prefix=settings.topic_prefix)
        await apply_topics(settings, declarations.topics)
        console.print(f"writing ~{args.events:,} history events …")
        written, workflows, write_s = await write_history(settings, args.events, args.tasks)
        console.print("raw aiokafka consume …")
        raw_count, raw_s = await raw_consume(settings)
        console.print("shadow replay (decode + fold) …")
        rss_before = _rss()
        with progress() as bar:
            job = bar.add_task("replaying", total=written)
            result = await shadow_replay(
                settings,
                compare=False,
                keep_states=False,
                progress=lambda read, total, _folded: bar.update(job, completed=read, total=total),
            )
        rss_after = _rss()
        assert result.events_folded == written, (result.events_folded, written, raw_count)
        assert len(result.projection) == workflows, (len(result.projection), workflows)
        assert not result.problems, result.problems
        raw_rate = raw_count / raw_s
        replay_rate = result.events_per_second
        rows: list[list[Any]] = [
            [
                "history written (batched produce)",
                f"{written:,} events, {workflows:,} workflows",
                f"{written / write_s:,.0f} events/s",
                "",
            ],
            [
                "raw aiokafka consume (no decoding)",
                f"{raw_count:,} records in {raw_s:.2f} s",
                f"{raw_rate:,.0f} records/s",
                "1.00",
            ],
            [
                "shadow replay: decode + fold",
                f"{result.events_folded:,} events in {result.seconds:.2f} s",
                f"{replay_rate:,.0f} events/s",
                f"{replay_rate / raw_rate:.3f}",
            ],
            [
                "replay memory: RSS growth / process peak RSS",
                f"{(rss_after - rss_before) / 2**20:,.0f} MiB",
                f"{max_rss_bytes() / 2**20:,.0f} MiB",
                "",
            ],
        ]
        if args.cli:
            console.print("mesh replay --all --json (subprocess) …")
            cli, cli_s = await cli_replay(settings)
            rate = cli["events_per_second"]
            rows.append(
                [
                    "mesh replay --all --json (whole command)",
                    f"{cli['events_folded']:,} events, wall {cli_s:.1f} s",
                    f"{rate:,.0f} events/s",
                    f"{rate / raw_rate:.3f}",
                ]
            )
        report(
            f"Replay on {args.broker} ({servers}), {args.tasks}-task workflows",
            ["figure", "amount", "rate", "vs raw aiokafka"],
            rows,
            as_json=args.json,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--broker", choices=["kafka", "embedded"], default="embedded")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--cli", action="store_true", help="also time `mesh replay --all`")
    parser.add_argument("--json", action="store_true")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
