"""The console as an ASGI app (Starlette): pages, a JSON API and server-sent event streams.

Pages are one HTML shell and a script of our own (``static/``) that reads the API; the DAG is
laid out and drawn as SVG here, so the browser needs no third-party code. Streams send each
change with its Kafka position as the event id, and resume after ``Last-Event-ID``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mesh.console import _data
from mesh.console._auth import Gate
from mesh.console._layout import LayoutCache
from mesh.console._streams import (
    Message,
    build_index,
    follow_workflow,
    follow_workflows,
    parse_vector,
    parse_workflow_position,
    vector,
)
from mesh.errors import BrokerError, ConfigError, MeshError, UnknownWorkflow
from mesh.kafka.clients import stop_clients
from mesh.settings import Settings

log = structlog.get_logger("mesh.console")

STATIC = resources.files("mesh.console") / "static"
PAGES = ("workflows", "workflow", "agents", "resources", "dead-letters", "groups")
RETRY_MS = 1_000
"""How soon a browser reconnects a dropped stream."""


def sse(message: Message | None) -> bytes:
    """One server-sent event (a comment for None: keeps the connection and finds a gone client)."""
    if message is None:
        return b": keepalive\n\n"
    lines = []
    if message.id is not None:
        lines.append(f"id: {message.id}")
    lines.append(f"event: {message.event}")
    lines.append("data: " + json.dumps(message.data, separators=(",", ":"), default=str))
    return ("\n".join(lines) + "\n\n").encode()


def create_app(settings: Settings, *, token: str | None = None) -> Starlette:
    """The console for the mesh that ``settings`` points at."""
    workflows = _data.Workflows(settings, LayoutCache())
    controls = _data.Controls(settings)
    shell = (STATIC / "index.html").read_text()

    def page(name: str, **data: str) -> HTMLResponse:
        attrs = " ".join(f'data-{k}="{_escape(v)}"' for k, v in data.items())
        body = shell.replace("<body>", f'<body data-page="{name}" {attrs}>', 1)
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    async def home(_: Request) -> Response:
        return RedirectResponse("/workflows", status_code=307)

    async def listing(request: Request) -> Response:
        name = request.url.path.strip("/")
        return page(name)

    async def workflow_page(request: Request) -> Response:
        return page("workflow", workflow=request.path_params["workflow_id"])

    async def api_workflows(_: Request) -> Response:
        index, consumer = await build_index(settings)
        await stop_clients(consumer)
        now = datetime.now(UTC)
        rows = [r for w in index.rows if (r := index.row(w, now)) is not None]
        return JSONResponse({"rows": rows, "after": vector(index.positions)})

    async def api_workflows_stream(request: Request) -> Response:
        given = request.headers.get("last-event-id") or request.query_params.get("after")
        after = parse_vector(given) if given else None
        return _stream(follow_workflows(settings, after=after))

    async def api_costs(_: Request) -> Response:
        return JSONResponse({"costs": await _data.costs(settings)})

    async def api_workflow(request: Request) -> Response:
        return JSONResponse(await workflows.view(request.path_params["workflow_id"]))

    async def api_dag(request: Request) -> Response:
        svg = await workflows.svg(request.path_params["workflow_id"])
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    async def api_history(request: Request) -> Response:
        return JSONResponse(await workflows.history(request.path_params["workflow_id"]))

    async def api_workflow_stream(request: Request) -> Response:
        workflow_id = request.path_params["workflow_id"]
        topic = settings.topic("workflow.events")
        given = request.headers.get("last-event-id")
        if given:
            after = parse_workflow_position(given, topic)
        else:
            after = _int(request.query_params.get("after", "-1"), "after")
        return _stream(follow_workflow(settings, workflow_id, after=after))

    async def api_task(request: Request) -> Response:
        full = request.query_params.get("full") in ("1", "true")
        return JSONResponse(
            await workflows.task(
                request.path_params["workflow_id"], request.path_params["task_id"], full=full
            )
        )

    async def api_replay(request: Request) -> Response:
        event = _int(request.query_params.get("event", ""), "event")
        return JSONResponse(await workflows.replay(request.path_params["workflow_id"], event))

    async def api_control(request: Request) -> Response:
        body = await _json_object(request)
        payload = body.get("payload") or {}
        if not isinstance(payload, dict):
            raise ConfigError("payload must be a JSON object")
        answer = await controls.run(
            str(body.get("action", "")),
            request.path_params["workflow_id"],
            task_id=_text(body.get("task_id")),
            name=_text(body.get("name")),
            payload=payload,
            reason=str(body.get("reason") or ""),
        )
        log.info("control", action=body.get("action"), ok=answer["ok"])
        return JSONResponse({"action": body.get("action"), **answer})

    async def api_agents(_: Request) -> Response:
        return JSONResponse(await _data.agents(settings))

    async def api_resources(_: Request) -> Response:
        return JSONResponse(await _data.resources(settings))

    async def api_letters(request: Request) -> Response:
        return JSONResponse(await _data.dead_letters(settings, request.query_params.get("filter")))

    async def api_letter(request: Request) -> Response:
        return JSONResponse(await _data.dead_letter(settings, request.path_params["position"]))

    async def api_redrive(request: Request) -> Response:
        body = await _json_object(request)
        where = _text(body.get("filter"))
        dry_run = body.get("dry_run", True) is not False
        return JSONResponse(await _data.redrive_letters(settings, where, dry_run))

    async def api_groups(_: Request) -> Response:
        return JSONResponse(await _data.groups(settings))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await controls.close()

    routes = [
        Route("/", home),
        *(Route(f"/{name}", listing) for name in PAGES if name != "workflow"),
        Route("/workflows/{workflow_id}", workflow_page),
        Route("/api/workflows", api_workflows),
        Route("/api/workflows/stream", api_workflows_stream),
        Route("/api/costs", api_costs),
        Route("/api/workflows/{workflow_id}", api_workflow),
        Route("/api/workflows/{workflow_id}/dag.svg", api_dag),
        Route("/api/workflows/{workflow_id}/history", api_history),
        Route("/api/workflows/{workflow_id}/stream", api_workflow_stream),
        Route("/api/workflows/{workflow_id}/tasks/{task_id}", api_task),
        Route("/api/workflows/{workflow_id}/replay", api_replay),
        Route("/api/workflows/{workflow_id}/control", api_control, methods=["POST"]),
        Route("/api/agents", api_agents),
        Route("/api/resources", api_resources),
        Route("/api/dead-letters", api_letters),
        Route("/api/dead-letters/redrive", api_redrive, methods=["POST"]),
        Route("/api/dead-letters/{position}", api_letter),
        Route("/api/groups", api_groups),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Gate, token=token)],
        exception_handlers={MeshError: _mesh_error},
        lifespan=lifespan,
    )


def _stream(messages: AsyncIterator[Message | None]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield f"retry: {RETRY_MS}\n\n".encode()
        try:
            async for message in messages:
                yield sse(message)
        except MeshError as exc:  # the browser reconnects after RETRY_MS and resumes
            yield sse(Message("problem", None, {"error": str(exc)}))
        finally:
            aclose = getattr(messages, "aclose", None)
            if aclose is not None:
                await aclose()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _mesh_error(_: Request, exc: Exception) -> Response:
    status = 500
    if isinstance(exc, UnknownWorkflow):
        status = 404
    elif isinstance(exc, ConfigError):
        status = 400
    elif isinstance(exc, BrokerError):
        status = 502
    return JSONResponse({"error": str(exc)}, status_code=status)


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {text!r}") from None


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ConfigError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ConfigError("the request body must be a JSON object")
    return body


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
