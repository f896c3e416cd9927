"""``mesh resources usage|pools|quotas`` — the Resource Allocator's ledger, read from Kafka.

Every command replays the ``resources`` topic (and the agent topics, for the hosts agents
report) into an in-process allocator, so it shows exactly what the running allocator would
rebuild; nothing needs to be running but the broker. Tables on a terminal, one JSON document with
``--json``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from mesh.cli._app import settings_of
from mesh.cli._output import console, print_json, print_table
from mesh.events import PoolDeclared, Resources
from mesh.resources import (
    Allocator,
    Quota,
    default_producer,
    describe_limits,
    load_pools,
    pool_nodes,
    pool_policy,
    pools_path,
    quota_summary,
    to_resources,
)
from mesh.resources.runtime import read_allocator

app = typer.Typer(
    help="The Resource Allocator's ledger: usage, pools and quotas.\n\n"
    "Example: mesh resources usage --json",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
PoolsOption = Annotated[
    Path | None,
    typer.Option(
        "--pools-file",
        help="Pools file [default: ./resources/pools.yaml; env MESH_RESOURCE_POOLS]",
        show_default=False,
        dir_okay=False,
    ),
]


def _replay(ctx: typer.Context, pools_file: Path | None) -> Allocator:
    return asyncio.run(read_allocator(settings_of(ctx), pools_file=pools_file))


def _amounts(r: Resources) -> str:
    parts = [f"{r.cpu:g} cpu", f"{r.memory_mb} MiB"]
    if r.network_mbps:
        parts.append(f"{r.network_mbps:g} Mbit/s")
    if r.storage_mb:
        parts.append(f"{r.storage_mb} MiB disk")
    if r.gpu:
        parts.append(f"{r.gpu} gpu")
    return ", ".join(parts)


@app.command()
def usage(ctx: typer.Context, pools_file: PoolsOption = None, as_json: JsonFlag = False) -> None:
    """What each pool and tenant holds, what waits, and what workflows have cost.

    Example: mesh resources usage
    """
    report = _replay(ctx, pools_file).get_resource_usage()
    if as_json:
        print_json(report.to_dict())
        return
    print_table(
        "pools",
        ["pool", "policy", "nodes", "used", "free", "allocations", "cost/h"],
        [
            [
                p.pool_id,
                p.policy,
                p.nodes,
                _amounts(p.used),
                _amounts(p.free),
                p.allocations,
                f"{p.cost_per_hour:g}",
            ]
            for p in report.pools
        ],
    )
    print_table(
        "tenants",
        ["tenant", "used", "allocations", "waiting", "cost/h"],
        [
            [t.tenant, _amounts(t.used), t.allocations, t.waiting, f"{t.cost_per_hour:g}"]
            for t in report.tenants
        ],
    )
    if report.workflows:
        print_table(
            "cost per workflow",
            ["workflow", "cost", "cost/h now", "allocations"],
            [
                [w.workflow_id, f"{w.cost:.4f}", f"{w.rate_per_hour:g}", w.allocations]
                for w in report.workflows
            ],
        )
    console.print(
        f"{report.allocations} allocations held, {report.waiting} waiting; "
        f"{_amounts(report.used)} of {_amounts(report.capacity)} in use",
        highlight=False,
    )


def _pool_row(pool: PoolDeclared, source: str, allocator: Allocator) -> dict[str, Any]:
    policy = pool_policy(allocator.config, pool)
    return {
        "pool_id": pool.pool_id,
        "source": source,
        "policy": policy.kind,
        "placement": policy.placement,
        "preempt": policy.preempt,
        "capacity": pool.capacity.model_dump(),
        "cost_per_hour": pool.cost_per_hour,
        "labels": dict(pool.labels),
        "nodes": [
            {
                "node_id": n.node_id,
                "capacity": n.capacity.model_dump(),
                "cost_per_hour": n.cost_per_hour,
                "unit_costs": n.unit_costs.model_dump(),
                "speed": n.speed,
            }
            for n in pool_nodes(pool)
        ],
    }


@app.command()
def pools(ctx: typer.Context, pools_file: PoolsOption = None, as_json: JsonFlag = False) -> None:
    """Pools declared in the pools file and on the ledger, and hosts that agents report.

    ``source`` says where a pool is known: ``file`` (not published yet: the allocator publishes it
    when it starts), ``ledger``, ``file+ledger``, ``file (changed)`` when they differ, ``agents``.

    Example: mesh resources pools --json
    """
    settings = settings_of(ctx)
    allocator = _replay(ctx, pools_file)
    declared = load_pools(pools_path(pools_file or settings.resource_pools)).pools(
        default_producer()
    )
    in_file = {p.pool_id: p for p in declared}
    on_ledger = allocator.ledger.pools
    rows = []
    for pool_id in sorted(set(in_file) | set(on_ledger)):
        if pool_id in in_file and pool_id in on_ledger:
            same = _same(in_file[pool_id], on_ledger[pool_id])
            source = "file+ledger" if same else "file (changed)"
            shown = on_ledger[pool_id] if same else in_file[pool_id]
            rows.append(_pool_row(shown, source, allocator))
        elif pool_id in in_file:
            rows.append(_pool_row(in_file[pool_id], "file", allocator))
        else:
            rows.append(_pool_row(on_ledger[pool_id], "ledger", allocator))
    table = allocator.node_table()
    discovery = allocator.config.discovery_pool
    if discovery in table.pools and discovery not in on_ledger:
        nodes = [n for n in table.keys if n[0] == discovery]
        rows.append(
            {
                "pool_id": discovery,
                "source": "agents",
                "policy": allocator.config.default.kind,
                "placement": allocator.config.default.placement,
                "preempt": allocator.config.default.preempt,
                "capacity": to_resources(table.pool_capacity(discovery)).model_dump(),
                "cost_per_hour": 0.0,
                "labels": {},
                "nodes": [{"node_id": node} for _, node in nodes],
            }
        )
    if as_json:
        print_json({"pools": rows})
        return
    print_table(
        "pools",
        ["pool", "source", "policy", "placement", "nodes", "capacity", "cost/h"],
        [
            [
                r["pool_id"],
                r["source"],
                r["policy"],
                r["placement"],
                len(r["nodes"]),
                _amounts(Resources(**r["capacity"])),
                f"{r['cost_per_hour']:g}",
            ]
            for r in rows
        ],
    )


def _same(a: PoolDeclared, b: PoolDeclared) -> bool:
    envelope = {"event_id", "occurred_at", "correlation_id", "causation_id", "producer"}
    return a.model_dump(exclude=envelope) == b.model_dump(exclude=envelope)


@app.command()
def quotas(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Each tenant's quota and what it holds against it.

    Example: mesh resources quotas --json
    """
    allocator = _replay(ctx, None)
    ledger = allocator.ledger
    rows = []
    quotas_by_tenant = {
        t: Quota.from_event(q, default=allocator.config.default) for t, q in ledger.quotas.items()
    }
    for tenant in sorted(ledger.quotas):
        quota = quotas_by_tenant[tenant]
        held = ledger.tenant_used.get(tenant)
        rows.append(
            {
                "tenant": tenant,
                **quota_summary(quota),
                "held": (to_resources(held) if held is not None else Resources()).model_dump(),
                "allocations": ledger.tenant_count.get(tenant, 0),
                "cost_per_hour": round(ledger.tenant_rate.get(tenant, 0.0), 9),
            }
        )
    if as_json:
        print_json({"quotas": rows})
        return
    print_table(
        "quotas",
        ["tenant", "limits", "max allocations", "max cost/h", "policy", "held", "allocations"],
        [
            [
                r["tenant"],
                describe_limits(quotas_by_tenant[r["tenant"]]),
                r["max_allocations"] if r["max_allocations"] is not None else "none",
                f"{r['max_cost_per_hour']:g}" if r["max_cost_per_hour"] is not None else "none",
                r["policy"] or "pool's",
                _amounts(Resources(**r["held"])),
                r["allocations"],
            ]
            for r in rows
        ],
    )
