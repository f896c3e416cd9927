"""``mesh broker start|status|stop`` — the embedded broker for a laptop."""

from __future__ import annotations

import signal
import time
from dataclasses import asdict
from typing import Annotated

import typer

from mesh.broker.embedded import (
    EmbeddedBroker,
    EmbeddedBrokerState,
    forget_broker,
    record_broker,
)
from mesh.cli._app import settings_of
from mesh.cli._output import print_json, say
from mesh.errors import EmbeddedBrokerError

app = typer.Typer(
    help="Run the embedded Kafka-compatible broker (Tansu, in memory, no Docker, no JVM).\n\n"
    "Example: mesh broker start --port 9092 && mesh topics apply",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]


def _describe(state: EmbeddedBrokerState, running: bool) -> dict[str, object]:
    return {**asdict(state), "bootstrap_servers": state.bootstrap_servers, "running": running}


@app.command()
def start(
    ctx: typer.Context,
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one).")
    ] = None,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Stay attached; Ctrl-C stops the broker.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Start the broker and return once it answers a metadata request.

    Example: mesh broker start --port 9092
    """
    state_dir = settings_of(ctx).state_dir
    if not foreground:
        state = EmbeddedBroker.start_background(state_dir, port)
        if as_json:
            print_json(_describe(state, True))
        else:
            say(f"embedded broker ready on {state.bootstrap_servers} (pid {state.pid})", "green")
            say(f"export MESH_BOOTSTRAP_SERVERS={state.bootstrap_servers}")
        return
    _run_foreground(state_dir, port, as_json)


def _run_foreground(state_dir: object, port: int | None, as_json: bool) -> None:
    from pathlib import Path

    assert isinstance(state_dir, Path)
    existing, running = EmbeddedBroker.status(state_dir)
    if existing is not None and running:
        raise EmbeddedBrokerError(
            f"an embedded broker is already running on {existing.describe()}; "
            "stop it with 'mesh broker stop'"
        )
    broker = EmbeddedBroker(port)
    # SIGTERM (e.g. from `mesh broker stop`) ends the wait like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with broker:
        assert broker.pid is not None
        state = EmbeddedBrokerState(
            pid=broker.pid, port=broker.port, log_file="", started_at=time.time()
        )
        record_broker(state_dir, state)
        try:  # an interrupt right after the ready line (still flushing it) is a stop too
            if as_json:
                print_json(_describe(state, True))
            else:
                ready = f"embedded broker ready on {broker.bootstrap_servers}; Ctrl-C stops it"
                say(ready, "green")
            code = broker.wait()
        except KeyboardInterrupt:
            code = 0
        finally:
            forget_broker(state_dir, state.pid)
    if code not in (0, -signal.SIGTERM):
        raise EmbeddedBrokerError(f"the embedded broker exited with status {code}")


@app.command()
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Show whether the recorded broker runs; exit 1 if it does not.

    Example: mesh broker status --json
    """
    state, running = EmbeddedBroker.status(settings_of(ctx).state_dir)
    if as_json:
        print_json(_describe(state, running) if state else {"running": False})
    elif state is None:
        say("no embedded broker is recorded", "yellow")
    else:
        word = "running" if running else "not answering"
        say(f"embedded broker {word} on {state.describe()}")
        if running and state.console:
            say(f"  console {state.console}")
    if not running:
        raise typer.Exit(1)


@app.command()
def stop(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Stop the recorded broker (SIGTERM, then SIGKILL).

    Example: mesh broker stop
    """
    state = EmbeddedBroker.stop_background(settings_of(ctx).state_dir)
    if as_json:
        print_json({**_describe(state, False), "stopped": True})
    else:
        say(f"embedded broker on {state.bootstrap_servers} stopped")
