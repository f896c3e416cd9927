"""How a workflow's state is shown by ``mesh status``, ``mesh replay`` and its ``--step``: one
tasks table and one JSON shape, so the views agree with each other."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mesh.errors import UnknownTask
from mesh.workflows import TaskState, WorkflowState

STYLES = {
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


def waiting_reason(task: TaskState) -> str | None:
    """Why a task waits, when the state records it (the Resource Allocator's ``TaskWaiting``;
    older states have no such field)."""
    value = getattr(task, "waiting_reason", None)
    return str(value) if value else None


def in_plan_order(state: WorkflowState) -> list[TaskState]:
    """The tasks in the order the plan lists them."""
    return [state.tasks[spec.task_id] for spec in state.plan.tasks if spec.task_id in state.tasks]


def seconds_between(start: datetime | None, end: datetime | None, now: datetime) -> float | None:
    """Elapsed seconds from ``start`` to ``end`` (to ``now`` while it has no end)."""
    if start is None:
        return None
    return max(0.0, ((end or now) - start).total_seconds())


def duration_text(seconds: float | None) -> str:
    """``1.2 s``, ``3 m 04 s`` or ``2 h 05 m``; empty for unknown."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def task_dict(task: TaskState, now: datetime) -> dict[str, Any]:
    """One task as plain data: the one shape of ``status``, ``watch``, ``replay`` and
    ``submit --wait`` with ``--json``."""
    return {
        "task_id": task.task_id,
        "status": task.status,
        "attempt": task.attempt,
        "failures": task.failures,
        "agent_id": task.agent_id,
        "waiting_reason": waiting_reason(task),
        "scheduled_at": task.scheduled_at,
        "started_at": task.started_at,
        "ended_at": task.ended_at,
        "retry_at": task.retry_at,
        "queued_seconds": seconds_between(task.scheduled_at, task.started_at, now)
        if task.scheduled_at
        else None,
        "run_seconds": seconds_between(task.started_at, task.ended_at, now),
        "error_kind": task.error_kind,
        "error": task.error_message,
        "output": task.output,
    }


def task_of(state: WorkflowState, task_id: str) -> TaskState:
    """The task ``task_id``; ``UnknownTask`` (one line, with the tasks there are) if none."""
    task = state.tasks.get(task_id)
    if task is None:
        known = ", ".join(sorted(state.tasks)[:20])
        raise UnknownTask(f"workflow {state.workflow_id} has no task {task_id!r} (tasks: {known})")
    return task


def attempt_outputs(task: TaskState) -> list[dict[str, Any]]:
    """What each attempt printed, oldest first: failed attempts from ``failed_outputs``, the
    current one from ``output`` once it succeeded (older states have no failed outputs)."""
    kept: dict[str, Any] = dict(getattr(task, "failed_outputs", {}) or {})
    attempts = [
        {"attempt": int(number), "outcome": "failed", **output}
        for number, output in sorted(kept.items(), key=lambda item: int(item[0]))
    ]
    if task.status == "succeeded":
        attempts.append({"attempt": task.attempt, "outcome": "succeeded", **task.output})
    return attempts


def task_detail(task: TaskState, now: datetime) -> dict[str, Any]:
    """One task with every attempt's output (``mesh status WF --task T``)."""
    return {**task_dict(task, now), "attempts": attempt_outputs(task)}


def task_panel(task: TaskState, now: datetime) -> Group:
    """The task for people: its fields, then each attempt's exit code, stdout and stderr."""
    table = Table.grid(padding=(0, 2))
    for key, value in task_dict(task, now).items():
        if key != "output" and value not in (None, ""):
            table.add_row(Text(key, style="bold"), Text(str(value)))
    parts: list[Any] = [table]
    for attempt in attempt_outputs(task):
        style = "green" if attempt["outcome"] == "succeeded" else "red"
        code = attempt.get("exit_code")
        exit_note = f", exit {code}" if code is not None else ""
        cut = ", truncated" if attempt.get("truncated") else ""
        parts.append(
            Text(f"attempt {attempt['attempt']} {attempt['outcome']}{exit_note}{cut}", style)
        )
        streams = [k for k in ("stdout", "stderr") if isinstance(attempt.get(k), str)]
        for stream in streams:
            text = attempt[stream].rstrip("\n")
            parts.append(Text(f"  {stream}:" + ("" if text else " (empty)"), style="bold"))
            parts.extend(Text("    " + line) for line in text.splitlines())
        if not streams:
            shown = {k: v for k, v in attempt.items() if k not in ("attempt", "outcome")}
            parts.append(Text(f"  output: {shown}"))
    return Group(*parts)


