"""``mesh run …`` — a mesh component in the foreground.

It runs until SIGTERM or Ctrl-C, then shuts down cleanly and exits 0 (a second signal stops at
once). Logs are structlog lines on stderr (JSON when piped); unless ``--log-level`` is given it
logs at INFO, and the line ``workflows ready`` says it consumes (``mesh dev`` waits for it).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Literal

import structlog
import typer

from mesh.cli._app import settings_of
from mesh.log import configure_logging
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
    json_logs: Annotated[
        bool,
        typer.Option(
            "--json", help="Log one JSON object per line (the default when stderr is no terminal)."
        ),
    ] = False,
) -> None:
    """Run the Workflow Manager: plans, commands and task results in; history, snapshots and
    ready tasks out (the Agent Manager, 'mesh run agents', assigns them).

    Example: mesh run workflows --snapshot-every 100
    """
    settings = settings_of(ctx)
    _service_logging(ctx, "workflows", instance, json_logs)
    manager = WorkflowManager(
        settings,
        group_id=group or settings.group("workflows"),
        instance=instance,
        snapshot_every=snapshot_every,
        finished_grace_seconds=grace_seconds,
        transactional=transactional,
    )

    _serve(manager.run)


def _serve(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    try:
        asyncio.run(_until_signalled(main))
    except asyncio.CancelledError:
        raise typer.Exit(130) from None


async def _until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)``; the first SIGTERM/SIGINT sets ``stop``, a second one cancels."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await main(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _service_logging(
    ctx: typer.Context, component: str, instance: str | None, json_logs: bool = False
) -> None:
    """Bind the component and, unless ``--log-level`` was given, log at INFO: a long-running
    process that says nothing cannot be operated."""
    configure_logging(
        component,
        instance=instance,
        json=True if json_logs else None,
        level=str(ctx.find_root().params.get("log_level") or "WARNING").upper(),
    )
    source = ctx.find_root().get_parameter_source("log_level")
    if source is None or source.name == "DEFAULT":
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


@app.command()
def planner(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Option(help="Consumer group on requests.")] = None,
    instance: Annotated[str | None, typer.Option(help="Name of this replica.")] = None,
    json_logs: Annotated[
        bool,
        typer.Option(
            "--json", help="Log one JSON object per line (the default when stderr is no terminal)."
        ),
    ] = False,
) -> None:
    """Run the Task Planner: requests in, PlanCreated or PlanRejected out.

    Example: mesh run planner
    """
    settings = settings_of(ctx)
    _service_logging(ctx, "planner", instance, json_logs)
    from mesh.planner.runtime import run_planner

    group_id = group or settings.group("planner")
    _serve(lambda stop: run_planner(settings, stop, group_id=group_id, instance=instance))


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
    json_logs: Annotated[
        bool,
        typer.Option(
            "--json", help="Log one JSON object per line (the default when stderr is no terminal)."
        ),
    ] = False,
) -> None:
    """Run the Agent Manager: matches ready tasks to healthy agents, reassigns dead agents'
    work, and spawns, restarts and terminates local agents from templates.

    Example: mesh run agents --strategy power_of_two --templates agents/templates.yaml
    """
    settings = settings_of(ctx)
    _service_logging(ctx, "agent-manager", instance, json_logs)
    from mesh.agentmanager.runtime import load_templates, run_agent_manager
    from mesh.supervisor import RestartPolicy

    load_templates(templates or ())  # a bad template file fails here, in one line
    restart = RestartPolicy(max_restarts=max_restarts, window=restart_window)
    _serve(
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
        )
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
    json_logs: Annotated[
        bool,
        typer.Option(
            "--json", help="Log one JSON object per line (the default when stderr is no terminal)."
        ),
    ] = False,
) -> None:
    """Run the Resource Allocator: requests in, allocations, queue and denials out; the ledger
    lives in the compacted resources topic.

    Example: mesh run resources
    """
    settings = settings_of(ctx)
    _service_logging(ctx, "resources", instance, json_logs)
    from mesh.resources.runtime import run_resources

    group_id = group or settings.group("resources")
    _serve(
        lambda stop: run_resources(
            settings, stop, group_id=group_id, instance=instance, consume_ready=consume_ready
        )
    )
