"""``mesh logs WF [TASK]`` — what a workflow's attempts printed, from ``tasks.output``.

The chunks are read from the workflow's partition of ``tasks.output`` (keyed by workflow id),
from its start up to its end when the command began; ``--follow`` goes on live until the
workflow ends. Agents publish a running attempt's output in whole lines every fraction of a
second and before its result, so once the workflow's final event is in the history, the output
partition's end at that moment covers every chunk, and ``--follow`` stops there.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from mesh._aio import cancel_and_wait
from mesh.cli._app import settings_of
from mesh.cli._follow import stopped_following
from mesh.cli._output import dumps
from mesh.cli._workflow_view import task_of
from mesh.client import HistoryCursor, follow_history, follow_key, key_cursor
from mesh.errors import UnknownTask
from mesh.events import TaskOutput
from mesh.replay import live_state
from mesh.settings import Settings
from mesh.times import format_time
from mesh.workflows import WorkflowState


@dataclass(frozen=True)
class Selection:
    """Which chunks to show: a task (or all), an attempt (or all)."""

    task_id: str | None = None
    attempt: int | None = None

    def wants(self, chunk: TaskOutput) -> bool:
        return (self.task_id is None or chunk.task_id == self.task_id) and (
            self.attempt is None or chunk.attempt == self.attempt
        )


def logs(
    ctx: typer.Context,
    workflow_id: Annotated[str, typer.Argument(help="The workflow.")],
    task_id: Annotated[str | None, typer.Argument(help="Only this task [default: all].")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep showing new output until it ends.")
    ] = False,
    attempt: Annotated[
        int | None, typer.Option(min=1, help="Only this attempt [default: all].")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per chunk (JSON lines).")
    ] = False,
) -> None:
    """Show what a workflow's tasks printed (stdout, stderr, text a Python agent yielded, an
    HTTP agent's streamed body), prefixed with task and attempt; with --follow, live until the
    workflow ends. Ctrl-C stops following; the workflow goes on.

    Example: mesh logs wf-0194f3c2 build --follow
    """
    settings = settings_of(ctx)
    selection = Selection(task_id, attempt)
    try:
        asyncio.run(_logs(settings, workflow_id, selection, follow=follow, as_json=as_json))
    except KeyboardInterrupt:
        if follow:
            stopped_following(workflow_id)
        raise typer.Exit(130) from None
    except BrokenPipeError:  # a reader that went away (mesh logs … | head)
        with contextlib.suppress(OSError):
            sys.stdout.close()


async def _logs(
    settings: Settings, workflow_id: str, selection: Selection, *, follow: bool, as_json: bool
) -> None:
    live = await live_state(settings, workflow_id)  # UnknownWorkflow: one line, exit 1
    _check(live.state, selection)
    start = await key_cursor(settings, "tasks.output", workflow_id, from_end=False)
    if not follow or live.state.is_final:
        end = await key_cursor(settings, "tasks.output", workflow_id, from_end=True)
        chunks = follow_key(settings, workflow_id, start, until=end.offset)
    else:
        history = HistoryCursor(settings.topic("workflow.events"), live.partition, live.end_offset)
        chunks = _until_final(settings, workflow_id, start, history)
    async with contextlib.aclosing(chunks) as events:
        async for event in events:
            if isinstance(event, TaskOutput) and selection.wants(event):
                _show(event, as_json)


async def _until_final(
    settings: Settings, workflow_id: str, output: HistoryCursor, history: HistoryCursor
) -> AsyncGenerator[Any, None]:
    """The output partition's events live; once the history shows the workflow's end, up to
    the output partition's end at that moment."""
    ended = asyncio.create_task(_final(settings, workflow_id, history))
    live = follow_key(settings, workflow_id, output)
    try:
        async with contextlib.aclosing(live) as events:
            while True:
                step = asyncio.ensure_future(anext(events))
                await asyncio.wait([step, ended], return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    await cancel_and_wait(step)
                    break
                yield step.result()
        ended.result()  # the history reader's error, if it failed
        end = await key_cursor(settings, "tasks.output", workflow_id, from_end=True)
        async with contextlib.aclosing(
            follow_key(settings, workflow_id, output, until=end.offset)
        ) as rest:
            async for event in rest:
                yield event
    finally:
        await cancel_and_wait(ended)


async def _final(settings: Settings, workflow_id: str, history: HistoryCursor) -> None:
    """Returns once the workflow's history has its final event."""
    async with contextlib.aclosing(follow_history(settings, workflow_id, history)) as events:
        async for _ in events:
            pass


def _check(state: WorkflowState, selection: Selection) -> None:
    """A task or attempt the workflow does not have is a mistake, not an empty log."""
    if selection.task_id is None:
        return
    task = task_of(state, selection.task_id)
    if selection.attempt is not None and selection.attempt > max(task.attempt, 1):
        raise UnknownTask(
            f"task {selection.task_id} of workflow {state.workflow_id} has had "
            f"{task.attempt} attempt(s); there is no attempt {selection.attempt}"
        )


def _show(chunk: TaskOutput, as_json: bool) -> None:
    if as_json:
        document = {
            "workflow_id": chunk.workflow_id,
            "task_id": chunk.task_id,
            "attempt": chunk.attempt,
            "agent_id": chunk.agent_id,
            "stream": chunk.stream,
            "chunk": chunk.chunk,
            "text": chunk.text,
            "truncated": chunk.truncated,
            "occurred_at": chunk.occurred_at,
        }
        sys.stdout.write(dumps(document) + "\n")
    else:
        sys.stdout.write("".join(lines_of(chunk)))
    sys.stdout.flush()


def lines_of(chunk: TaskOutput) -> list[str]:
    """The chunk as lines for people: ``TASK#ATTEMPT stream | line`` (a truncation note last)."""
    prefix = f"{chunk.task_id}#{chunk.attempt} {chunk.stream:<6} | "
    lines = [f"{prefix}{line}\n" for line in chunk.text.splitlines()]
    if chunk.truncated:
        lines.append(
            f"{prefix}[output truncated at {format_time(chunk.occurred_at)}: the agent's cap "
            "per attempt was reached (MESH_OUTPUT_CAP_BYTES); `mesh status WF --task T` keeps "
            "the attempt's result]\n"
        )
    return lines


__all__ = ["Selection", "lines_of", "logs"]
