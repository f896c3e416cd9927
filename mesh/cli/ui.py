"""``mesh ui`` — the console: a live web view of the mesh (workflows, DAGs, agents, dead
letters …) until Ctrl-C."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from mesh.cli._app import settings_of
from mesh.cli._output import say
from mesh.console import DEFAULT_PORT, ConsoleSettings, serve
from mesh.errors import ConfigError


def ui(
    ctx: typer.Context,
    port: Annotated[
        int | None,
        typer.Option(help=f"Port to listen on (0: any free one) [default: {DEFAULT_PORT}]."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on [default: 127.0.0.1]; any other than loopback needs "
            "MESH_UI_TOKEN."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the ready line as one JSON object.")
    ] = False,
) -> None:
    """Serve the console: workflows and their live DAG, history, replay and controls; agents,
    resources, dead letters and consumer-group lag.

    With MESH_UI_TOKEN set every request must carry it (open the console once with
    ?token=<token>, or send 'Authorization: Bearer <token>').

    Example: mesh ui --port 8484   (then open http://127.0.0.1:8484/)
    """
    overrides: dict[str, Any] = {"port": port, "host": host}
    try:
        console = ConsoleSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"invalid console setting {first['loc'][0]}: {first['msg']}") from exc
    settings = settings_of(ctx)

    def ready(url: str) -> None:
        if as_json:  # one line (scripts and mesh dev wait for it)
            print(json.dumps({"event": "console ready", "status": "ready", "url": url}), flush=True)
        else:
            say(f"console ready  {url}", "bold green")
            if console.token is not None:
                say("  open it once with ?token=<MESH_UI_TOKEN> (then a cookie carries it)")

    asyncio.run(serve(settings, console, ready=ready))
