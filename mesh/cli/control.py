"""``mesh pause|resume|cancel WORKFLOW_ID``, ``mesh retry WORKFLOW_ID TASK_ID`` and
``mesh signal WORKFLOW_ID NAME`` — control a running workflow."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mesh.cli._app import settings_of
from mesh.cli._client import with_client
from mesh.cli._output import print_json, say
from mesh.client import CommandKind
from mesh.errors import ConfigError

Reason = Annotated[str, typer.Option(help="Why, recorded in the workflow's history.")]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
Wait = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="Wait for the Workflow Manager's answer (--no-wait only publishes the command).",
    ),
]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for the answer.")]


def _send(
    ctx: typer.Context,
    kind: CommandKind,
    workflow_id: str,
    reason: str,
    as_json: bool,
    wait: bool,
    timeout: float,
    task_id: str | None = None,
) -> None:
    settings = settings_of(ctx)
    if not wait:
        event = with_client(
            settings, lambda c: c.send_command(kind, workflow_id, reason=reason, task_id=task_id)
        )
        if as_json:
            print_json(
                {"workflow_id": workflow_id, "command": event.type, "event_id": str(event.event_id)}
            )
        else:
            say(f"sent {event.type} for {workflow_id}")
        return
    answer = with_client(
        settings,
        lambda c: c.command(kind, workflow_id, reason=reason, task_id=task_id),
        timeout=timeout,
    )
    if as_json:
        print_json({"command": kind, **answer})
    else:
        say(f"{kind}: workflow {workflow_id} is {answer.get('status')}")


def pause(
    ctx: typer.Context,
    workflow_id: str,
    reason: Reason = "",
    as_json: Json = False,
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """Stop scheduling new tasks; running tasks finish.  Example: mesh pause wf-0193…"""
    _send(ctx, "pause", workflow_id, reason, as_json, wait, timeout)


def resume(
    ctx: typer.Context,
    workflow_id: str,
    reason: Reason = "",
    as_json: Json = False,
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """Schedule a paused workflow's ready tasks again.  Example: mesh resume wf-0193…"""
    _send(ctx, "resume", workflow_id, reason, as_json, wait, timeout)


def cancel(
    ctx: typer.Context,
    workflow_id: str,
    reason: Reason = "",
    as_json: Json = False,
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """Cancel the workflow; running tasks are told to stop.  Example: mesh cancel wf-0193…"""
    _send(ctx, "cancel", workflow_id, reason, as_json, wait, timeout)


def retry(
    ctx: typer.Context,
    workflow_id: str,
    task_id: str,
    reason: Reason = "",
    as_json: Json = False,
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """Run a failed task again, even if its policy is spent.  Example: mesh retry wf-0193… B"""
    _send(ctx, "retry", workflow_id, reason, as_json, wait, timeout, task_id=task_id)


def signal(
    ctx: typer.Context,
    workflow_id: str,
    name: str,
    payload: Annotated[str, typer.Option(help="JSON object handed to the waiting tasks.")] = "{}",
    as_json: Json = False,
) -> None:
    """Publish a named event for event-driven tasks.  Example: mesh signal wf-0193… approved"""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--payload is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ConfigError("--payload must be a JSON object")
    event = with_client(settings_of(ctx), lambda c: c.signal(workflow_id, name, data))
    if as_json:
        print_json({"workflow_id": workflow_id, "name": name, "event_id": str(event.event_id)})
    else:
        say(f"sent external event {name!r} to {workflow_id}")
