"""The resource gate's hop: scheduled → assigned with the gate on, beside the gate off.

    python -m bench.bench_gate [--broker embedded|kafka] [--rate 20] [--seconds 5] [--json]

The mesh runs as real processes on a fresh broker (``bench.bench_task_path.running_mesh``: the
Workflow Manager, the Agent Manager, no-op agents and, with the gate on, the Resource
Allocator). One-task workflows are submitted at ``--rate`` per second for ``--seconds``, first
with the resource gate off, then on; each task's scheduled → assigned is taken from the broker
timestamps of its ``task.scheduled`` history record and its ``tasks.assigned`` record. With the
gate off that hop is the Agent Manager alone; with it on, the ready task also goes through the
allocator (``tasks.ready`` → ``ResourceRequested``/``ResourceAllocated`` on ``resources`` →
the Agent Manager), so the difference between the two rows is what the gate costs. One workflow
before the timed ones warms the mesh up (the first assignment waits for the agent to be seen
live).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from bench._common import broker, console, following, percentiles, report
from bench.bench_task_path import History, _plan, running_mesh
from mesh.broker import FETCH_MAX_WAIT_MS
from mesh.client import PlanRequest, submit_plan
from mesh.settings import Settings


class Hops(History):
    """``bench_task_path``'s follower of the task path, timing scheduled → first assigned."""

    def latencies(self) -> list[float]:
        assigned = self.at["assigned"]
        return [
            (at - self.scheduled[k]) / 1000 for k, at in assigned.items() if k in self.scheduled
        ]

    def clear(self) -> None:
        for stage in self.at.values():
            stage.clear()

    async def comes_true(self, what: Callable[[], bool], within: float) -> bool:
        """Whether ``what`` came true within ``within`` seconds (checked as records arrive)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not what():
                    self.changed.clear()
                    await self.changed.wait()
                return True
        return False


async def paced_hop(settings: Settings, gate: bool, rate: float, seconds: float) -> dict[str, Any]:
    count = int(rate * seconds)
    async with running_mesh(settings, 1, gate) as mesh, following(Hops(mesh.settings)) as seen:
        # Warm up until one task is seen assigned: the follower has taken its position (it
        # starts at the end of the topic) and the first assignment, which waits for the agent
        # to be seen live, is start-up rather than the hop.
        for _ in range(30):
            await submit_plan(mesh.settings, PlanRequest(_plan(1), None, None, ""))
            if await seen.comes_true(lambda: bool(seen.latencies()), within=5.0):
                break
        else:
            raise RuntimeError("no task was assigned during the warm-up")
        seen.clear()
        began = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
            await submit_plan(mesh.settings, PlanRequest(_plan(1), None, None, ""))
        if not await seen.comes_true(lambda: len(seen.latencies()) >= count, within=120):
            raise RuntimeError(f"only {len(seen.latencies())} of {count} tasks were assigned")
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
