"""``mesh submit [FILE | --type T --description D …] [--wait] [--json]`` — publish a request or a
workflow and, optionally, follow it live."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from mesh.cli._app import settings_of
from mesh.cli._client import with_client
from mesh.cli._output import console, print_json, say
from mesh.cli._workflow_view import STYLES
from mesh.client import Client, PlanRequest, WorkflowRun, load_plan_file
from mesh.errors import ConfigError, RequestRejected
from mesh.events import TaskRequest
from mesh.planner import is_request_document, read_document, request_from_document, workflow_id_for
from mesh.workflows import WorkflowState, evolve

PLAN_WAIT_SECONDS = 120.0
"""With --wait: how long a request waits for the planner's answer."""


def submit(
    ctx: typer.Context,
    file: Annotated[
        str | None,
        typer.Argument(help="Request or plan file (YAML or JSON); '-' reads stdin."),
    ] = None,
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
    task_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            help="Without FILE: the request type (feature, bugfix …).",
            rich_help_panel="Request from flags",
        ),
    ] = None,
    description: Annotated[
        str | None,
        typer.Option(
            help="Without FILE: what to do, in words.", rich_help_panel="Request from flags"
        ),
    ] = None,
    requirement: Annotated[
        list[str] | None,
        typer.Option(
            "--requirement",
            "-r",
            help="A requirement (repeat).",
            rich_help_panel="Request from flags",
        ),
    ] = None,
    constraint: Annotated[
        list[str] | None,
        typer.Option(
            "--constraint",
            "-c",
            help="NAME=VALUE, e.g. max_parallelism=2 (repeat).",
            rich_help_panel="Request from flags",
        ),
    ] = None,
    context: Annotated[
        list[str] | None,
        typer.Option(
            "--context",
            help="KEY=VALUE context for planning (repeat).",
            rich_help_panel="Request from flags",
        ),
    ] = None,
    priority: Annotated[
        str | None,
        typer.Option(help="low, normal, high or critical.", rich_help_panel="Request from flags"),
    ] = None,
    deadline: Annotated[
        str | None,
        typer.Option(
            help="ISO 8601 time or a duration from now (4h).", rich_help_panel="Request from flags"
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            help="Whose quota the work counts against.", rich_help_panel="Request from flags"
        ),
    ] = None,
    request_id: Annotated[
        str | None,
        typer.Option(
            "--id", help="Request id [default: new].", rich_help_panel="Request from flags"
        ),
    ] = None,
) -> None:
    """Publish a request (planned by the Task Planner) or a workflow whose plan is given in FILE,
    or a request given by flags; with --wait, follow it live and exit 0 only if it completed.
    Everything is validated against the event schemas before anything is published.

    Examples: mesh submit examples/diamond.yaml --wait;
    mesh submit --type bugfix --description "Fix the login timeout" -c max_parallelism=2 --wait;
    cat request.yaml | mesh submit -
    """
    settings = settings_of(ctx)
    flags = {
        "type": task_type,
        "description": description,
        "requirements": requirement or None,
        "constraints": _pairs(constraint, "--constraint") or None,
        "context": _pairs(context, "--context") or None,
        "priority": priority,
        "deadline": deadline,
        "tenant": tenant,
        "id": request_id,
    }
    given = {key: value for key, value in flags.items() if value is not None}
    text: str | None = None
    if file is None:
        if not given:
            raise ConfigError(
                "give a FILE ('-' for stdin) or a request with --type and --description"
            )
        source, document = "flags", given
    elif given:
        raise ConfigError(
            f"give either FILE or request flags, not both (got FILE and --{next(iter(given))})"
        )
    else:
        text = sys.stdin.read() if file == "-" else None
        source = "stdin.yaml" if file == "-" else file
        document = read_document(source, text=text)
    work: TaskRequest | PlanRequest
    if file is None or is_request_document(document):
        work = request_from_document(document, source)
        if workflow_id is not None:
            raise ConfigError(
                "--workflow-id applies to plan files; the planner names a request's workflow"
            )
    else:
        work = load_plan_file(Path(source), text=text)
        if workflow_id is not None:
            work = dataclasses.replace(work, workflow_id=workflow_id)
    run = with_client(settings, lambda c: _start(c, work, wait=wait, as_json=as_json))
    if not wait:
        if as_json:
            print_json({"workflow_id": run.workflow_id, "status": "submitted"})
        else:
            say(f"submitted workflow {run.workflow_id}")
        return
    state = asyncio.run(_follow(run, as_json=as_json, idle_timeout=idle_timeout))
    if as_json:
        print_json(_summary(run.workflow_id, state))
    elif state is not None:
        say(f"workflow {state.workflow_id} {state.status}", STYLES.get(state.status))
    if state is None or state.status != "completed":
        raise typer.Exit(1)


