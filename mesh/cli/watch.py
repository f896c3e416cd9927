"""``mesh status ID``, ``mesh watch ID`` and ``mesh list`` — where workflows stand.

``status`` and ``watch`` build the workflow as a rebuilding manager would: its latest snapshot
on ``workflow.state`` plus the history events after it (the "tail"), never the whole history.
``watch`` then follows the history live with the same client helper as ``mesh submit --wait``
(``follow_history``) until the workflow ends. ``list`` reads the compacted ``workflow.state``
topic: one latest snapshot per workflow, so a running workflow's task counts are as of its
last snapshot (the status is exact: snapshots are written when a workflow starts and ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import typer
from rich.live import Live

from mesh.cli._app import settings_of
from mesh.cli._output import console, print_json, print_table, say
from mesh.cli._workflow_view import STYLES, headline, state_dict, tasks_table
from mesh.client import HistoryCursor, follow_history
from mesh.errors import DecisionError
from mesh.events import WorkflowSnapshot
from mesh.replay import latest_snapshots, live_state, snapshot_state
from mesh.settings import Settings
from mesh.workflows import WorkflowState, evolve

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
StatusFilter = Literal["running", "paused", "completed", "failed", "cancelled"]


def status(
    ctx: typer.Context,
    workflow_id: Annotated[str, typer.Argument(help="The workflow.")],
    as_json: Json = False,
) -> None:
    """Show a workflow's state and its tasks (status, attempt, agent, why waiting, durations),
    from the live snapshot plus the history after it.

    Example: mesh status wf-0194f3c2
    """
    live = asyncio.run(live_state(settings_of(ctx), workflow_id))
    now = datetime.now(UTC)
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


def watch(
    ctx: typer.Context,
    workflow_id: Annotated[str, typer.Argument(help="The workflow.")],
    idle_timeout: Annotated[
        float | None,
        typer.Option(help="Give up after this many seconds without an event [default: never]."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Follow a workflow live until it ends; exit 0 only if it completed.

    Example: mesh watch wf-0194f3c2
    """
    state = asyncio.run(_watch(settings_of(ctx), workflow_id, as_json, idle_timeout))
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
    cursor = HistoryCursor(settings.topic("workflow.events"), live.partition, live.end_offset)
    view = Live(console=console, refresh_per_second=8) if console.is_terminal else None
    if view is not None and not as_json:
        view.update(tasks_table(state, title=headline(state)))
    elif not as_json:
        say(f"watching workflow {workflow_id} ({state.status}, sequence {state.sequence})")
    began = time.monotonic()
    with view if view is not None and not as_json else contextlib.nullcontext():
        async for event in follow_history(settings, workflow_id, cursor, idle_timeout=idle_timeout):
            state = evolve(state, event)
            if as_json:
                continue
            if view is not None:
                elapsed = time.monotonic() - began
                view.update(
                    tasks_table(state, title=f"{headline(state)} — watched {elapsed:.0f} s")
                )
            else:
                task = getattr(event, "task_id", "")
                say(f"{event.occurred_at:%H:%M:%S} {event.type:<22} {task}")
    return state


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
    """List workflows from the compacted workflow.state topic, newest first.

    Example: mesh list --status running
    """
    snapshots = asyncio.run(latest_snapshots(settings_of(ctx)))
    rows = [_row(s) for s in snapshots.values()]
    if status_filter is not None:
        rows = [r for r in rows if r["status"] == status_filter]
    rows.sort(key=lambda r: r["started_at"] or r["updated_at"], reverse=True)
    shown = rows if limit == 0 else rows[:limit]
    if as_json:
        print_json({"count": len(rows), "workflows": shown})
        return
    print_table(
        None,
        ["workflow", "status", "tasks final", "started (UTC)", "ended (UTC)", "sequence"],
        [
            (
                r["workflow_id"],
                r["status"],
                "" if r["tasks"] is None else f"{r['tasks_final']}/{r['tasks']}",
                _short_time(r["started_at"]),
                _short_time(r["ended_at"]),
                r["sequence"],
            )
            for r in shown
        ],
    )
    more = f" (showing {len(shown)}; --limit 0 for all)" if len(shown) < len(rows) else ""
    say(f"{len(rows)} workflow(s){more}", "dim")


def _row(snapshot: WorkflowSnapshot) -> dict[str, Any]:
    try:
        state = snapshot_state(snapshot)
    except DecisionError:
        state = None  # unreadable state: the snapshot's own fields still say where it stands
    return {
        "workflow_id": snapshot.workflow_id,
        "status": snapshot.status,
        "tasks": None if state is None else len(state.tasks),
        "tasks_final": None if state is None else sum(t.is_final for t in state.tasks.values()),
        "started_at": None if state is None else state.started_at,
        "ended_at": None if state is None else state.ended_at,
        "updated_at": snapshot.occurred_at,
        "sequence": snapshot.history_sequence,
    }


def _short_time(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
