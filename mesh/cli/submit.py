"""``mesh submit FILE [--wait] [--json]`` — publish a workflow and, optionally, follow it live."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from mesh.cli._app import settings_of
from mesh.cli._output import console, print_json, say
from mesh.client import Submitted, follow_history, load_plan_file, submit_plan
from mesh.settings import Settings
from mesh.workflows import WorkflowState, evolve

_STYLES = {
    "succeeded": "green",
    "running": "cyan",
    "assigned": "cyan",
    "ready": "blue",
    "retrying": "yellow",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "magenta",
    "skipped": "dim",
    "completed": "green",
    "paused": "yellow",
}


def submit(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="Plan file (YAML or JSON); '-' reads stdin.")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the workflow until it ends.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    workflow_id: Annotated[
        str | None, typer.Option("--workflow-id", help="Id for the workflow [default: new]")
    ] = None,
    idle_timeout: Annotated[
        float, typer.Option(help="With --wait: give up after this many seconds without progress.")
    ] = 300.0,
) -> None:
    """Publish a workflow whose plan is given in FILE; with --wait, exit 0 only if it completed.

    Example: mesh submit examples/diamond.yaml --wait
    """
    settings = settings_of(ctx)
    text = sys.stdin.read() if file == "-" else None
    request = load_plan_file("stdin.yaml" if file == "-" else Path(file), text=text)
    if workflow_id is not None:
        request = dataclasses.replace(request, workflow_id=workflow_id)
    submitted = asyncio.run(submit_plan(settings, request))
    if not wait:
        if as_json:
            print_json({"workflow_id": submitted.workflow_id, "status": "submitted"})
        else:
            say(f"submitted workflow {submitted.workflow_id}")
        return
    state = asyncio.run(_follow(settings, submitted, as_json=as_json, idle_timeout=idle_timeout))
    if as_json:
        print_json(_summary(submitted.workflow_id, state))
    elif state is not None:
        say(f"workflow {state.workflow_id} {state.status}", _STYLES.get(state.status))
    if state is None or state.status != "completed":
        raise typer.Exit(1)


async def _follow(
    settings: Settings, submitted: Submitted, *, as_json: bool, idle_timeout: float
) -> WorkflowState | None:
    state: WorkflowState | None = None
    started = time.monotonic()
    live = (
        Live(console=console, refresh_per_second=8) if console.is_terminal and not as_json else None
    )
    if not as_json and live is None:
        say(f"submitted workflow {submitted.workflow_id}; following its history")
    with live if live is not None else contextlib.nullcontext():
        async for event in follow_history(
            settings, submitted.workflow_id, submitted.cursor, idle_timeout=idle_timeout
        ):
            state = evolve(state, event)
            if live is not None:
                live.update(_table(state, time.monotonic() - started))
            elif not as_json:
                task = getattr(event, "task_id", "")
                say(f"{event.occurred_at:%H:%M:%S} {event.type:<22} {task}")
    return state


def _table(state: WorkflowState, elapsed: float) -> Table:
    done = sum(1 for t in state.tasks.values() if t.is_final)
    table = Table(
        title=f"{state.workflow_id} — {state.status} — {done}/{len(state.tasks)} tasks — "
        f"{elapsed:.1f} s",
        header_style="bold",
    )
    for column in ("task", "status", "attempt", "agent"):
        table.add_column(column)
    for task in state.tasks.values():
        style = _STYLES.get(task.status)
        table.add_row(
            task.task_id,
            f"[{style}]{task.status}[/]" if style else task.status,
            str(task.attempt),
            task.agent_id or "",
        )
    return table


def _summary(workflow_id: str, state: WorkflowState | None) -> dict[str, Any]:
    if state is None:
        return {"workflow_id": workflow_id, "status": "unknown", "tasks": {}}
    return {
        "workflow_id": workflow_id,
        "status": state.status,
        "reason": state.reason,
        "sequence": state.sequence,
        "tasks": {
            task.task_id: {
                "status": task.status,
                "attempt": task.attempt,
                "agent_id": task.agent_id,
                "output": task.output,
                "error": task.error_message,
            }
            for task in state.tasks.values()
        },
    }
