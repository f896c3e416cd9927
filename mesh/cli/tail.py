"""``mesh tail TOPIC`` — the records of a topic, decoded and coloured, one per line.

Anything that is not a mesh event is shown as escaped, truncated bytes with the reason, never a
crash. Ctrl-C ends a follow cleanly (exit 0): it is how a follow is meant to stop; so does a
reader that goes away (``mesh tail … | head``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.text import Text

from mesh.cli._app import settings_of
from mesh.cli._output import compact, console, dumps
from mesh.errors import ConfigError
from mesh.events import Event
from mesh.inspect import (
    EVENT_TYPES,
    FILTER_NAMES,
    Seen,
    Start,
    TailOptions,
    escape,
    parse_filter,
)
from mesh.inspect import (
    tail as tail_records,
)
from mesh.settings import Settings
from mesh.times import format_time, parse_time, to_millis

_ENVELOPE = frozenset(
    {
        "event_id",
        "type",
        "schema_version",
        "occurred_at",
        "correlation_id",
        "causation_id",
        "producer",
    }
)
_VALUE_CHARS = 80
_RAW_SHOWN = 160

FILTER_HELP = (
    "Only records matching EXPR, on decoded fields: comparisons (== != < <= > >= in, not in), "
    "and/or/not, dotted fields, constants, e.g. 'type == \"task.failed\"' or "
    "'attempt > 1 and task_id == \"B\"'. Record fields: topic partition offset timestamp key "
    "headers raw."
)


def tail(
    ctx: typer.Context,
    topic: Annotated[
        str, typer.Argument(help="Topic: a logical name (workflow.events) or a full name.")
    ],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest record.")
    ] = False,
    from_offset: Annotated[
        int | None,
        typer.Option("--from-offset", min=0, help="Start at this offset in each partition read."),
    ] = None,
    from_time: Annotated[
        str | None,
        typer.Option(
            "--from-time",
            help="Start at the first record at or after T (ISO 8601, no offset = UTC; 15m, 2h, "
            "1d ago; epoch ms). Needs offsets by timestamp: Apache Kafka, not the embedded broker.",
        ),
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", help="Only this workflow's records (reads only its partition)."),
    ] = None,
    where: Annotated[str | None, typer.Option("--filter", metavar="EXPR", help=FILTER_HELP)] = None,
    max_records: Annotated[
        int | None, typer.Option("--max", min=1, help="Stop after N records shown.")
    ] = None,
    until_end: Annotated[
        bool,
        typer.Option("--until-end", help="Stop at the end the topic had when tail started."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print a topic's records as they arrive (from its end unless told otherwise).

    Example: mesh tail workflow.events --from-beginning --until-end --filter 'type == "task.failed"'
    """
    chosen = [
        name
        for name, given in (
            ("--from-beginning", from_beginning),
            ("--from-offset", from_offset is not None),
            ("--from-time", from_time is not None),
        )
        if given
    ]
    if len(chosen) > 1:
        raise ConfigError(f"choose one start: {' and '.join(chosen)} were both given")
    start: Start = "end"
    if from_beginning:
        start = "beginning"
    elif from_offset is not None:
        start = "offset"
    elif from_time is not None:
        start = "time"
    options = TailOptions(
        topic=topic,
        start=start,
        offset=from_offset,
        at_ms=to_millis(parse_time(from_time)) if from_time is not None else None,
        workflow=workflow,
        where=parse_filter(where, known=FILTER_NAMES, values=EVENT_TYPES)
        if where is not None
        else None,
        until_end=until_end,
        max_records=max_records,
    )
    settings = settings_of(ctx)
    try:
        asyncio.run(_run(settings, options, as_json=as_json))
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a follow ends: the clients are already stopped
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as Unix tools do, and keep Python's
        # final flush of stdout from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


async def _run(settings: Settings, options: TailOptions, *, as_json: bool) -> None:
    async with contextlib.aclosing(tail_records(settings, options)) as records:
        async for seen in records:
            if as_json:
                sys.stdout.write(dumps(seen.as_json()) + "\n")
            elif console.is_terminal:
                console.print(render(seen), no_wrap=True, overflow="ellipsis", soft_wrap=False)
            else:
                sys.stdout.write(render(seen).plain + "\n")
            sys.stdout.flush()


_STYLES = (
    (("failed", "timed_out", "rejected", "denied", "dead_letter"), "bold red"),
    (("completed", "succeeded", "allocated", "released"), "green"),
    (("started", "assigned", "created", "registered"), "cyan"),
    (("scheduled", "ready", "requested", "queued", "progress", "heartbeat"), "blue"),
    (("retry_scheduled", "reassigned", "waiting", "paused", "resumed"), "yellow"),
    (("cancelled", "skipped", "terminated"), "magenta"),
)


def style_of(event_type: str) -> str:
    """The colour of an event type, by what its last word says happened."""
    last = event_type.rsplit(".", 1)[-1]
    for endings, style in _STYLES:
        if last in endings:
            return style
    return "white"


def render(seen: Seen) -> Text:
    """One line: time, partition:offset, type, key, then the event's own fields."""
    line = Text()
    when = format_time(seen.timestamp)[11:23] if seen.timestamp >= 0 else "--:--:--.---"
    line.append(when, style="dim")
    line.append(f" {seen.position:>7} ", style="dim")
    if seen.event is None:
        line.append(f"{'<not an event>':<24}", style="bold yellow")
        line.append(f" {seen.key or '-'} ", style="cyan")
        size = f"{seen.value_size} B" if seen.raw is not None else "tombstone"
        line.append(f"[{size}] ", style="yellow")
        if seen.raw is not None:
            line.append(escape(seen.raw, _RAW_SHOWN, total=seen.value_size), style="yellow")
        line.append(f"  ({seen.decode_error})", style="dim")
        return line
    event = seen.event
    line.append(f"{event.type:<24}", style=style_of(event.type))
    line.append(f" {seen.key or '-'}", style="cyan")
    for name, value in _fields(event, seen.key):
        line.append(f" {name}=", style="dim")
        line.append(value)
    return line


def _fields(event: Event, key: str | None) -> list[tuple[str, str]]:
    data: dict[str, Any] = event.model_dump(mode="json", exclude_none=True)
    shown = []
    for name, value in data.items():
        if name in _ENVELOPE or value == key or value in ("", [], {}):
            continue
        text = value if isinstance(value, str) else compact(value)
        text = " ".join(text.split())
        if len(text) > _VALUE_CHARS:
            text = text[: _VALUE_CHARS - 1] + "…"
        quoted = json.dumps(text, ensure_ascii=False)  # … stays …, not \u2026
        shown.append((name, quoted if " " in text or not text else text))
    return shown
