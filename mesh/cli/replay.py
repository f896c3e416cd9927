"""``mesh replay`` — rebuild workflows from their history, to debug them.

One workflow (``mesh replay ID``): a timeline of its events (event, time, task, state change)
and the state it folds to, compared with the live snapshot; ``--until-offset``, ``--until``
(a time: offsets looked up by timestamp) and ``--until-event`` stop early; ``--step`` walks
through it interactively; ``--diff-live`` lists every field that differs from the snapshot;
``--export FILE`` writes the history as JSON lines and ``--from-file FILE`` replays such a file
with no broker.

Every workflow of a window (``mesh replay --all --since T1 --until T2``): the shadow replay
(see ``mesh.replay._shadow``). It is a mode of this command rather than a subcommand because
it is the same operation — fold histories, compare with live — over many keys, with the same
``--until``; and a Typer group would no longer accept ``mesh replay ID``.

Exit codes: 0 the replay equals the live snapshot (or there is nothing to compare); 1 it
differs (each difference is listed), or an error (one line on stderr).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mesh.cli._app import settings_of
from mesh.cli._output import console, dumps, err_console, print_json, print_table, say
from mesh.cli._replay_all import replay_all
from mesh.cli._workflow_view import headline, in_plan_order, state_dict, tasks_table
from mesh.errors import ConfigError, DecisionError, MeshError, UnknownWorkflow
from mesh.events import (
    REF_KEY,
    Mapper,
    PayloadChunk,
    PayloadRef,
    WorkflowSnapshot,
    WorkflowStarted,
    payload_refs_in,
)
from mesh.kafka.payloads import chunks_for_export
from mesh.replay import STEP_HELP as HELP
from mesh.replay import (
    Difference,
    Recorded,
    Step,
    Stepper,
    cut,
    diff_states,
    export_history,
    load_history,
    parse_time,
    read_history,
    snapshot_state,
    timeline_of,
    to_millis,
)
from mesh.settings import Settings
from mesh.times import format_time
from mesh.workflows import WorkflowState, fold


def replay(
    ctx: typer.Context,
    workflow_id: Annotated[
        str | None, typer.Argument(help="The workflow to replay (optional with --from-file).")
    ] = None,
    until_offset: Annotated[
        int | None,
        typer.Option("--until-offset", min=0, help="Stop after the record at this offset."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="Stop at this time (ISO 8601, or 15m / 2h / 1d ago); offsets by timestamp.",
        ),
    ] = None,
    until_event: Annotated[
        int | None, typer.Option("--until-event", min=1, help="Stop after this many events.")
    ] = None,
    until_sequence: Annotated[
        int | None,
        typer.Option("--until-sequence", min=1, help="Stop after the event with this sequence."),
    ] = None,
    step: Annotated[
        bool, typer.Option("--step", help="Step through the events (commands from stdin).")
    ] = False,
    diff_live: Annotated[
        bool,
        typer.Option("--diff-live", help="List every difference from the live snapshot."),
    ] = False,
    export: Annotated[
        Path | None, typer.Option("--export", help="Write the history as JSON lines to FILE.")
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", help="Replay a history exported with --export (no broker)."),
    ] = None,
    all_workflows: Annotated[
        bool,
        typer.Option("--all", help="Shadow-replay every workflow with events in the window."),
    ] = False,
    since: Annotated[
        str | None, typer.Option("--since", help="With --all: start of the window (a time).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (a line per step with --step).")
    ] = False,
) -> None:
    """Replay a workflow from workflow.events and compare it with its live snapshot.

    \b
    Examples:
      mesh replay wf-0194f3c2 --until-event 5
      mesh replay wf-0194f3c2 --diff-live
      mesh replay wf-0194f3c2 --export wf.jsonl && mesh replay --from-file wf.jsonl --step
      mesh replay --all --since 1h --until now --json
    """
    settings = settings_of(ctx)
    until_ms = to_millis(parse_time(until)) if until is not None else None
    if all_workflows:
        _check_all_options(
            workflow_id, until_offset, until_event, until_sequence, step, export, from_file
        )
        since_ms = to_millis(parse_time(since)) if since is not None else None
        if since_ms is not None and until_ms is not None and since_ms > until_ms:
            raise ConfigError("--since is after --until: nothing to replay")
        replay_all(settings, since_ms=since_ms, until_ms=until_ms, as_json=as_json)
        return
    if since is not None:
        raise ConfigError("--since applies to --all (a shadow replay of a window)")
    limited = any(v is not None for v in (until_offset, until_ms, until_event, until_sequence))
    if diff_live and (limited or step or export is not None):
        raise ConfigError(
            "--diff-live compares the whole history with the live snapshot: drop --until*, "
            "--step and --export"
        )
    if from_file is not None:
        if diff_live:
            raise ConfigError("--diff-live needs the live snapshot on the broker, not --from-file")
        mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        records = load_history(from_file, mapper, workflow_id=workflow_id)
        snapshot, partition, notes, source = None, None, [], str(from_file)
    else:
        if workflow_id is None:
            raise ConfigError("name a WORKFLOW_ID (or replay a file with --from-file FILE)")
        history = asyncio.run(
            read_history(settings, workflow_id, until_offset=until_offset, until_ms=until_ms)
        )
        records, snapshot, partition = history.records, history.snapshot, history.partition
        notes, source = history.notes, settings.topic("workflow.events")
    total = len(records)
    chosen = cut(
        records,
        until_offset=until_offset,
        until_event=until_event,
        until_sequence=until_sequence,
        until_ms=until_ms,
    )
    wid = records[0].event.workflow_id
    if not chosen:
        raise UnknownWorkflow(f"workflow {wid} has no history event up to that point")
    for note in notes:
        err_console.print(f"mesh: note: {note}", highlight=False)
    if export is not None:
        _export(chosen, export, wid, settings if from_file is None else None, as_json=as_json)
    elif diff_live:
        _diff_live(wid, records, snapshot, as_json=as_json)
    elif step:
        _step(chosen, as_json=as_json)
    else:
        _replay_one(
            chosen,
            snapshot if not limited else None,
            total=total,
            partition=partition,
            source=source,
            limited=limited,
            notes=notes,
            as_json=as_json,
        )


def _check_all_options(
    workflow_id: str | None,
    until_offset: int | None,
    until_event: int | None,
    until_sequence: int | None,
    step: bool,
    export: Path | None,
    from_file: Path | None,
) -> None:
    given = {
        "WORKFLOW_ID": workflow_id is not None,
        "--until-offset": until_offset is not None,
        "--until-event": until_event is not None,
        "--until-sequence": until_sequence is not None,
        "--step": step,
        "--export": export is not None,
        "--from-file": from_file is not None,
    }
    clash = [name for name, present in given.items() if present]
    if clash:
        raise ConfigError(
            f"--all replays every workflow of a time window; it does not take {clash[0]} "
            "(use --since and --until)"
        )


def _fold(records: list[Recorded]) -> WorkflowState:
    try:
        state = fold(r.event for r in records)
    except DecisionError as exc:
        wid = records[0].event.workflow_id
        raise DecisionError(f"the history of workflow {wid} does not fold: {exc}") from exc
    assert state is not None  # callers pass at least one event
    return state


def compare(records: list[Recorded], snapshot: WorkflowSnapshot | None) -> list[Difference] | None:
    """Differences between the live snapshot and the replay folded to the snapshot's own
    position (where they must be equal); None when there is no snapshot state to compare."""
    if snapshot is None or snapshot.history_sequence == 0:
        return None
    at = [r for r in records if (r.event.sequence or 0) <= snapshot.history_sequence]
    reached = at[-1].event.sequence if at else 0
    if reached != snapshot.history_sequence:
        return [Difference("history_sequence", snapshot.history_sequence, reached)]
    try:
        live = snapshot_state(snapshot)
    except DecisionError as exc:
        return [Difference("(state)", f"unreadable: {exc}", "a valid state")]
    assert live is not None  # not a start marker
    return diff_states(live, _fold(at))


def _export(
    records: list[Recorded],
    path: Path,
    workflow_id: str,
    settings: Settings | None,
    *,
    as_json: bool,
) -> None:
    """Write the history and the payloads it refers to (read from ``settings``' broker; none
    when the history came from a file)."""
    refs = _payload_refs(records)
    chunks: list[PayloadChunk] = []
    notes: list[str] = []
    if refs and settings is not None:
        mapper = Mapper(max_event_bytes=settings.max_event_bytes)
        chunks, notes = asyncio.run(chunks_for_export(settings, mapper, refs))
    for note in notes:
        err_console.print(f"mesh: note: {note}", highlight=False)
    count = export_history(records, path, chunks)
    payloads = len({chunk.payload_id for chunk in chunks})
    if as_json:
        print_json(
            {"workflow_id": workflow_id, "exported": count, "payloads": payloads, "file": str(path)}
        )
    else:
        with_payloads = f" and {payloads} payloads" if payloads else ""
        say(f"exported {count} events{with_payloads} of workflow {workflow_id} to {path}")


def _payload_refs(records: list[Recorded]) -> list[PayloadRef]:
    """Every payload the records refer to: plans and outputs by reference."""
    refs: list[PayloadRef] = []
    for record in records:
        event = record.event
        if isinstance(event, WorkflowStarted) and event.plan_ref is not None:
            refs.append(event.plan_ref)
        elif record.raw is not None and REF_KEY.encode() in record.raw:
            refs.extend(payload_refs_in(json.loads(record.raw)))
    return refs


def _diff_live(
    workflow_id: str, records: list[Recorded], snapshot: WorkflowSnapshot | None, *, as_json: bool
) -> None:
    found = compare(records, snapshot)
    if found is None:
        raise MeshError(f"workflow {workflow_id} has no live snapshot with a state to compare")
    assert snapshot is not None
    last = records[-1].event.sequence or 0
    if as_json:
        print_json(
            {
                "workflow_id": workflow_id,
                "equal": not found,
                "snapshot_sequence": snapshot.history_sequence,
                "history_sequence": last,
                "differences": [d.as_dict() for d in found],
            }
        )
    else:
        behind = last - snapshot.history_sequence
        lag = f"; the history has {behind} event(s) after it" if behind else ""
        say(f"live snapshot of {workflow_id} at sequence {snapshot.history_sequence}{lag}")
        if not found:
            say("replay equals the live snapshot: no difference", "green")
        else:
            say(f"replay differs from the live snapshot in {len(found)} field(s):", "red")
            print_table(
                None,
                ["field", "live snapshot", "replay"],
                [
                    (d.path, _value(d.as_dict()["snapshot"]), _value(d.as_dict()["replay"]))
                    for d in found
                ],
            )
    if found:
        raise typer.Exit(1)


def _value(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else value


def _replay_one(
    records: list[Recorded],
    snapshot: WorkflowSnapshot | None,
    *,
    total: int,
    partition: int | None,
    source: str,
    limited: bool,
    notes: list[str],
    as_json: bool,
) -> None:
    state = _fold(records)
    steps = timeline_of(records)
    found = compare(records, snapshot) if not limited else None
    if as_json:
        document = as_dict(state, records, found, snapshot, partition=partition)
        document.update(
            source=source,
            events_total=total,
            stopped_early=limited,
            notes=notes,
            timeline=[s.as_dict() for s in steps],
        )
        print_json(document)
    else:
        _show(state, steps, found, snapshot, total=total, limited=limited)
    if found:
        raise typer.Exit(1)


def as_dict(
    state: WorkflowState,
    records: list[Recorded],
    found: list[Difference] | None,
    snapshot: WorkflowSnapshot | None,
    *,
    partition: int | None,
) -> dict[str, Any]:
    """The replay as plain data (what ``--json`` prints, besides the timeline)."""
    return {
        "workflow_id": state.workflow_id,
        "status": state.status,
        "event_count": len(records),
        "sequence": state.sequence,
        "partition": partition,
        "equal": None if found is None else not found,
        "differences": [str(d) for d in found or ()],
        "snapshot": None
        if snapshot is None
        else {
            "history_sequence": snapshot.history_sequence,
            "history_offset": snapshot.history_offset,
            "status": snapshot.status,
        },
        "tasks": [
            {
                "task_id": task.task_id,
                "status": task.status,
                "attempt": task.attempt,
                "agent_id": task.agent_id,
            }
            for task in in_plan_order(state)
        ],
        "state": state_dict(state, state.ended_at or records[-1].event.occurred_at),
    }


def _time(step: Step) -> str:
    return step.time.strftime("%H:%M:%S.%f")[:-3]


def _show(
    state: WorkflowState,
    steps: list[Step],
    found: list[Difference] | None,
    snapshot: WorkflowSnapshot | None,
    *,
    total: int,
    limited: bool,
) -> None:
    first = steps[0].time
    print_table(
        f"history of {state.workflow_id} (times UTC, {first:%Y-%m-%d})",
        ["#", "seq", "offset", "time", "event", "task", "state change"],
        [
            (
                s.index,
                s.sequence,
                "" if s.offset is None else s.offset,
                _time(s),
                s.type,
                s.task_id or "",
                s.change,
            )
            for s in steps
        ],
    )
    at = state.ended_at or steps[-1].time
    console.print(tasks_table(state, title=headline(state, at), now=at))
    if limited:
        say(
            f"stopped after {len(steps)} events (sequence {state.sequence}; {total} read); "
            "a partial replay is not compared with the live snapshot"
        )
        return
    say(f"{len(steps)} events (up to sequence {state.sequence})")
    if found is None:
        say("no live snapshot to compare with")
    elif not found:
        assert snapshot is not None
        say(f"replay equals the live snapshot (at sequence {snapshot.history_sequence})")
    else:
        say(f"replay differs from the live snapshot in {len(found)} field(s):", "red")
        for difference in found:
            say(f"  {difference}")


def _step(records: list[Recorded], *, as_json: bool) -> None:
    """Interactive stepping; commands come from stdin one per line (EOF quits)."""
    stepper = Stepper([r.event for r in records])
    steps = timeline_of(records)
    prompt = sys.stdin.isatty() and not as_json
    if not as_json:
        say(HELP, "dim")
    while True:
        _show_step(stepper, steps[stepper.position - 1], as_json=as_json)
        if prompt:
            console.print("step> ", end="")
        line = sys.stdin.readline()
        if not line:
            return
        try:
            if not stepper.command(line):
                return
        except ValueError as exc:
            err_console.print(f"mesh: {exc}", highlight=False)


def _show_step(stepper: Stepper, step: Step, *, as_json: bool) -> None:
    state = stepper.state()
    if as_json:
        line = {
            "position": stepper.position,
            "total": stepper.total,
            "event": step.as_dict(),
            "state": state_dict(state, step.time),
        }
        sys.stdout.write(_compact(line) + "\n")
        sys.stdout.flush()
        return
    when = format_time(step.time)
    say(f"event {stepper.position}/{stepper.total}: {step.type} {step.task_id or ''} at {when}")
    say(f"  {step.change}")
    console.print(tasks_table(state, title=headline(state, step.time), now=step.time))


def _compact(data: Any) -> str:
    return dumps(data)
