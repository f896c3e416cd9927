"""``mesh dlq list|show|redrive`` — the dead letters of the mesh, and sending them back.

Redrive is safe to re-run: what was redriven is remembered by the ``dlq-redrive`` group's
committed offsets and a ``mesh-redriven-from`` header on each redriven record (see
``mesh.inspect._dlq``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mesh.cli._app import settings_of
from mesh.cli._output import err_console, print_json, print_table, say
from mesh.events import Mapper
from mesh.inspect import (
    EVENT_TYPES,
    LETTER_FIELDS,
    Filter,
    Letter,
    describe_original,
    find,
    parse_filter,
    parse_position,
    read_letters,
    select,
    whole_letter,
)
from mesh.inspect import (
    redrive as redrive_letters,
)
from mesh.settings import Settings

app = typer.Typer(
    help="Dead letters: list them, show one whole, redrive them to their original topics.\n\n"
    "Example: mesh dlq redrive --filter 'original_channel == \"plans\"' --dry-run",
    no_args_is_help=True,
)

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
Where = Annotated[
    str | None,
    typer.Option(
        "--filter",
        metavar="EXPR",
        help="Only dead letters matching EXPR, e.g. 'error_class == \"InvalidEvent\"' or "
        "'original_channel == \"tasks.results\" and not redriven'. Fields: the dead letter's "
        "(component, error_class, error_message, original_topic, original_offset …), "
        "original_type, original_channel, redriven, and the record's (partition, offset, "
        "timestamp, key).",
    ),
]
_PROGRESS_FROM = 20


def _filter(where: str | None) -> Filter | None:
    return (
        parse_filter(where, known=LETTER_FIELDS, values=EVENT_TYPES) if where is not None else None
    )


def _reason(item: Letter) -> str:
    if item.letter is None:
        return f"not a dead letter: {item.seen.decode_error}"
    text = f"{item.letter.error_class}: {item.letter.error_message}"
    return text if len(text) <= 90 else text[:89] + "…"


@app.command("list")
def list_letters(ctx: typer.Context, where: Where = None, as_json: Json = False) -> None:
    """List the dead letters (position, time, component, where from, why, redriven or not).

    Example: mesh dlq list --filter 'component == "workflow-manager"'
    """
    settings = settings_of(ctx)
    chosen = _filter(where)
    letters = asyncio.run(read_letters(settings))
    items = select(letters, settings, chosen)
    if chosen is None:  # without a filter, also show records that are not dead letters
        items = list(letters.items)
    if as_json:
        print_json({"topic": letters.topic, "letters": [i.summary() for i in items]})
        return
    rows = []
    for item in items:
        letter = item.letter
        origin = (
            f"{letter.original_topic.removeprefix(settings.topic_prefix)}"
            f"[{letter.original_partition}]@{letter.original_offset}"
            if letter is not None
            else ""
        )
        when = item.seen.as_json()["timestamp"] or ""
        rows.append(
            (
                item.position,
                when[5:19].replace("T", " "),
                letter.component if letter is not None else "",
                origin,
                _reason(item),
                "yes" if item.redriven else "",
            )
        )
    redriven = sum(1 for i in items if i.redriven)
    print_table(
        f"{len(items)} dead letters in {letters.topic} ({redriven} redriven)",
        ["offset", "time", "component", "original", "reason", "redriven"],
        rows,
    )


@app.command("show")
def show(
    ctx: typer.Context,
    position: Annotated[
        str, typer.Argument(help="OFFSET, or PARTITION:OFFSET when several partitions have it.")
    ],
    as_json: Json = False,
) -> None:
    """Show one dead letter whole, with its original record decoded (or escaped if not an event).

    Example: mesh dlq show 1:42
    """
    settings = settings_of(ctx)
    partition, offset = parse_position(position)
    document = asyncio.run(_show(settings, partition, offset))
    if as_json:
        print_json(document)
        return
    say(f"dead letter {document['position']} of {document['topic']}", "bold")
    for name, value in document["letter"].items():
        if name != "original_value_base64":
            say(f"  {name}: {value if isinstance(value, str) else json.dumps(value)}")
    say("headers:", "bold")
    for name, value in document["headers"].items():
        say(f"  {name}: {value}")
    original = document["original"]
    say(f"original record (from the {original['source']}):", "bold")
    if "event" in original:
        print_json(original["event"])
    elif original.get("value") is not None:
        say(f"  not a mesh event ({original.get('decode_error')}); {original['value_bytes']} B:")
        say(f"  {original['value']}")
    else:
        say("  no longer available (not carried in the letter, gone from its topic)")


async def _show(settings: Settings, partition: int | None, offset: int) -> dict[str, Any]:
    letters = await read_letters(settings)
    item = find(letters, partition, offset)
    document: dict[str, Any] = {
        "topic": letters.topic,
        "position": item.position,
        "redriven": item.redriven,
        "headers": dict(item.seen.headers),
    }
    if item.letter is None:
        document["letter"] = {"not_a_dead_letter": item.seen.decode_error}
        document["original"] = {"source": "missing", "value": None}
        return document
    whole, original = await whole_letter(settings, item)
    document["letter"] = whole.model_dump(mode="json")
    document["original"] = describe_original(
        original, Mapper(max_event_bytes=settings.max_event_bytes)
    )
    return document


@app.command("redrive")
def redrive(
    ctx: typer.Context,
    where: Where = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count and list what would go; send nothing.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--max", min=1, help="Redrive at most N dead letters.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Send dead letters back to the topics they came from (those not redriven before).

    Each goes with its original key, value and headers plus mesh-redriven-from; running it again
    sends nothing twice.

    Example: mesh dlq redrive --filter 'error_class == "UnknownEventType"' --dry-run
    """
    settings = settings_of(ctx)
    chosen = _filter(where)
    show_bar = not as_json and err_console.is_terminal
    with _bar(show_bar) as (planned, progress):
        result = asyncio.run(
            redrive_letters(
                settings, chosen, dry_run=dry_run, limit=limit, planned=planned, progress=progress
            )
        )
    if as_json:
        print_json(result.as_json())
        return
    verb = "would redrive" if dry_run else "redrove"
    say(f"{verb} {result.redriven} dead letter(s)", "bold green" if result.redriven else None)
    for topic, count in sorted(result.by_topic.items()):
        say(f"  {count} → {topic}")
    if result.already_redriven:
        say(f"{result.already_redriven} matching dead letter(s) were redriven before; left alone")
    for reason in result.unavailable:
        say(f"skipped {reason}", "yellow")


@contextlib.contextmanager
def _bar(enabled: bool) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """A progress bar on stderr for many records; no-op callbacks otherwise."""
    if not enabled:
        yield (lambda total: None, lambda done: None)
        return
    progress = Progress(
        TextColumn("redriving"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    task = progress.add_task("redrive", total=None)

    def planned(total: int) -> None:
        progress.update(task, total=total)
        if total >= _PROGRESS_FROM:
            progress.start()

    with contextlib.ExitStack() as stack:
        stack.callback(progress.stop)
        yield (planned, lambda done: progress.update(task, completed=done))
