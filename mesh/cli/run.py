"""``mesh run …`` — a mesh component in the foreground.

It runs until SIGTERM or Ctrl-C, then shuts down cleanly and exits 0 (a second Ctrl-C stops at
once; see :mod:`mesh.cli._service`). A line such as ``workflows ready`` says it consumes
(``mesh dev`` waits for it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Literal

import typer

from mesh.cli._app import settings_of
from mesh.cli._service import JsonLogs, MetricsPort, serve
from mesh.workflows.runtime import WorkflowManager

app = typer.Typer(help="Run a mesh component in the foreground.", no_args_is_help=True)


@app.command()
def workflows(
    ctx: typer.Context,
    group: Annotated[
        str | None,
        typer.Option(
            help="Consumer group; replicas sharing it share the partitions "
            "[default: <topic prefix>workflows]"
        ),
    ] = None,
    instance: Annotated[
        str | None,
        typer.Option(help="Name of this replica in events and logs [default: host-pid]"),
    ] = None,
    snapshot_every: Annotated[
        int, typer.Option(min=1, help="Write a workflow's snapshot after this many events.")
    ] = 100,
    grace_seconds: Annotated[
        float,
        typer.Option(min=0, help="Keep a finished workflow's snapshot this long, then delete it."),
    ] = 3600,
    transactional: Annotated[
        bool | None,
        typer.Option(
            "--transactional/--no-transactional",
            help="Exactly-once with Kafka transactions [default: if the broker has them]",
            show_default=False,
        ),
    ] = None,
    json_logs: JsonLogs = False,
    metrics_port: MetricsPort = 0,
) -> None:
    """Run the Workflow Manager: plans, commands and task results in; history, snapshots and
    ready tasks out (the Agent Manager, 'mesh run agents', assigns them).

    Example: mesh run workflows --snapshot-every 100
    """
    settings = settings_of(ctx)

    async def run(stop: asyncio.Event) -> None:  # a fresh manager each run (faults rerun it)
        manager = WorkflowManager(
            settings,
            group_id=group or settings.group("workflows"),
            instance=instance,
            snapshot_every=snapshot_every,
            finished_grace_seconds=grace_seconds,
            transactional=transactional,
        )
        await manager.run(stop)

    serve(
        ctx,
        "workflows",
        run,
        instance=instance,
        json_logs=json_logs,
        metrics_port=metrics_port,
    )


@app.command()
def planner(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Option(help="Consumer group on requests.")] = None,
    instance: Annotated[str | None, typer.Option(help="Name of this replica.")] = None,
    json_logs: JsonLogs = False,
    metrics_port: MetricsPort = 0,
) -> None:
    """Run the Task Planner: requests in, PlanCreated or PlanRejected out.

    Example: mesh run planner
    """
    settings = settings_of(ctx)
    from mesh.planner.runtime import run_planner

    group_id = group or settings.group("planner")
    serve(
        ctx,
        "planner",
        lambda stop: run_planner(settings, stop, group_id=group_id, instance=instance),
        instance=instance,
        json_logs=json_logs,
        metrics_port=metrics_port,
    )


@app.command()
def agents(
    ctx: typer.Context,
    strategy: Annotated[
        Literal["least_loaded", "power_of_two"], typer.Option(help="Load balancing strategy.")
    ] = "least_loaded",
    missed_heartbeats: Annotated[
        int | None, typer.Option(min=1, help="Missed heartbeats before an agent is unhealthy.")
    ] = None,
    instance: Annotated[str | None, typer.Option(help="Name of this replica.")] = None,
    transactional: Annotated[
        bool | None,
        typer.Option(
            "--transactional/--no-transactional",
            help="Exactly-once with Kafka transactions [default: if the broker has them]",
            show_default=False,
        ),
    ] = None,
    templates: Annotated[
        list[Path] | None,
        typer.Option(
            "--templates",
            help="Agent template YAML file or directory (repeatable) "
            "[default: agents/templates.yaml if it exists]",
        ),
    ] = None,
    lifecycle: Annotated[
        bool,
        typer.Option(
            "--lifecycle/--no-lifecycle",
            help="Answer 'mesh agents spawn/terminate' by starting and stopping agent "
            "processes on this host.",
        ),
    ] = True,
    max_restarts: Annotated[
        int, typer.Option(min=0, help="Restarts of a crashed agent allowed per window.")
    ] = 5,
    restart_window: Annotated[
        float, typer.Option(min=1, help="Seconds of the restart window.")
    ] = 60.0,
    json_logs: JsonLogs = False,
    metrics_port: MetricsPort = 0,
) -> None:
    """Run the Agent Manager: matches ready tasks to healthy agents, reassigns dead agents'
    work, and spawns, restarts and terminates local agents from templates.

    Example: mesh run agents --strategy power_of_two --templates agents/templates.yaml
    """
    settings = settings_of(ctx)
    from mesh.agentmanager.runtime import load_templates, run_agent_manager
    from mesh.supervisor import RestartPolicy

    load_templates(templates or ())  # a bad template file fails here, in one line
    restart = RestartPolicy(max_restarts=max_restarts, window=restart_window)
    serve(
        ctx,
        "agent-manager",
        lambda stop: run_agent_manager(
            settings,
            stop,
            strategy=strategy,
            missed_heartbeats=missed_heartbeats,
            transactional=transactional,
            instance=instance,
            templates=templates or (),
            lifecycle=lifecycle,
            restart=restart,
        ),
        instance=instance,
        json_logs=json_logs,
        metrics_port=metrics_port,
    )


@app.command()
def resources(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Option(help="Consumer group of the allocator.")] = None,
    instance: Annotated[str | None, typer.Option(help="Name of this replica.")] = None,
    consume_ready: Annotated[
        bool | None,
        typer.Option(
            "--consume-ready/--no-consume-ready",
            help="Also allocate for every TaskReady on tasks.ready [default: when the resource "
            "gate is on, MESH_RESOURCE_GATE or mesh --resource-gate]",
            show_default=False,
        ),
    ] = None,
    json_logs: JsonLogs = False,
    metrics_port: MetricsPort = 0,
) -> None:
    """Run the Resource Allocator: requests in, allocations, queue and denials out; the ledger
    lives in the compacted resources topic.

    Example: mesh run resources
    """
    settings = settings_of(ctx)
    from mesh.resources.runtime import run_resources

    group_id = group or settings.group("resources")
    serve(
        ctx,
        "resources",
        lambda stop: run_resources(
            settings, stop, group_id=group_id, instance=instance, consume_ready=consume_ready
        ),
        instance=instance,
        json_logs=json_logs,
        metrics_port=metrics_port,
    )
