"""``mesh dev`` — the whole mesh on this machine, until Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from mesh.cli._app import settings_of
from mesh.cli._output import err_console, say
from mesh.dev import DevMesh, DevOptions
from mesh.errors import MeshError
from mesh.settings import Settings
from mesh.supervisor import Child

_LEVEL_STYLES = {"error": "red", "warning": "yellow", "critical": "bold red"}
_QUIET_KEYS = {"event", "level", "timestamp", "component", "instance", "logger"}


def dev(
    ctx: typer.Context,
    bootstrap: Annotated[
        str | None,
        typer.Option(help="Use this Kafka cluster instead of starting the embedded broker."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port of the embedded broker.")] = None,
    shell_agents: Annotated[int, typer.Option(help="Demo command agents (capability shell).")] = 2,
    python_agents: Annotated[int, typer.Option(help="Demo Python agents.")] = 1,
    topics_dir: Annotated[Path, typer.Option(help="Topic declarations.")] = Path("topics"),
    resources: Annotated[
        bool,
        typer.Option(
            "--resources/--no-resources",
            help="Run the Resource Allocator and dispatch a task only once its resources are "
            "allocated.",
        ),
    ] = True,
    ui_port: Annotated[
        int, typer.Option(help="Port of the console (mesh ui) on 127.0.0.1; 0: no console.")
    ] = 8484,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the ready line as one JSON object, and the processes' logs as JSON lines.",
        ),
    ] = False,
) -> None:
    """Start broker, topics, components and demo agents; print 'mesh ready'; Ctrl-C stops all.

    Example: mesh dev   (then, in another terminal: mesh submit examples/diamond.yaml --wait)
    """
    options = DevOptions(
        bootstrap=bootstrap,
        port=port,
        shell_agents=shell_agents,
        python_agents=python_agents,
        topics_dir=topics_dir,
        resources=resources,
        ui_port=ui_port or None,
    )
    asyncio.run(_run(settings_of(ctx), options, as_json))


async def _run(settings: Settings, options: DevOptions, as_json: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with DevMesh(settings, options, on_log=_render_json if as_json else _render) as mesh:
        if as_json:
            ready = {
                "status": "ready",
                "bootstrap_servers": mesh.settings.bootstrap_servers,
                "console": mesh.console_url,
            }
            print(json.dumps(ready), flush=True)  # one line: scripts wait for it
        else:
            say(f"mesh ready  (bootstrap {mesh.settings.bootstrap_servers})", "bold green")
            say(f"  export MESH_BOOTSTRAP_SERVERS={mesh.settings.bootstrap_servers}")
            if mesh.console_url:
                say(f"  console {mesh.console_url}")
        dead = await mesh.wait(stop)
        if dead is not None:
            raise MeshError(f"process {dead} exited; stopping the mesh")
        say("stopping…")


def _render_json(child: Child, entry: dict[str, Any] | str) -> None:
    line = {"process": child.name, **(entry if isinstance(entry, dict) else {"event": entry})}
    print(json.dumps(line, default=str), file=sys.stderr, flush=True)


def _render(child: Child, entry: dict[str, Any] | str) -> None:
    if isinstance(entry, str):
        err_console.print(Text(f"{child.name:<10} {entry}"))
        return
    level = str(entry.get("level", "info"))
    extras = " ".join(f"{k}={v}" for k, v in entry.items() if k not in _QUIET_KEYS)
    line = Text(f"{child.name:<10} ", style="dim")
    line.append(str(entry.get("event", "")), style=_LEVEL_STYLES.get(level, "bold"))
    if extras:
        line.append(f" {extras}", style="dim")
    err_console.print(line)
