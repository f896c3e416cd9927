"""``mesh agents list|health|spawn|terminate`` — the Agent Manager's API on the command line.

``list`` and ``health`` read the registry, heartbeats and breaker states from Kafka (nothing but
the broker needs to run); ``spawn`` and ``terminate`` are requests that an Agent Manager
(``mesh run agents``, or ``mesh dev``) carries out on its host and answers. Tables on a terminal,
one JSON document with ``--json``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
import yaml
from pydantic import JsonValue
from rich.markup import escape

from mesh.agentmanager import HealthPolicy
from mesh.broker.embedded import recorded_broker
from mesh.cli._app import settings_of
from mesh.cli._client import with_client
from mesh.cli._output import print_json, print_table, say
from mesh.client import AgentReport, agent_states
from mesh.dev import DevOptions, dev_capability_map
from mesh.errors import ConfigError
from mesh.settings import Settings

app = typer.Typer(
    help="List, inspect, spawn and terminate agents (through the Agent Manager).\n\n"
    "Example: mesh agents spawn shell --count 2 && mesh agents list",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
MissedOption = Annotated[
    float | None,
    typer.Option(
        min=0.1,
        help="Missed heartbeats before an agent counts as unhealthy (as 'mesh run agents "
        "--missed-heartbeats') [default: 2]",
        show_default=False,
    ),
]
WaitOption = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for the Agent Manager.")
]

_HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "unhealthy": "red", "offline": "dim"}


def _reports(ctx: typer.Context, missed: float | None) -> list[AgentReport]:
    policy = HealthPolicy.after(missed) if missed else HealthPolicy()
    return asyncio.run(agent_states(settings_of(ctx), policy=policy))


def capability_map(settings: Settings) -> tuple[dict[str, str], str]:
    """The Task Planner's map of template capability → agent capability, and where it comes
    from: ``MESH_PLANNER_CAPABILITY_MAP``, else ``mesh dev``'s default while a ``mesh dev``
    runs here, else none (capabilities are used as the templates name them)."""
    if settings.planner_capability_map:
        return dict(settings.planner_capability_map), "MESH_PLANNER_CAPABILITY_MAP"
    running = recorded_broker(settings.state_dir)
    if running is not None and running.owned and running.owner == "mesh dev":
        return dev_capability_map(DevOptions()), "mesh dev default"
    return {}, "none"


def _health(value: str) -> str:
    return f"[{_HEALTH_STYLE.get(value, 'bold')}]{value}[/]"


def _capabilities(report: AgentReport) -> str:
    parts = []
    for c in report.state.capabilities:
        text = c.name + (f"={c.level}" if c.level is not None else "")
        parts.append(text + "".join(f"#{tag}" for tag in c.tags))
    return escape(", ".join(parts))


@app.command("list")
def list_agents(
    ctx: typer.Context, missed_heartbeats: MissedOption = None, as_json: JsonFlag = False
) -> None:
    """Registered agents: kind, capabilities, health, host and pid.

    Example: mesh agents list --json
    """
    reports = _reports(ctx, missed_heartbeats)
    mapping, source = capability_map(settings_of(ctx))
    if as_json:
        print_json(
            {
                "agents": [r.as_json() for r in reports],
                "capability_map": mapping,
                "capability_map_source": source,
            }
        )
        return
    if mapping:
        pairs = ", ".join(f"{name} → {target}" for name, target in mapping.items())
        say(f"planner capability map ({source}): {escape(pairs)}")
    if not reports:
        say("no agents registered (start some: mesh agents spawn shell)")
        return
    rows = [
        [
            escape(r.state.agent_id),
            r.state.kind,
            _capabilities(r),
            r.state.status,
            _health(r.state.health),
            escape(r.state.host or ""),
            r.as_json()["pid"],
        ]
        for r in reports
    ]
    columns = ["agent", "kind", "capabilities", "status", "health", "host", "pid"]
    print_table(f"{len(reports)} agents", columns, rows)


@app.command()
def health(
    ctx: typer.Context,
    agent_ids: Annotated[
        list[str] | None, typer.Argument(help="Only these agents [default: all].")
    ] = None,
    missed_heartbeats: MissedOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Health from heartbeats: healthy, degraded, unhealthy or offline; load, breaker.

    Example: mesh agents health shell-1 --json
    """
    reports = _reports(ctx, missed_heartbeats)
    if agent_ids:
        known = {r.state.agent_id for r in reports}
        missing = [a for a in agent_ids if a not in known]
        if missing:
            raise ConfigError(f"no registered agent {missing[0]!r} (see 'mesh agents list')")
        reports = [r for r in reports if r.state.agent_id in agent_ids]
    if as_json:
        print_json({"agents": [_health_json(r) for r in reports]})
        return
    if not reports:
        say("no agents registered")
        return
    now = datetime.now(UTC)
    rows = []
    for r in reports:
        beat = r.heartbeat
        rows.append(
            [
                escape(r.state.agent_id),
                _health(r.state.health),
                f"{r.state.missed_heartbeats:g}",
                f"{(now - r.state.last_seen).total_seconds():.1f} s ago",
                f"{beat.running_tasks}/{r.state.max_concurrency}" if beat else "-",
                r.state.breaker,
                r.state.status,
            ]
        )
    columns = ["agent", "health", "missed", "last seen", "running", "breaker", "status"]
    print_table("agent health", columns, rows)


