"""Resource Allocator: allocation decisions per second for 10, 1,000 and 10,000 nodes.

    python -m bench.bench_allocator                    # 10 / 1,000 / 10,000 nodes
    python -m bench.bench_allocator --nodes 1000 --seconds 2 --batch 100 --json

For each cluster size, one pool of random nodes (CPU, memory, network, storage, a GPU on one
node in eight, a cost per hour and a speed; fixed by ``--seed``) is filled to about half with
random allocations, then random requests (mixed sizes, half with a deadline and an estimated
duration, cheapest or best-fit placement) are decided one after another for ``--seconds``:

- decision: the whole ``Allocator.allocate_resources`` call (quota check, one round over the
  request, placement, the ``ResourceAllocated`` event, folding it into the ledger); each granted
  allocation is released again outside the timer so the cluster stays half full;
- batched: the same requests ``--batch`` at a time through ``Allocator.allocate_many`` (one round
  decides them all, as the component does with a batch of ready tasks), per request decided;
- placement: the node scoring alone (``Placer.choose``) on the same table and requests.

Both run twice in the same process on the same data: with the numpy placer (every candidate
node scored in one vectorised pass) and with ``PythonPlacer``, the same scoring as a plain loop
over nodes. There is no Kafka on this path, so that loop is the baseline.
"""

from __future__ import annotations

import argparse
import functools
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from bench._common import max_rss_bytes, measure, progress, report
from mesh.events import (
    PoolDeclared,
    PoolNode,
    Producer,
    ResourceAllocated,
    Resources,
    UnitCosts,
    meta,
)
from mesh.resources import (
    Allocator,
    AllocatorConfig,
    Ask,
    NodeTable,
    NumpyPlacer,
    Placer,
    Policy,
    PythonPlacer,
    ResourceRequest,
    to_resources,
    to_vector,
)
from mesh.resources._allocator import PlacerFactory

ME = Producer(component="bench", instance="bench-1")
PLACERS: dict[str, PlacerFactory] = {"numpy": NumpyPlacer, "python": PythonPlacer}
POOL_SIZE = 2_000


def random_pools(nodes: int, seed: int) -> list[PoolDeclared]:
    """``nodes`` random nodes, in pools of at most 2,000 (what one ``PoolDeclared`` holds)."""
    rng = np.random.default_rng(seed)
    made = [
        PoolNode(
            node_id=f"n{i}",
            capacity=Resources(
                cpu=float(rng.choice([2, 4, 8, 16, 32, 64])),
                memory_mb=int(rng.choice([4, 8, 16, 32, 64, 256])) * 1024,
                network_mbps=float(rng.choice([1_000, 10_000, 25_000])),
                storage_mb=int(rng.choice([50, 100, 500, 2_000])) * 1024,
                gpu=int(rng.choice([0, 0, 0, 0, 0, 0, 0, 4])),
            ),
            cost_per_hour=round(float(rng.uniform(0.05, 4.0)), 3),
            unit_costs=UnitCosts(gpu=round(float(rng.uniform(0.5, 3.0)), 3)),
            speed=float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])),
        )
        for i in range(nodes)
    ]
    pools = []
    for start in range(0, nodes, POOL_SIZE):
        part = made[start : start + POOL_SIZE]
        total = to_resources(np.sum([to_vector(n.capacity) for n in part], axis=0))
        pools.append(
            PoolDeclared(
                **meta(ME, correlation_id="bench"),
                pool_id=f"pool{start // POOL_SIZE}",
                capacity=total,
                nodes=part,
            )
        )
    return pools


def random_requests(count: int, seed: int) -> list[ResourceRequest]:
    """Mixed requests: small to large, a few with a GPU, half with a deadline and an estimate."""
    rng = np.random.default_rng(seed)
    now = time.time()
    made = []
    for _ in range(count):
        timed = bool(rng.integers(0, 2))
        made.append(
            ResourceRequest(
                resources=Resources(
                    cpu=float(rng.choice([0.5, 1, 2, 4, 8])),
                    memory_mb=int(rng.choice([512, 1024, 4096, 8192])),
                    network_mbps=float(rng.choice([0, 100, 1000])),
                    storage_mb=int(rng.choice([0, 1024, 10240])),
                    gpu=int(rng.choice([0] * 15 + [1])),
                ),
                tenant=f"t{int(rng.integers(0, 8))}",
                estimated_duration_seconds=float(rng.uniform(60, 3600)) if timed else None,
                deadline=(
                    datetime.fromtimestamp(now + float(rng.uniform(600, 7200)), UTC)
                    if timed
                    else None
                ),
            )
        )
    return made


def allocator(pools: list[PoolDeclared], placer: PlacerFactory, placement: str) -> Allocator:
    policy = Policy("fair", "cheapest" if placement == "cheapest" else "best_fit")
    return Allocator(
        pools, config=AllocatorConfig(default=policy, discovery=False), producer=ME, placer=placer
    )


