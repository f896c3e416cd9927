"""``mesh status ID``, ``mesh watch ID`` and ``mesh list`` — where workflows stand.

``status`` and ``watch`` build the workflow as a rebuilding manager would: its latest snapshot
on ``workflow.state`` plus the history events after it (the "tail"), never the whole history.
``watch`` then follows the history live with the same client helper as ``mesh submit --wait``
(``follow_history``) until the workflow ends. ``list`` does the same for every workflow at once
(``current_workflows``: the compacted ``workflow.state`` topic plus the history after each
snapshot), so a pause or a finished task shows there as in ``status``. A request the Task
Planner rejected never gets a workflow: both show it from its ``PlanRejected`` on ``plans``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import typer

from mesh.cli._app import settings_of
from mesh.cli._follow import follow, stopped_following
from mesh.cli._output import console, print_json, print_table, say
from mesh.cli._workflow_view import (
    STYLES,
    duration_text,
    headline,
    seconds_between,
    state_dict,
    task_detail,
    task_of,
    task_panel,
    tasks_table,
)
from mesh.client import HistoryCursor
from mesh.errors import UnknownWorkflow
from mesh.replay import Current, Rejection, current_workflows, live_state, rejections
from mesh.settings import Settings
from mesh.times import format_time
from mesh.workflows import WorkflowState

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
StatusFilter = Literal["running", "paused", "completed", "failed", "cancelled", "rejected"]


def status(
    ctx: typer.Context,
    workflow_id: Annotated[str, typer.Argument(help="The workflow.")],
    task_id: Annotated[
        str | None,
        typer.Option(
            "--task", help="Show this task in full: every attempt's exit code, stdout, stderr."
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Show a workflow's state and its tasks (status, attempt, agent, why waiting, durations),
    from the live snapshot plus the history after it; a request the planner rejected shows
    with its reason. With --task, one task and what each of its attempts printed (failed
    attempts too).

    Example: mesh status wf-0194f3c2 --task build
    """
    settings = settings_of(ctx)
    try:
        live = asyncio.run(live_state(settings, workflow_id))
    except UnknownWorkflow:
        refused = _rejection(settings, workflow_id)
        if refused is None:
            raise
        _show_rejection(refused, as_json)
        return
    now = datetime.now(UTC)
    if task_id is not None:
        _show_task(live.state, task_id, as_json, now)
        return
    snapshot_sequence = live.snapshot.history_sequence if live.snapshot is not None else 0
    if as_json:
        document = state_dict(live.state, now)
        document.update(
            snapshot_sequence=snapshot_sequence,
            tail_events=len(live.tail),
            partition=live.partition,
        )
        print_json(document)
        return
    console.print(tasks_table(live.state, title=headline(live.state, now), now=now))
    basis = (
        f"snapshot at sequence {snapshot_sequence} + {len(live.tail)} later event(s)"
        if snapshot_sequence
        else f"{len(live.tail)} history event(s), no snapshot yet"
    )
    say(f"as of sequence {live.state.sequence} ({basis})", "dim")


def _show_task(state: WorkflowState, task_id: str, as_json: bool, now: datetime) -> None:
    task = task_of(state, task_id)
    if as_json:
        print_json({"workflow_id": state.workflow_id, **task_detail(task, now)})
        return
    console.print(task_panel(task, now))


def _rejection(settings: Settings, workflow_id: str) -> Rejection | None:
    """The planner's rejection of the request behind ``workflow_id`` (a workflow with no
    history), if it rejected it."""
    return asyncio.run(rejections(settings, workflow_id)).get(workflow_id)


def _show_rejection(refused: Rejection, as_json: bool) -> None:
    if as_json:
        print_json(_rejected_row(refused))
        return
    say(
        f"workflow {refused.workflow_id} never started: the Task Planner rejected request "
        f"{refused.request_id} at {format_time(refused.at, 'seconds')}",
        "red",
    )
    say(f"  reason: {refused.reason}")
    for problem in refused.problems:
        say(f"  - {problem}")


def _rejected_row(refused: Rejection) -> dict[str, Any]:
    return {
        "workflow_id": refused.workflow_id,
        "status": "rejected",
        "reason": refused.reason,
        "problems": list(refused.problems),
        "request_id": refused.request_id,
        "tasks": None,
        "tasks_final": None,
        "started_at": None,
        "ended_at": None,
        "updated_at": refused.at,
        "sequence": 0,
    }


