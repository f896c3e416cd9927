"""``mesh replay --all [--since T1] [--until T2]``: the shadow replay, shown with a progress bar
(events per second) and a diff against the live snapshots."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mesh.cli._output import err_console, print_json, print_table, say
from mesh.replay import ShadowResult, shadow_replay
from mesh.settings import Settings
from mesh.times import format_time


def replay_all(
    settings: Settings, *, since_ms: int | None, until_ms: int | None, as_json: bool
) -> None:
    """Run the shadow replay, print it, and exit 1 if any workflow differs from live."""
    bar = Progress(
        TextColumn("[bold]shadow replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    job = bar.add_task("replay", total=None, rate="")
    clock = {"began": 0.0}

    def advance(read: int, total: int, folded: int) -> None:
        loop = asyncio.get_running_loop()
        if not clock["began"]:
            clock["began"] = loop.time()
        elapsed = max(loop.time() - clock["began"], 1e-9)
        bar.update(job, completed=read, total=total, rate=f"{folded / elapsed:,.0f} events/s")

    with bar:
        result = asyncio.run(
            shadow_replay(
                settings,
                since_ms=since_ms,
                until_ms=until_ms,
                keep_states=False,
                progress=advance,
            )
        )
    for note in result.notes:
        err_console.print(f"mesh: note: {note}", highlight=False)
    if as_json:
        print_json(as_dict(result))
    else:
        _show(result)
    if result.differing:
        raise typer.Exit(1)


def _when(millis: int | None) -> str | None:
    return None if millis is None else format_time(millis)


def as_dict(result: ShadowResult) -> dict[str, Any]:
    """The shadow replay as plain data (``--json``)."""
    return {
        "since": _when(result.since_ms),
        "until": _when(result.until_ms),
        "workflows": len(result.projection),
        "records_read": result.records_read,
        "events_folded": result.events_folded,
        "seconds": round(result.seconds, 3),
        "events_per_second": round(result.events_per_second, 1),
        "statuses": dict(Counter(status for status, _ in result.projection.values())),
        "compared": result.compared,
        "differing_count": len(result.differing),
        "differing": result.differing,
        "differences": {
            wid: [d.as_dict() for d in found] for wid, found in result.differences.items()
        },
        "problems": result.problems,
        "not_compared": result.not_compared,
        "projection": {
            wid: {"status": status, "sequence": sequence}
            for wid, (status, sequence) in sorted(result.projection.items())
        },
        "notes": result.notes,
    }


def _show(result: ShadowResult) -> None:
    window = f"{_when(result.since_ms) or 'the start'} … {_when(result.until_ms) or 'now'}"
    say(f"shadow replay of {window}: {len(result.projection)} workflow(s)")
    say(
        f"{result.records_read:,} records read, {result.events_folded:,} events folded in "
        f"{result.seconds:.2f} s ({result.events_per_second:,.0f} events/s)"
    )
    statuses = Counter(status for status, _ in result.projection.values())
    if statuses:
        say("  " + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())))
    reasons = Counter(result.not_compared.values())
    for reason, n in sorted(reasons.items()):
        say(f"  not compared: {n} ({reason})", "dim")
    differing = result.differing
    if not differing:
        say(f"compared {result.compared} with their live snapshots: no difference", "green")
        return
    say(f"compared {result.compared} with their live snapshots: {len(differing)} differ", "red")
    rows = []
    for wid in differing:
        if wid in result.problems:
            rows.append((wid, 1, result.problems[wid]))
            continue
        found = result.differences[wid]
        rows.append((wid, len(found), str(found[0])))
    print_table(None, ["workflow", "differences", "first difference"], rows)
