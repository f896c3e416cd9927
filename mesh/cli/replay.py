"""``mesh replay WORKFLOW_ID`` — rebuild a workflow from its history and check the snapshot.

Exit codes: 0 the replay equals the live snapshot (or there is no snapshot to compare);
1 it differs (each differing field is listed), or an error (one line on stderr).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from mesh.cli._app import settings_of
from mesh.cli._output import print_json, print_table, say
from mesh.workflows.runtime import ReplayResult, replay_workflow


def replay(
    ctx: typer.Context,
    workflow_id: Annotated[str, typer.Argument(help="The workflow to replay.")],
    until_sequence: Annotated[
        int | None,
        typer.Option("--until-sequence", min=1, help="Stop after the event with this sequence."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Replay a workflow from workflow.events and compare it with its live snapshot.

    Example: mesh replay 0194f3c2-… --json
    """
    settings = settings_of(ctx)
    result = asyncio.run(replay_workflow(settings, workflow_id, until_sequence=until_sequence))
    if as_json:
        print_json(as_dict(result))
    else:
        _show(result)
    if result.equal is False:
        raise typer.Exit(1)


def as_dict(result: ReplayResult) -> dict[str, Any]:
    """The replay as plain data (what ``--json`` prints)."""
    state = result.state
    snapshot = result.snapshot
    return {
        "workflow_id": result.workflow_id,
        "status": state.status,
        "event_count": result.event_count,
        "sequence": state.sequence,
        "partition": result.partition,
        "equal": result.equal,
        "differences": result.differences,
        "snapshot": None
        if snapshot is None
        else {
            "history_sequence": snapshot.history_sequence,
            "history_offset": snapshot.history_offset,
            "status": snapshot.status,
        },
        "tasks": [
            {
                "task_id": task_id,
                "status": task.status,
                "attempt": task.attempt,
                "agent_id": task.agent_id,
            }
            for task_id, task in _in_plan_order(result)
        ],
    }


def _in_plan_order(result: ReplayResult) -> list[tuple[str, Any]]:
    state = result.state
    return [(spec.task_id, state.tasks[spec.task_id]) for spec in state.plan.tasks]


def _show(result: ReplayResult) -> None:
    state = result.state
    say(f"workflow {result.workflow_id}: {state.status}")
    print_table(
        None,
        ["task", "status", "attempt", "agent"],
        [(task_id, t.status, t.attempt, t.agent_id or "") for task_id, t in _in_plan_order(result)],
    )
    say(f"{result.event_count} events (up to sequence {state.sequence})")
    if result.equal is None:
        say("no live snapshot to compare with")
    elif result.equal:
        snapshot = result.snapshot
        assert snapshot is not None
        say(f"replay equals the live snapshot (at sequence {snapshot.history_sequence})")
    else:
        say(f"replay differs from the live snapshot in {len(result.differences)} field(s):")
        for difference in result.differences:
            say(f"  {difference}")