def watch(
    ctx: typer.Context,
    workflow_id: Annotated[str, typer.Argument(help="The workflow.")],
    idle_timeout: Annotated[
        float | None,
        typer.Option(help="Give up after this many seconds without an event [default: never]."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Follow a workflow live until it ends (its clock ticks, tasks show their progress);
    exit 0 only if it completed. Ctrl-C stops following; the workflow goes on.

    Example: mesh watch wf-0194f3c2
    """
    settings = settings_of(ctx)
    try:
        state = asyncio.run(_watch(settings, workflow_id, as_json, idle_timeout))
    except KeyboardInterrupt:
        stopped_following(workflow_id)
        raise typer.Exit(130) from None
    except UnknownWorkflow:
        refused = _rejection(settings, workflow_id)
        if refused is None:
            raise
        _show_rejection(refused, as_json)
        raise typer.Exit(1) from None
    if as_json:
        print_json(state_dict(state))
    else:
        say(f"workflow {state.workflow_id} {state.status}", STYLES.get(state.status))
    if state.status != "completed":
        raise typer.Exit(1)


async def _watch(
    settings: Settings, workflow_id: str, as_json: bool, idle_timeout: float | None
) -> WorkflowState:
    live = await live_state(settings, workflow_id)
    state = live.state
    if state.is_final:
        if not as_json:
            console.print(tasks_table(state, title=headline(state)))
        return state
    if not as_json and not console.is_terminal:
        say(f"watching workflow {workflow_id} ({state.status}, sequence {state.sequence})")
    cursor = HistoryCursor(settings.topic("workflow.events"), live.partition, live.end_offset)
    final = await follow(
        settings, workflow_id, cursor, state, quiet=as_json, idle_timeout=idle_timeout
    )
    assert final is not None  # it started from a state
    return final


def list_workflows(
    ctx: typer.Context,
    status_filter: Annotated[
        StatusFilter | None, typer.Option("--status", help="Only workflows in this status.")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=0, help="Show at most this many, newest first (0: all).")
    ] = 100,
    as_json: Json = False,
) -> None:
    """List workflows as they stand now (latest snapshot plus the history after it) and
    requests the planner rejected, newest first.

    Example: mesh list --status paused
    """
    settings = settings_of(ctx)
    workflows, refused = asyncio.run(_everything(settings))
    rows = [_row(w) for w in workflows.values()]
    rows += [_rejected_row(r) for key, r in refused.items() if key not in workflows]
    if status_filter is not None:
        rows = [r for r in rows if r["status"] == status_filter]
    rows.sort(key=lambda r: r["started_at"] or r["updated_at"] or _EARLIEST, reverse=True)
    shown = rows if limit == 0 else rows[:limit]
    if as_json:
        print_json({"count": len(rows), "workflows": shown})
        return
    now = datetime.now(UTC)
    print_table(
        None,
        ["workflow", "status", "tasks", "started (UTC)", "took", "seq"],
        [
            (
                r["workflow_id"],
                r["status"],
                "" if r["tasks"] is None else f"{r['tasks_final']}/{r['tasks']}",
                _short_time(r["started_at"] or r["updated_at"]),
                duration_text(seconds_between(r["started_at"], r["ended_at"], now)),
                r["sequence"],
            )
            for r in shown
        ],
    )
    for row in shown:  # a reason would squeeze the table to nothing at 80 columns
        if row["status"] in ("rejected", "failed", "cancelled") and row["reason"]:
            say(f"{row['workflow_id']} {row['status']}: {row['reason']}")
    more = f" (showing {len(shown)}; --limit 0 for all)" if len(shown) < len(rows) else ""
    say(f"{len(rows)} workflow(s){more}", "dim")


async def _everything(settings: Settings) -> tuple[dict[str, Current], dict[str, Rejection]]:
    return await current_workflows(settings), await rejections(settings)


def _row(current: Current) -> dict[str, Any]:
    state, snapshot = current.state, current.snapshot
    return {
        "workflow_id": current.workflow_id,
        "status": current.status,
        "reason": state.reason if state is not None else None,
        "tasks": None if state is None else len(state.tasks),
        "tasks_final": None if state is None else sum(t.is_final for t in state.tasks.values()),
        "started_at": None if state is None else state.started_at,
        "ended_at": None if state is None else state.ended_at,
        "updated_at": snapshot.occurred_at if snapshot is not None else None,
        "sequence": state.sequence
        if state is not None
        else snapshot.history_sequence
        if snapshot is not None
        else 0,
    }


_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _short_time(value: datetime | None) -> str:
    return "" if value is None else format_time(value, "seconds")