def half_fill(pools: list[PoolDeclared], seed: int) -> list[ResourceAllocated]:
    """One allocation per node of a random part (up to all) of it: the cluster about half full."""
    rng = np.random.default_rng(seed + 1)
    made = []
    for pool, node in ((p, n) for p in pools for n in p.nodes):
        part = float(rng.uniform(0, 1))
        held = to_vector(node.capacity) * part
        made.append(
            ResourceAllocated(
                **meta(ME, correlation_id="fill"),
                allocation_id=f"fill-{node.node_id}",
                tenant=f"t{int(rng.integers(0, 8))}",
                pool_id=pool.pool_id,
                node_id=node.node_id,
                resources=to_resources(np.floor(held)),
                cost_per_hour=node.cost_per_hour * part,
            )
        )
    return made


def decisions_per_second(
    alloc: Allocator, requests: list[ResourceRequest], seconds: float
) -> tuple[float, int]:
    """Decide requests one by one for ``seconds``; every grant is released again, untimed."""
    spent, done = 0.0, 0
    while spent < seconds:
        request = requests[done % len(requests)]
        began = time.perf_counter()
        decision = alloc.allocate_resources(request)
        spent += time.perf_counter() - began
        done += 1
        alloc.release(decision.allocation_id)  # a grant is released, a queued request withdrawn
    return done / spent, done


def batched_per_second(
    alloc: Allocator, requests: list[ResourceRequest], seconds: float, batch: int
) -> float:
    """Decide ``batch`` requests per round for ``seconds``; every grant is released, untimed."""
    spent, done = 0.0, 0
    while spent < seconds:
        asked = [requests[(done + i) % len(requests)] for i in range(batch)]
        began = time.perf_counter()
        decisions = alloc.allocate_many(asked)
        spent += time.perf_counter() - began
        done += batch
        for decision in decisions:
            alloc.release(decision.allocation_id)
    return done / spent


def placements_per_second(placer: Placer, asks: list[Ask], seconds: float) -> tuple[float, int]:
    spent, done = 0.0, 0
    while spent < seconds:
        began = time.perf_counter()
        placer.choose(asks[done % len(asks)])
        spent += time.perf_counter() - began
        done += 1
    return done / spent, done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 1_000, 10_000])
    parser.add_argument("--seconds", type=float, default=1.5, help="timed per cell")
    parser.add_argument("--placement", choices=["cheapest", "best_fit"], default="cheapest")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=100, help="requests per batched round")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)

    rows: list[list[Any]] = []
    with progress() as bar:
        task = bar.add_task("allocator", total=len(args.nodes) * 5)
        for size in args.nodes:
            pools = random_pools(size, args.seed)
            built = measure(functools.partial(NodeTable.build, pools))
            fill = half_fill(pools, args.seed)
            requests = random_requests(500, args.seed + 2)
            figures: dict[str, float] = {}
            for name, placer in PLACERS.items():
                bar.update(task, description=f"{size:,} nodes, {name}: decisions")
                alloc = allocator(pools, placer, args.placement)
                for event in fill:
                    alloc.apply(event)
                figures[f"{name}_decisions"], _ = decisions_per_second(
                    alloc, requests, args.seconds
                )
                bar.advance(task)
                if name == "numpy":
                    bar.update(task, description=f"{size:,} nodes, {name}: batched")
                    figures["batched"] = batched_per_second(
                        alloc, requests, args.seconds, args.batch
                    )
                    bar.advance(task)
                bar.update(task, description=f"{size:,} nodes, {name}: placement")
                table = alloc.node_table()
                used, _ = alloc.ledger.used_on(table.keys)
                asks = [Ask(to_vector(r.resources), args.placement) for r in requests]
                figures[f"{name}_placements"], _ = placements_per_second(
                    placer(table, used), asks, args.seconds
                )
                bar.advance(task)
            rows.append(
                [
                    size,
                    figures["batched"],
                    figures["numpy_decisions"],
                    figures["python_decisions"],
                    figures["numpy_decisions"] / figures["python_decisions"],
                    figures["numpy_placements"],
                    figures["python_placements"],
                    figures["numpy_placements"] / figures["python_placements"],
                    built.seconds * 1000,
                    built.peak_bytes / 1024 / 1024,
                ]
            )
    report(
        f"Resource Allocator: decisions per second ({args.placement}, cluster half full; "
        f"peak RSS {max_rss_bytes() / 1024 / 1024:.0f} MiB)",
        [
            "nodes",
            f"decisions/s batched {args.batch}",
            "decisions/s numpy",
            "decisions/s loop",
            "decide speed-up",
            "placements/s numpy",
            "placements/s loop",
            "place speed-up",
            "table ms",
            "table MiB",
        ],
        rows,
        as_json=args.json,
    )


if __name__ == "__main__":
    main()