def _pairs(items: list[str] | None, flag: str) -> dict[str, Any]:
    """``NAME=VALUE`` flags as a mapping; values read as YAML scalars (2 → int, true → bool)."""
    pairs: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{flag} {item!r}: expected NAME=VALUE")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        pairs[name.strip()] = parsed if isinstance(parsed, str | int | float | bool) else value
    return pairs


async def _start(
    client: Client, work: TaskRequest | PlanRequest, *, wait: bool, as_json: bool
) -> WorkflowRun:
    """Publish a plan file's workflow, or a request for the planner; with ``wait``, a request
    waits for its plan, and a rejection fails at once (one line, or the JSON answer)."""
    if isinstance(work, PlanRequest):
        return await client.start_workflow(
            work.plan, workflow_id=work.workflow_id, request_id=work.request_id
        )
    try:
        run = await client.submit(work, planned=wait, within=PLAN_WAIT_SECONDS)
    except RequestRejected as exc:
        if not as_json:
            raise
        print_json(
            {
                "workflow_id": workflow_id_for(work.request_id),
                "status": "rejected",
                "reason": exc.reason,
                "problems": list(exc.problems),
            }
        )
        raise typer.Exit(1) from None
    if wait and not as_json and run.plan is not None:
        say(f"planned {len(run.plan.tasks)} tasks for request {work.request_id}")
    return run


async def _follow(run: WorkflowRun, *, as_json: bool, idle_timeout: float) -> WorkflowState | None:
    state: WorkflowState | None = None
    started = time.monotonic()
    live = (
        Live(console=console, refresh_per_second=8) if console.is_terminal and not as_json else None
    )
    if not as_json and live is None:
        say(f"submitted workflow {run.workflow_id}; following its history")
    with live if live is not None else contextlib.nullcontext():
        async with contextlib.aclosing(run.events(idle_timeout=idle_timeout)) as events:
            async for event in events:
                state = evolve(state, event)
                if live is not None:
                    live.update(_table(state, time.monotonic() - started))
                elif not as_json:
                    task = getattr(event, "task_id", "")
                    say(f"{event.occurred_at:%H:%M:%S} {event.type:<22} {task}")
    return state


def _table(state: WorkflowState, elapsed: float) -> Group:
    """The live view: a progress bar with elapsed time over the task table."""
    done = sum(1 for t in state.tasks.values() if t.is_final)
    total = len(state.tasks)
    progress = Table.grid(padding=(0, 1))
    progress.add_row(
        ProgressBar(total=max(total, 1), completed=done, width=40),
        f"{done}/{total} tasks",
        f"{elapsed:.1f} s",
    )
    table = Table(title=f"{state.workflow_id} — {state.status}", header_style="bold")
    for column in ("task", "status", "attempt", "agent", "note"):
        table.add_column(column)
    for task in state.tasks.values():
        style = STYLES.get(task.status)
        note = task.error_message or task.waiting_reason or ""
        table.add_row(
            task.task_id,
            f"[{style}]{task.status}[/]" if style else task.status,
            str(task.attempt),
            task.agent_id or "",
            escape(str(note))[:80],
        )
    return Group(progress, table)


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
                "waiting": task.waiting_reason,
            }
            for task in state.tasks.values()
        },
    }
