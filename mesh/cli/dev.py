"""``mesh dev`` — the whole mesh on this machine, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from mesh.cli._app import bootstrap_given, mesh_command, settings_of
from mesh.cli._output import dumps
from mesh.dev import DevMesh, DevOptions
from mesh.errors import MeshError
from mesh.settings import Settings
from mesh.supervisor import Child

_LEVEL_STYLES = {"error": "red", "warning": "yellow", "critical": "bold red"}
_QUIET_KEYS = {"event", "level", "timestamp", "component", "instance", "logger"}


def dev(
    ctx: typer.Context,
    bootstrap_servers: Annotated[
        str | None,
        typer.Option(
            "--bootstrap-servers",
            "-b",
            help="Run on this Kafka cluster instead of starting the embedded broker (the root "
            "option 'mesh --bootstrap-servers X dev' does the same).",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port of the embedded broker [default: 9092, or the next free one]"),
    ] = None,
    shell_agents: Annotated[int, typer.Option(help="Demo command agents (capability shell).")] = 2,
    python_agents: Annotated[int, typer.Option(help="Demo Python agents.")] = 1,
    workshop_agents: Annotated[
        int,
        typer.Option(
            help="Workshop agents: design, code, test and review as a real pipeline (files, "
            "ruff format, pytest, git commit) on a scratch repository per workflow."
        ),
    ] = 1,
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
    metrics_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="Each component and demo agent serves Prometheus metrics on 127.0.0.1, on its "
            "own port from this one up (printed when ready); 0: no metrics.",
        ),
    ] = 9464,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the ready line as one JSON object, and the processes' logs as JSON lines.",
        ),
    ] = False,
) -> None:
    """Start broker, topics, components and demo agents; print 'mesh ready'; Ctrl-C stops all.

    The embedded broker listens on 127.0.0.1:9092 (or the next free port) and is recorded, so
    every mesh command in any terminal finds it with no MESH_BOOTSTRAP_SERVERS.

    Example: mesh dev   (then, in another terminal: mesh submit examples/diamond.yaml --wait)
    """
    settings = settings_of(ctx)
    if bootstrap_servers is None and bootstrap_given(ctx):
        bootstrap_servers = settings.bootstrap_servers
    options = DevOptions(
        bootstrap=bootstrap_servers,
        port=port,
        shell_agents=shell_agents,
        python_agents=python_agents,
        workshop_agents=workshop_agents,
        topics_dir=topics_dir,
        resources=resources,
        ui_port=ui_port or None,
        metrics_port=metrics_port or None,
    )
    asyncio.run(_run(settings, options, as_json))


async def _run(settings: Settings, options: DevOptions, as_json: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP too (the terminal closed): the children and the broker are in process groups of
    # their own, so only this process can stop them, and it must not just die.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    async with DevMesh(settings, options, on_log=_render_json if as_json else _render) as mesh:
        bootstrap = mesh.settings.bootstrap_servers
        agents = options.shell_agents + options.python_agents + options.workshop_agents
        if as_json:
            ready = {
                "status": "ready",
                "bootstrap_servers": bootstrap,
                "embedded": mesh.broker is not None,
                "agents": agents,
                "console": mesh.console_url,
                "metrics": _metrics_urls(mesh.metrics_ports),
                "notes": mesh.notes,
            }
            _out.out(json.dumps(ready), highlight=False)  # one line: scripts wait for it
        else:
            where = "embedded broker" if mesh.broker is not None else "bootstrap"
            _out.print(
                f"mesh ready  ({where} {bootstrap}; {agents} agents registered)",
                style="bold green",
                highlight=False,
            )
            for note in mesh.notes:
                _out.print(f"  {note}", style="yellow", highlight=False)
            if mesh.broker is not None:  # recorded: other terminals find it by themselves
                _out.print(
                    f"  in another terminal: {mesh_command()} submit examples/diamond.yaml --wait",
                    highlight=False,
                )
            else:
                _out.print(f"  export MESH_BOOTSTRAP_SERVERS={bootstrap}", highlight=False)
            if mesh.console_url:
                _out.print(f"  console {mesh.console_url}", highlight=False)
            for name, url in _metrics_urls(mesh.metrics_ports).items():
                _out.print(f"  metrics {name:<14} {url}", highlight=False)
        dead = await mesh.wait(stop)
        if dead is not None:
            raise MeshError(f"process {dead} exited; stopping the mesh")
        with contextlib.suppress(OSError):  # a closed terminal (a broken pipe is handled)
            _out.print("stopping…", highlight=False)


def _metrics_urls(ports: dict[str, int]) -> dict[str, str]:
    return {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}


class _Console(Console):
    """A console that falls silent when its reader is gone, where rich's default exits the
    process: after ``mesh dev | tee log`` got a Ctrl-C, tee is gone but the mesh still has to
    be stopped."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        # What is still buffered would fail again in the interpreter's last flush.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.file.fileno())
        os.close(devnull)


# soft_wrap: a line is never cut at the console's width (80 on a pipe), so `mesh dev > log`
# keeps every log line and the printed command whole, and a terminal wraps them itself.
_out = _Console(soft_wrap=True)
_err = _Console(stderr=True, soft_wrap=True)


def _render_json(child: Child, entry: dict[str, Any] | str) -> None:
    line = {"process": child.name, **(entry if isinstance(entry, dict) else {"event": entry})}
    _err.out(dumps(line), highlight=False)


def _render(child: Child, entry: dict[str, Any] | str) -> None:
    if isinstance(entry, str):
        _err.print(Text(f"{child.name:<10} {entry}"))
        return
    level = str(entry.get("level", "info"))
    extras = " ".join(f"{k}={v}" for k, v in entry.items() if k not in _QUIET_KEYS)
    line = Text(f"{child.name:<10} ", style="dim")
    line.append(str(entry.get("event", "")), style=_LEVEL_STYLES.get(level, "bold"))
    if extras:
        line.append(f" {extras}", style="dim")
    _err.print(line)
