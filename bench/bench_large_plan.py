"""One very large workflow end to end: a plan by reference, run, then replayed against live.

    python -m bench.bench_large_plan [--tasks 100000] [--agents 4] [--broker kafka|embedded]
        [--budget 1200] [--json]

Real processes on a fresh broker: the Workflow Manager, the Agent Manager and ``--agents`` no-op
Python agents (16 attempts each at once). One parallel plan of ``--tasks`` no-op tasks is
submitted (its plan goes by reference through ``payloads``); figures:

- seconds from submit to ``workflow.started`` and to ``workflow.completed``, and tasks/s;
- the Workflow Manager's peak RSS (VmHWM);
- ``mesh replay``'s fold of the whole history against the final snapshot: equal or not, events
  folded and seconds;
- the raw aiokafka baseline on the same broker in the same run (produce and consume records/s).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench._common import ROOT, aiokafka_baseline, broker, console, progress, report
from bench.bench_workflows import MESH, _is_ready, _peak_rss, _plan
from mesh.client import PlanRequest, submit_plan
from mesh.kafka.clients import stop_clients
from mesh.kafka.connection import client_kwargs
from mesh.replay import replay_workflow
from mesh.settings import Settings
from mesh.supervisor import Supervisor
from mesh.topics import apply_topics, load_topics

_ENDED = (b'"workflow.completed"', b'"workflow.failed"', b'"workflow.cancelled"')


async def run(settings: Settings, tasks: int, agents: int, budget: float) -> dict[str, Any]:
    await apply_topics(settings, load_topics(ROOT / "topics", prefix=settings.topic_prefix).topics)
    raw = await aiokafka_baseline(settings, messages=20_000)
    supervisor = Supervisor(is_ready=_is_ready)
    env = settings.to_env()
    try:
        wm = await supervisor.spawn(
            "workflows", [*MESH, "run", "workflows", "--group", settings.group("wf")], env=env
        )
        await supervisor.spawn("agent-manager", [*MESH, "run", "agents", "--no-lifecycle"], env=env)
        for i in range(agents):
            await supervisor.spawn(
                f"agent-{i}",
                [
                    *MESH,
                    *("agent", "run", "--kind", "python", "--id", f"big-{i}"),
                    *("--module", "mesh.agents.demo", "--max-concurrency", "16"),
                ],
                env=env,
            )
        missing = await supervisor.wait_ready(180)
        if missing:
            raise RuntimeError(f"not ready within 180 s: {missing}")
        began = time.perf_counter()
        submitted = await submit_plan(settings, PlanRequest(_plan(tasks, "noop"), None, None, ""))
        started, ended, done = await _follow(settings, submitted.cursor, tasks, began, budget)
        finished = time.perf_counter() - began
        peak = _peak_rss(wm.pid)
    finally:
        await supervisor.stop_all()
    figures: dict[str, Any] = {
        "tasks": tasks,
        "done": done,
        "ended": ended,
        "started_after_s": started,
        "completed_after_s": finished if ended == "workflow.completed" else None,
        "tasks_per_s": done / finished,
        "wm_peak_rss_mib": peak / 2**20,
        "raw": raw,
    }
    if ended == "workflow.completed":
        replay_began = time.perf_counter()
        replayed = await replay_workflow(settings, submitted.workflow_id)
        figures["replay"] = {
            "equal": replayed.equal,
            "events": replayed.event_count,
            "seconds": time.perf_counter() - replay_began,
            "differences": replayed.differences[:5],
        }
    return figures


async def _follow(
    settings: Settings, cursor: Any, tasks: int, began: float, budget: float
) -> tuple[float | None, str | None, int]:
    """Read the workflow's history partition: when it started, how it ended, tasks completed."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings), isolation_level="read_committed")
    await consumer.start()
    started: float | None = None
    ended: str | None = None
    done = 0
    try:
        tp = TopicPartition(cursor.topic, cursor.partition)
        consumer.assign([tp])
        consumer.seek(tp, cursor.offset)
        with progress() as bar:
            job = bar.add_task(f"{tasks:,} tasks", total=tasks)
            while ended is None and time.perf_counter() - began < budget:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    value = record.value or b""
                    if b'"task.completed"' in value:
                        done += 1
                    elif started is None and b'"workflow.started"' in value:
                        started = time.perf_counter() - began
                    elif any(kind in value for kind in _ENDED):
                        ended = next(k for k in _ENDED if k in value).decode().strip('"')
                bar.update(job, completed=done)
    finally:
        await stop_clients(consumer)
    return started, ended, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--broker", choices=("kafka", "embedded"), default="kafka")
    parser.add_argument("--budget", type=float, default=1200.0, help="Seconds before giving up.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with broker(args.broker) as servers:
        settings = Settings(bootstrap_servers=servers, topic_prefix="bench-large.")
        console.print(f"{args.tasks:,} tasks on {args.broker}, {args.agents} agents …")
        fig = asyncio.run(run(settings, args.tasks, args.agents, args.budget))
    replay = fig.get("replay") or {}
    rows = [
        ["ended", fig["ended"] or f"not within {args.budget:g} s", f"{fig['done']:,} completed"],
        ["workflow.started after", f"{fig['started_after_s'] or float('nan'):.1f} s", ""],
        [
            "completed after",
            f"{fig['completed_after_s']:.1f} s" if fig["completed_after_s"] else "-",
            f"{fig['tasks_per_s']:,.0f} tasks/s",
        ],
        ["Workflow Manager peak RSS", f"{fig['wm_peak_rss_mib']:,.0f} MiB", ""],
        [
            "replay against the final snapshot",
            {True: "equal", False: "DIFFERENT", None: "no snapshot"}.get(replay.get("equal"), "-"),
            f"{replay.get('events', 0):,} events in {replay.get('seconds', 0):.1f} s",
        ],
        [
            "raw aiokafka, same broker",
            f"{fig['raw']['produce_per_s']:,.0f} produced/s",
            f"{fig['raw']['consume_per_s']:,.0f} consumed/s",
        ],
    ]
    report(
        f"one workflow of {args.tasks:,} tasks on {args.broker}",
        ["figure", "value", "detail"],
        rows,
        as_json=args.json,
    )


if __name__ == "__main__":
    main()
