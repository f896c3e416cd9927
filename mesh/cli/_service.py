"""How every long-running command runs (``mesh run …``, ``mesh agent run``): one place for signals,
logging and exit codes, so components and agents start, log and stop alike.

- The first SIGTERM or SIGINT sets ``stop``: the service drains and stops, the command exits 0.
- A second SIGINT (Ctrl-C again) cancels at once; the command exits 130.
- A broker fault once the service is up (a broker restart, a leader or coordinator moving) is
  ridden out: ``main`` runs again with fresh clients after a capped back-off
  (:func:`mesh.kafka.faults.ride_out`), so each ``main`` call must build its component anew.
- A repeated SIGTERM stays graceful: a Ctrl-C reaches every process of the terminal's
  foreground group (services started together by a script) and their supervisor may then send
  its own SIGTERM, which must not cut the shutdown short (a supervisor that wants it shorter
  sends SIGKILL).
- Logs are structlog lines on stderr, JSON with ``--json`` or when stderr is no terminal; at INFO
  unless ``--log-level`` is given, because a long-running process that says nothing cannot be
  operated.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer

from mesh.cli._app import settings_of
from mesh.errors import BrokerUnavailable
from mesh.gctuning import GC_THRESHOLDS, tune_gc
from mesh.kafka.connection import diagnose_connect_failure
from mesh.kafka.faults import ride_out
from mesh.log import configure_logging, get_logger
from mesh.observe.serve import ENV_PORT, serve_metrics

Main = Callable[[asyncio.Event], Awaitable[None]]
"""A service: runs until the event is set, then shuts down and returns."""

JsonLogs = Annotated[
    bool,
    typer.Option(
        "--json", help="Log one JSON object per line (the default when stderr is no terminal)."
    ),
]
"""The ``--json`` flag of every service command."""

MetricsPort = Annotated[
    int,
    typer.Option(
        "--metrics-port",
        envvar=ENV_PORT,
        min=0,
        max=65535,
        help="Serve Prometheus metrics on http://127.0.0.1:PORT/metrics (MESH_METRICS_HOST "
        "binds elsewhere); 0: none.",
    ),
]
"""The ``--metrics-port`` option of every service command (off unless given)."""

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve(
    ctx: typer.Context,
    component: str,
    main: Main,
    *,
    instance: str | None = None,
    json_logs: bool = False,
    metrics_port: int = 0,
) -> None:
    """Configure logging for ``component``, serve its metrics if ``metrics_port`` is given, then
    run ``main(stop)`` until it returns.

    Build whatever logs inside ``main`` (or after this call has configured logging): a
    structlog logger used earlier keeps the configuration it was first used with.
    """
    _service_logging(ctx, component, instance, json_logs)
    settings = settings_of(ctx)
    # Not inherited by what this process starts (agents a manager spawns): one port, one server.
    os.environ.pop(ENV_PORT, None)
    if metrics_port:
        server = serve_metrics(metrics_port)
        host, port = server.server_address[:2]
        get_logger("mesh.metrics").info("metrics served", url=f"http://{host}:{port}/metrics")

    async def diagnosed(stop: asyncio.Event) -> None:
        try:
            await ride_out(main, stop, component=component)
        except BrokerUnavailable as exc:  # a refused login looks like a broker that is down
            raise await diagnose_connect_failure(settings, exc) from exc.__cause__

    try:
        asyncio.run(_until_signalled(diagnosed))
    except asyncio.CancelledError:
        raise typer.Exit(130) from None
    finally:
        # Shut down already: a late SIGTERM (a supervisor repeating itself) must not turn the
        # exit into "killed by signal" while the interpreter finishes.
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


async def _until_signalled(main: Main) -> None:
    """Run ``main(stop)``; SIGTERM or SIGINT sets ``stop``, a second SIGINT cancels at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    interrupts = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal interrupts
        if sig is signal.SIGINT:
            interrupts += 1
        if interrupts > 1 and task is not None:
            task.cancel()
        stop.set()

    # Left in place until the loop closes: a signal during asyncio.run's own clean-up (the
    # default executor, async generators) must not kill the process either.
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    tune_gc()
    await main(stop)


def _service_logging(
    ctx: typer.Context, component: str, instance: str | None, json_logs: bool
) -> None:
    """Bind the component and instance to every line; INFO unless ``--log-level`` was given."""
    root = ctx.find_root()
    source = root.get_parameter_source("log_level")
    given = source is not None and source.name != "DEFAULT"
    level = str(root.params.get("log_level") or "INFO") if given else "INFO"
    configure_logging(
        component, instance=instance, json=True if json_logs else None, level=level.upper()
    )


__all__ = ["GC_THRESHOLDS", "JsonLogs", "Main", "MetricsPort", "serve", "tune_gc"]
