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
from mesh.cli._output import console, print_json, say
from mesh.cli._workflow_view import STYLES
from mesh.client import (
    Submitted,
    follow_history,
    load_plan_file,
    submit_plan,
    submit_request,
    wait_for_plan,
)
from mesh.errors import ConfigError, MeshError
from mesh.events import PlanRejected, TaskRequest
from mesh.planner import is_request_document, read_document, request_from_document, workflow_id_for
from mesh.settings import Settings
from mesh.workflows import WorkflowState, evolve


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
    if file is None or is_request_document(document):
        request = request_from_document(document, source)
        submitted = asyncio.run(
            _submit_request(settings, request, workflow_id, wait=wait, as_json=as_json)
        )
    else:
        plan_request = load_plan_file(Path(source), text=text)
        if workflow_id is not None:
            plan_request = dataclasses.replace(plan_request, workflow_id=workflow_id)
        submitted = asyncio.run(submit_plan(settings, plan_request))
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


async def _submit_request(
    settings: Settings, request: TaskRequest, workflow_id: str | None, *, wait: bool, as_json: bool
) -> Submitted:
    """Publish a plain request; with ``wait``, fail at once (one line) if it is rejected."""
    if workflow_id is not None:
        raise ConfigError(
            "--workflow-id applies to plan files; the planner names a request's workflow"
        )
    target = workflow_id_for(request.request_id)
    submitted, plans = await submit_request(settings, request, target)
    if wait:
        answer = await wait_for_plan(settings, target, plans, within=120)
        if isinstance(answer, PlanRejected):
            if as_json:
                print_json(
                    {
                        "workflow_id": target,
                        "status": "rejected",
                        "reason": answer.reason,
                        "problems": list(answer.problems),
                    }
                )
                raise typer.Exit(1)
            raise MeshError(f"request {request.request_id} rejected: {answer.reason}")
        if not as_json:
            say(f"planned {len(answer.plan.tasks)} tasks for request {request.request_id}")
    return submitted


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