def state_dict(state: WorkflowState, now: datetime | None = None) -> dict[str, Any]:
    """The workflow as plain data (``--json``)."""
    at = now or datetime.now(UTC)
    return {
        "workflow_id": state.workflow_id,
        "status": state.status,
        "reason": state.reason,
        "sequence": state.sequence,
        "started_at": state.started_at,
        "ended_at": state.ended_at,
        "duration_seconds": seconds_between(state.started_at, state.ended_at, at),
        "counts": dict(state.counts()),
        "tasks": [task_dict(task, at) for task in in_plan_order(state)],
    }


def tasks_table(
    state: WorkflowState,
    *,
    title: str | None = None,
    now: datetime | None = None,
    progress: Mapping[str, str] | None = None,
    last_lines: Mapping[str, str] | None = None,
) -> Group:
    """The tasks as a table (state, attempt, agent, why waiting, durations), then each task's
    last error on a line of its own under it: a table column would be cut to nothing on an
    80-column terminal, and the error is what the reader came for."""
    at = now or datetime.now(UTC)
    tasks = in_plan_order(state)
    show_waiting = any(waiting_reason(t) for t in tasks)
    table = Table(title=title, header_style="bold")
    table.add_column("task", no_wrap=True)
    columns = ["status", "attempt", "agent"]
    columns += ["waiting"] if show_waiting else []
    columns += ["queued", "ran"]
    notes = {k: v for k, v in (progress or {}).items() if v}
    columns += ["progress"] if notes else []
    printed = {k: v for k, v in (last_lines or {}).items() if v}
    columns += ["last output"] if printed else []
    for column in columns:
        table.add_column(column)
    for task in tasks:
        style = STYLES.get(task.status)
        row = [
            task.task_id,
            f"[{style}]{task.status}[/]" if style else task.status,
            str(task.attempt),
            task.agent_id or "",
        ]
        if show_waiting:
            row.append(waiting_reason(task) or "")
        queued = (
            seconds_between(task.scheduled_at, task.started_at, at) if task.scheduled_at else None
        )
        row += [
            duration_text(queued),
            duration_text(seconds_between(task.started_at, task.ended_at, at)),
        ]
        row += [escape(notes.get(task.task_id, ""))] if notes else []
        row += [escape(printed.get(task.task_id, ""))] if printed else []
        table.add_row(*row)
    errors = [
        Text.assemble(
            (f"{task.task_id} ", "bold"),
            (f"(attempt {task.attempt}{', ' + task.error_kind if task.error_kind else ''}): ", ""),
            (_one_line(task.error_message), "red" if task.status in _FAILED else ""),
        )
        for task in tasks
        if task.error_message
    ]
    return Group(table, *errors)


_FAILED = frozenset({"failed", "timed_out"})


def _one_line(text: str, limit: int = 2_000) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def headline(state: WorkflowState, now: datetime | None = None) -> str:
    """``workflow wf-… completed — 4/4 tasks final — 12.3 s`` (with rich markup)."""
    at = now or datetime.now(UTC)
    done = sum(1 for t in state.tasks.values() if t.is_final)
    style = STYLES.get(state.status)
    status = f"[{style}]{state.status}[/]" if style else state.status
    elapsed = duration_text(seconds_between(state.started_at, state.ended_at, at))
    reason = f" ({state.reason})" if state.reason else ""
    return (
        f"workflow {state.workflow_id} {status}{reason} — {done}/{len(state.tasks)} tasks final "
        f"— {elapsed}"
    )
