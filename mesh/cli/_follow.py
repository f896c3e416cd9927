"""Following a workflow live, as ``mesh watch`` and ``mesh submit --wait`` show it.

Three readers feed one queue: the workflow's history (folded into its state), its attempts'
``task.progress`` reports on ``tasks.results`` and their output chunks on ``tasks.output`` (not
history: shown, never folded; a running task shows its latest progress and the last line it
printed). On a terminal the view is redrawn on every event and every half second between them,
so its clocks tick while a long task runs; on a pipe each event is one line. Ctrl-C stops the
following, not the workflow: :func:`stopped_following` says so and how to follow it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from mesh._aio import cancel_and_wait
from mesh.cli._app import mesh_command
from mesh.cli._output import console, say
from mesh.cli._workflow_view import duration_text, headline, tasks_table
from mesh.client import HistoryCursor, follow_history, follow_key, key_cursor
from mesh.errors import MeshError
from mesh.events import Event, TaskOutput, TaskProgress, WorkflowEvent
from mesh.log import get_logger
from mesh.settings import Settings
from mesh.times import format_time
from mesh.workflows import WorkflowState, evolve

TICK_SECONDS = 0.5
"""How often the live view is redrawn while no event comes."""

_END = object()

log = get_logger("mesh.cli.follow")


async def follow(
    settings: Settings,
    workflow_id: str,
    cursor: HistoryCursor,
    state: WorkflowState | None,
    *,
    quiet: bool,
    idle_timeout: float | None,
) -> WorkflowState | None:
    """Fold the workflow's history from ``cursor`` onto ``state`` until it ends, showing it
    live unless ``quiet`` (``--json``); the state it ended in."""
    progress_at = await key_cursor(settings, "tasks.results", workflow_id, from_end=True)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    history = follow_history(settings, workflow_id, cursor, idle_timeout=idle_timeout)
    readers = [
        asyncio.create_task(_pump(history, queue, end=True)),
        asyncio.create_task(_progress(follow_key(settings, workflow_id, progress_at), queue)),
        # In the background: the view neither waits for the output nor depends on it.
        asyncio.create_task(_lines(settings, workflow_id, queue)),
    ]
    live = console.is_terminal and not quiet
    view = Live(console=console, refresh_per_second=8) if live else None
    shown = _Shown(time.monotonic())
    try:
        with view if view is not None else contextlib.nullcontext():
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), TICK_SECONDS)
                except TimeoutError:
                    item = None  # a tick: only the clocks move
                if item is _END:
                    break
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, TaskProgress):
                    shown.progress[item.task_id] = item
                    if not live and not quiet:
                        say(_progress_line(item))
                elif isinstance(item, TaskOutput):
                    line = last_line(item.text)
                    if line:
                        shown.last_lines[item.task_id] = (item.attempt, line)
                        if not live and not quiet:
                            say(_output_line(item, line))
                elif isinstance(item, WorkflowEvent):
                    state = evolve(state, item)
                    if not live and not quiet:
                        say(_event_line(item))
                if view is not None and state is not None:
                    view.update(shown.render(state))
    finally:
        await cancel_and_wait(*readers)
    return state


async def _pump(
    events: AsyncGenerator[Event, None], queue: asyncio.Queue[Any], *, end: bool = False
) -> None:
    """Hand ``events`` to ``queue`` (then the end marker, or the error that stopped them)."""
    try:
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                await queue.put(event)
    except Exception as exc:  # the broker went away, or nothing moved for the idle timeout
        await queue.put(exc)
        return
    if end:
        await queue.put(_END)


async def _progress(events: AsyncGenerator[Event, None], queue: asyncio.Queue[Any]) -> None:
    """Hand the ``task.progress`` reports among ``events`` (``tasks.results``) to ``queue``."""

    async def reports() -> AsyncGenerator[Event, None]:
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                if isinstance(event, TaskProgress):
                    yield event

    await _pump(reports(), queue)


async def _lines(settings: Settings, workflow_id: str, queue: asyncio.Queue[Any]) -> None:
    """Hand the workflow's output chunks from now on to ``queue``; best effort: without a
    ``tasks.output`` topic, or READ on it, the view goes on without output lines."""
    try:
        output_at = await key_cursor(settings, "tasks.output", workflow_id, from_end=True)
        events = follow_key(settings, workflow_id, output_at)
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                if isinstance(event, TaskOutput):
                    await queue.put(event)
    except MeshError as exc:
        log.info("output lines not shown", error=str(exc))


class _Shown:
    """What the live view shows besides the state: when following began, latest progress."""

    def __init__(self, began: float) -> None:
        self.began = began
        self.progress: dict[str, TaskProgress] = {}
        self.last_lines: dict[str, tuple[int, str]] = {}
        """Task id → (attempt, the last line it printed)."""

    def render(self, state: WorkflowState) -> Group:
        now = datetime.now(UTC)
        done = sum(1 for t in state.tasks.values() if t.is_final)
        total = len(state.tasks)
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=max(total, 1), completed=done, width=30),
            f"{done}/{total} tasks",
            f"watched {duration_text(time.monotonic() - self.began)}",
        )
        notes = {
            task_id: _progress_text(report)
            for task_id, report in self.progress.items()
            if (task := state.tasks.get(task_id)) is not None
            and task.attempt == report.attempt
            and not task.is_final
        }
        lines = {
            task_id: line
            for task_id, (attempt, line) in self.last_lines.items()
            if (task := state.tasks.get(task_id)) is not None
            and task.attempt == attempt
            and not task.is_final
        }
        table = tasks_table(
            state, title=headline(state, now), now=now, progress=notes, last_lines=lines
        )
        return Group(bar, table)


def _progress_text(report: TaskProgress) -> str:
    percent = f"{report.percent:.0f}%" if report.percent is not None else ""
    return " ".join(part for part in (percent, report.message) if part)


def _event_line(event: WorkflowEvent) -> str:
    task = getattr(event, "task_id", None) or ""
    return f"{format_time(event.occurred_at)} {event.type:<22} {task}".rstrip()


def last_line(text: str, limit: int = 200) -> str:
    """The last non-blank line of ``text``, cut to ``limit`` characters (a table cell)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _output_line(chunk: TaskOutput, line: str) -> str:
    return f"{format_time(chunk.occurred_at)} {chunk.type:<22} {chunk.task_id} " + escape(line)


def _progress_line(report: TaskProgress) -> str:
    return f"{format_time(report.occurred_at)} {report.type:<22} {report.task_id} " + (
        _progress_text(report)
    )


def stopped_following(workflow_id: str) -> None:
    """After Ctrl-C: the workflow goes on; say how to follow it again (one line, stderr)."""
    sys.stderr.write(
        f"mesh: stopped following workflow {workflow_id}; it goes on. Follow it again with: "
        f"{mesh_command()} watch {workflow_id}\n"
    )


__all__ = ["TICK_SECONDS", "follow", "stopped_following"]
