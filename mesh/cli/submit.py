"""``mesh submit [FILE | --type T --description D …] [--wait] [--json]`` — publish a request or a
workflow and, optionally, follow it live."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from mesh.cli._app import settings_of
from mesh.cli._client import with_client
from mesh.cli._follow import follow, stopped_following
from mesh.cli._output import console, print_json, say
from mesh.cli._workflow_view import STYLES, state_dict
from mesh.client import Client, PlanRequest, WorkflowRun, load_plan_file
from mesh.errors import ConfigError, RequestRejected
from mesh.events import TaskRequest
from mesh.planner import is_request_document, read_document, request_from_document, workflow_id_for
from mesh.workflows import WorkflowState

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
    try:
        state = asyncio.run(_follow(run, as_json=as_json, idle_timeout=idle_timeout))
    except KeyboardInterrupt:
        stopped_following(run.workflow_id)
        raise typer.Exit(130) from None
    if as_json:
        print_json(
            state_dict(state)
            if state is not None
            else {"workflow_id": run.workflow_id, "status": "unknown", "tasks": []}
        )
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
                "published": exc.published,
            }
        )
        raise typer.Exit(1) from None
    if run.repeated and not as_json:
        say(
            f"request {work.request_id} was submitted before: its workflow {run.workflow_id} "
            "has started already (a request runs once)" + ("; following it" if wait else ""),
            "yellow",
        )
    elif wait and not as_json and run.plan is not None:
        say(f"planned {len(run.plan.tasks)} tasks for request {work.request_id}")
    return run


async def _follow(run: WorkflowRun, *, as_json: bool, idle_timeout: float) -> WorkflowState | None:
    if not as_json and not console.is_terminal:
        say(f"submitted workflow {run.workflow_id}; following its history")
    return await follow(
        run.settings, run.workflow_id, run.cursor, None, quiet=as_json, idle_timeout=idle_timeout
    )
