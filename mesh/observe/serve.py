"""``/metrics`` over HTTP for one process, on loopback unless told otherwise."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import start_http_server

from mesh.errors import ConfigError
from mesh.observe.metrics import REGISTRY

ENV_PORT = "MESH_METRICS_PORT"
ENV_HOST = "MESH_METRICS_HOST"


def serve_metrics(port: int, host: str | None = None) -> Any:
    """Serve mesh's registry on ``http://host:port/metrics`` from a daemon thread; returns the
    server (``shutdown()`` stops it). A port in use is a ``ConfigError`` naming it."""
    host = host or os.environ.get(ENV_HOST) or "127.0.0.1"
    try:
        server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
    return server


__all__ = ["ENV_HOST", "ENV_PORT", "serve_metrics"]
