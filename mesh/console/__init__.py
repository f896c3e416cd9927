"""The mesh console: a live web view of workflows, their DAG, tasks, agents and dead letters.

Layers, each importing only those above it::

    _settings  where it listens, its token (``MESH_UI_*``)                   (pure)
    _layout    a plan's DAG in layers (networkx), drawn once as SVG            (pure)
    _views     states, tasks, histories and attempts as page data             (pure)
    _streams   live streams whose ids are Kafka positions                     (Kafka)
    _data      what pages read and controls do, via the mesh's public APIs    (Kafka)
    _auth      token and cross-site checks                                    (ASGI)
    _app       pages, JSON API, server-sent events                            (ASGI)
    _serve     uvicorn on a socket of our own                                 (ASGI)
"""

from mesh.console._app import create_app
from mesh.console._layout import Layout, LayoutCache, layout, render_svg
from mesh.console._serve import serve, url_of
from mesh.console._settings import DEFAULT_PORT, ConsoleSettings, check_bind, is_loopback
from mesh.console._streams import Message, follow_workflow, follow_workflows

__all__ = [
    "DEFAULT_PORT",
    "ConsoleSettings",
    "Layout",
    "LayoutCache",
    "Message",
    "check_bind",
    "create_app",
    "follow_workflow",
    "follow_workflows",
    "is_loopback",
    "layout",
    "render_svg",
    "serve",
    "url_of",
]
