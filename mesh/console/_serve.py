"""Serving the console with uvicorn on a socket we bind ourselves, so a busy port is one clear
error and ``--port 0`` reports the port it got."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import uvicorn

from mesh.console._app import create_app
from mesh.console._settings import ConsoleSettings, check_bind
from mesh.errors import ConfigError
from mesh.settings import Settings


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; ConfigError if it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104 - naming, not binding
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


async def serve(
    settings: Settings, console: ConsoleSettings, *, ready: Callable[[str], None]
) -> None:
    """Serve until interrupted; ``ready(url)`` once the socket listens."""
    check_bind(console)
    sock = bind(console.host, console.port)
    token = console.token.get_secret_value() if console.token is not None else None
    config = uvicorn.Config(
        create_app(settings, token=token),
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Streams never end by themselves: give them a moment, then close them.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                return
            await asyncio.sleep(0.02)
        ready(url_of(console.host, sock.getsockname()[1]))
        await task
    finally:
        if not task.done():
            server.should_exit = True
            await task
        sock.close()
