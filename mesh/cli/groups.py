"""``mesh groups`` — lag per component's consumer group; ``mesh groups reset COMPONENT
--to-time T`` — move a stopped component back to reprocess from a point in time."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from mesh.cli._app import settings_of
from mesh.cli._output import print_json, print_table, say
from mesh.inspect import apply_reset, group_infos, plan_reset
from mesh.times import format_time, parse_time, to_millis

app = typer.Typer(
    help="Consumer groups of the mesh's components: lag, and reset to a point in time.\n\n"
    "Example: mesh groups --json",
    invoke_without_command=True,
)

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.callback()
def groups(ctx: typer.Context, as_json: Json = False) -> None:
    """Lag of each component's consumer group (group, topic, partitions, committed, end, lag).

    Example: mesh groups
    """
    if ctx.invoked_subcommand is not None:
        return
    infos = asyncio.run(group_infos(settings_of(ctx)))
    if as_json:
        print_json({"groups": [info.as_json() for info in infos]})
        return
    if not infos:
        say("no consumer groups under this mesh's prefix (is anything running?)")
        return
    rows: list[tuple[object, ...]] = []
    for info in infos:
        members = f"{info.state} ({len(info.members)})"
        by_topic: dict[str, list[tuple[int, int, int]]] = {}
        for p in info.partitions:
            by_topic.setdefault(p.topic, []).append((p.committed, p.end, p.lag))
        if not by_topic:
            rows.append((info.component, members, "-", 0, "", "", ""))
        for topic, parts in by_topic.items():
            rows.append(
                (
                    info.component,
                    members,
                    topic,
                    len(parts),
                    sum(c for c, _, _ in parts),
                    sum(e for _, e, _ in parts),
                    sum(lag for _, _, lag in parts),
                )
            )
    print_table(
        "consumer groups",
        ["group", "state (members)", "topic", "partitions", "committed", "end", "lag"],
        rows,
    )


@app.command("reset")
def reset(
    ctx: typer.Context,
    component: Annotated[
        str, typer.Argument(help="Component (e.g. workflows, planner) or its full group name.")
    ],
    to_time: Annotated[
        str,
        typer.Option(
            "--to-time",
            help="Reprocess from the first record at or after T (ISO 8601, no offset = UTC; 15m, "
            "2h, 1d ago; epoch ms). Needs offsets by timestamp: Apache Kafka.",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the planned offsets; change nothing.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Move a stopped component's group back (or forward) to a point in time.

    Every replica must be stopped: a group with active members is refused (--dry-run still
    shows the plan, and who is in the group). Prints the offsets planned per partition.

    Example: mesh groups reset workflows --to-time 2026-12-05T02:00:00Z --dry-run
    """
    settings = settings_of(ctx)
    at_ms = to_millis(parse_time(to_time))
    plan = asyncio.run(plan_reset(settings, component, at_ms, dry_run=dry_run))
    if not dry_run:
        asyncio.run(apply_reset(settings, plan))  # refuses while the group has members
    if as_json:
        print_json(
            {
                "group": plan.group,
                "component": plan.component,
                "to_time": format_time(plan.at_ms),
                "dry_run": dry_run,
                "applied": not dry_run,
                "members": list(plan.members),
                "partitions": [step.as_json() for step in plan.steps],
            }
        )
        return
    print_table(
        f"{plan.group} to {format_time(plan.at_ms)}" + (" (dry run)" if dry_run else ""),
        ["topic", "partition", "current", "new", "change"],
        [
            (s.topic, s.partition, s.current, s.target, f"{s.target - s.current:+d}")
            for s in plan.steps
        ],
    )
    if dry_run:
        say("dry run: nothing changed")
        if plan.members:
            say(
                f"the group has {len(plan.members)} active member(s) "
                f"({', '.join(plan.members[:5])}): stop every {plan.component} replica before "
                "resetting for real",
                "yellow",
            )
    else:
        say(f"reset {plan.group}: {len(plan.steps)} partition(s) committed", "green")