def _health_json(report: AgentReport) -> dict[str, Any]:
    data = report.as_json()
    keys = (
        "agent_id",
        "health",
        "missed_heartbeats",
        "last_seen",
        "running_tasks",
        "max_concurrency",
        "load",
        "reported_health",
        "breaker",
        "status",
    )
    return {key: data[key] for key in keys}


@app.command()
def spawn(
    ctx: typer.Context,
    template: Annotated[
        str,
        typer.Argument(
            help="Agent template (agents/templates.yaml of the Agent Manager) or a base kind: "
            "command, python."
        ),
    ],
    count: Annotated[int, typer.Option(min=1, max=100, help="Instances to start.")] = 1,
    name: Annotated[
        str | None, typer.Option(help="Id stem: <name>-1, <name>-2 … [default: the template]")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a template field, FIELD=VALUE (YAML value; repeatable), e.g. "
            "--set max_concurrency=4 --set 'argv=[my-cli, -p, \"{prompt}\"]'",
        ),
    ] = None,
    timeout: WaitOption = 90.0,
    as_json: JsonFlag = False,
) -> None:
    """Start agents from a template on the Agent Manager's host; prints their ids and pids
    once they have registered.

    Example: mesh agents spawn llm-coder --count 2 --set 'argv=[claude, -p, "{prompt}"]'
    """
    config = dict(_setting(text) for text in set_ or ())
    agents = with_client(
        settings_of(ctx),
        lambda c: c.spawn_agent(template, config, count=count, name=name, within=timeout),
        timeout=timeout,
    )
    if as_json:
        print_json({"agents": agents})
        return
    for agent in agents:
        say(f"spawned {agent['agent_id']} (pid {agent['pid']} on {agent['host']})")


@app.command()
def terminate(
    ctx: typer.Context,
    agent_id: Annotated[str, typer.Argument(help="The agent to stop.")],
    grace: Annotated[
        float, typer.Option(min=0, help="Seconds it may drain before it is killed.")
    ] = 10.0,
    reason: Annotated[str, typer.Option(help="Why, for the Agent Manager's log.")] = "",
    timeout: WaitOption = 60.0,
    as_json: JsonFlag = False,
) -> None:
    """Stop an agent: SIGTERM (it finishes or hands back its work and deregisters), SIGKILL
    after the grace period.

    Example: mesh agents terminate shell-1 --grace 30
    """
    done = with_client(
        settings_of(ctx),
        lambda c: c.terminate_agent(agent_id, grace=grace, reason=reason),
        timeout=timeout,
    )
    if as_json:
        print_json(done)
        return
    how = "killed after the grace period" if done.get("forced") else "stopped"
    say(f"{how}: {agent_id} (pid {done.get('pid')}, exit code {done.get('exit_code')})")


def _setting(text: str) -> tuple[str, JsonValue]:
    """``FIELD=VALUE`` with VALUE read as YAML (so lists and numbers keep their types)."""
    field, sep, raw = text.partition("=")
    if not sep or not field.strip():
        raise ConfigError(f"bad --set {text!r}: use FIELD=VALUE, e.g. --set max_concurrency=2")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "unreadable"
        raise ConfigError(f"bad --set {field}: the value is not YAML ({problem})") from exc
    if not isinstance(value, str | int | float | bool | list | dict) and value is not None:
        raise ConfigError(f"bad --set {field}: use a string, number, boolean or list")
    return field.strip(), value
