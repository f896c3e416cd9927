"""``mesh agent run`` — an agent process.

It runs until SIGTERM or Ctrl-C, then shuts down gracefully and exits 0 (a second Ctrl-C stops at
once; see :mod:`mesh.cli._service`, which every long-running command shares).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mesh.agentmanager.runtime import parse_capability as capability_of
from mesh.agents import (
    DEFAULT_FAIL_MAX,
    DEFAULT_RESET_TIMEOUT,
    MAX_OUTPUT_BYTES,
    MAX_RESPONSE_BYTES,
    AgentWorker,
    CommandConfig,
    CommandRunner,
    HttpConfig,
    HttpRunner,
    PythonRunner,
    Runner,
    WorkerConfig,
    host_name,
    load_agents,
)
from mesh.cli._app import settings_of
from mesh.cli._service import JsonLogs, MetricsPort, serve
from mesh.errors import ConfigError
from mesh.events import Capability

app = typer.Typer(
    help="Run an agent (command, Python or HTTP); the Agent Manager ('mesh run agents') assigns "
    "it tasks.\n\n"
    "Example: mesh agent run --kind command --id shell-1 --capability shell "
    "--allow-task-command",
    no_args_is_help=True,
)


class Kind(StrEnum):
    command = "command"
    python = "python"
    http = "http"


@app.command()
def run(
    ctx: typer.Context,
    kind: Annotated[
        Kind,
        typer.Option(
            "--kind", help="command: run a program; python: SDK functions; http: POST to --url."
        ),
    ],
    agent_id: Annotated[
        str | None,
        typer.Option("--id", help="Agent instance id [default: <kind>-<host>-<pid>]"),
    ] = None,
    capability: Annotated[
        list[str] | None,
        typer.Option(
            "--capability",
            help="What a command or HTTP agent can do: NAME, NAME=LEVEL or NAME=LEVEL#TAG#TAG "
            "(repeatable; Python agents take theirs from their @agent functions)",
        ),
    ] = None,
    max_concurrency: Annotated[int, typer.Option(min=1, help="Attempts run at once.")] = 1,
    heartbeat_interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between heartbeats.")
    ] = 5.0,
    grace_period: Annotated[
        float, typer.Option(min=0, help="On shutdown, seconds running attempts may finish in.")
    ] = 10.0,
    workdir: Annotated[
        Path | None, typer.Option(help="Working directory of commands [default: current]")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="K=V added to the commands' environment (repeatable)."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0.001, help="Seconds one attempt may take at most.")
    ] = None,
    argv: Annotated[
        list[str] | None,
        typer.Option(
            "--argv",
            help="One argv element of the command template, repeated in order, e.g. "
            "--argv claude --argv=-p --argv '{prompt}'. Placeholders: {prompt} {task_id} "
            "{workflow_id} {attempt} {inputs} {inputs.KEY.KEY}; {{prompt}} passes one "
            "literally.",
        ),
    ] = None,
    allow_task_command: Annotated[
        bool,
        typer.Option(
            "--allow-task-command", help="Run a task's own command (demo and test agents)."
        ),
    ] = False,
    module: Annotated[
        str | None,
        typer.Option("--module", help="Python agents: dotted module with @agent functions."),
    ] = None,
    max_output_bytes: Annotated[
        int, typer.Option(min=1, help="Bytes of stdout and of stderr kept per attempt.")
    ] = MAX_OUTPUT_BYTES,
    url: Annotated[
        str | None,
        typer.Option("--url", help="HTTP agents: the endpoint each attempt is POSTed to."),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            help="HTTP agents: 'Name: value' sent with every request (repeatable; never logged).",
        ),
    ] = None,
    max_response_bytes: Annotated[
        int, typer.Option(min=1, help="HTTP agents: bytes of response body read at most.")
    ] = MAX_RESPONSE_BYTES,
    breaker_fail_max: Annotated[
        int,
        typer.Option(
            min=1, help="Consecutive infrastructure failures that open the circuit breaker."
        ),
    ] = DEFAULT_FAIL_MAX,
    breaker_reset_timeout: Annotated[
        float,
        typer.Option(min=0.001, help="Seconds an open breaker waits before one trial attempt."),
    ] = DEFAULT_RESET_TIMEOUT,
    json_logs: JsonLogs = False,
    metrics_port: MetricsPort = 0,
) -> None:
    """Run one agent process: register, heartbeat, run assigned tasks, report results.

    Every attempt goes through the agent's circuit breaker (published on the breakers topic).

    Examples:

    \b
      mesh agent run --kind python --id py-1 --module examples.agents
      mesh agent run --kind http --id review-1 --capability review \\
          --url http://127.0.0.1:8000/run --timeout 30 --breaker-fail-max 3
    """
    settings = settings_of(ctx)
    chosen_id = agent_id or f"{kind.value}-{host_name()}-{os.getpid()}"
    capabilities = tuple(parse_capability(text) for text in capability or ())
    runner: Runner
    labels: dict[str, str] = {}
    if kind is not Kind.http:
        for flag, given in {"--url": url, "--header": header}.items():
            if given:
                raise ConfigError(f"{flag} is for --kind http")
    if kind is Kind.http:
        if url is None:
            raise ConfigError("an HTTP agent needs --url (e.g. --url http://127.0.0.1:8000/run)")
        for flag, value in {
            "--module": module,
            "--argv": argv,
            "--env": env,
            "--workdir": workdir,
            "--allow-task-command": allow_task_command,
        }.items():
            if value:
                raise ConfigError(f"{flag} is not for --kind http")
        http = HttpConfig(
            capabilities=capabilities,
            url=url,
            timeout=timeout,
            headers=dict(parse_header(item) for item in header or ()),
            max_response_bytes=max_response_bytes,
        )
        labels["url"] = http.safe_url
        runner = HttpRunner(http, agent_id=chosen_id)
    elif kind is Kind.python:
        if module is None:
            raise ConfigError("a Python agent needs --module (e.g. --module examples.agents)")
        functions = load_agents(module)
        runner = PythonRunner(functions, timeout=timeout)
        if capabilities:
            raise ConfigError(
                "a Python agent's capabilities come from its @agent functions; drop --capability"
            )
        command_only = {
            "--argv": argv,
            "--env": env,
            "--workdir": workdir,
            "--allow-task-command": allow_task_command,
        }
        for flag, value in command_only.items():
            if value:
                raise ConfigError(f"{flag} is for --kind command")
    else:
        if module is not None:
            raise ConfigError("--module is for --kind python")
        runner = CommandRunner(
            CommandConfig(
                capabilities=capabilities,
                argv=tuple(argv or ()),
                allow_task_command=allow_task_command,
                workdir=(workdir or Path.cwd()).resolve(),
                env=dict(parse_env(item) for item in env or ()),
                timeout=timeout,
                max_output_bytes=max_output_bytes,
            ),
            agent_id=chosen_id,
        )
    config = WorkerConfig(
        agent_id=chosen_id,
        kind=kind.value,
        max_concurrency=max_concurrency,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        labels=labels,
        breaker_fail_max=breaker_fail_max,
        breaker_reset_timeout=breaker_reset_timeout,
    )
    worker = AgentWorker(settings, config, runner)
    serve(
        ctx,
        "agent",
        worker.run,
        instance=chosen_id,
        json_logs=json_logs,
        metrics_port=metrics_port,
    )


def parse_capability(text: str) -> Capability:
    """``NAME``, ``NAME=LEVEL`` or ``NAME=LEVEL#TAG#TAG`` (``#TAG`` without a level works too)."""
    try:
        return capability_of(text)
    except ValueError as exc:
        raise ConfigError(
            f"bad --capability {text!r}: use NAME, NAME=LEVEL (0-10) or NAME=LEVEL#TAG#TAG"
        ) from exc


def parse_env(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` (the value may be empty or hold ``=``)."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(c.isspace() or c == "\0" for c in key):
        raise ConfigError(f"bad --env {text.split('=')[0]!r}: use KEY=VALUE")
    return key, value


def parse_header(text: str) -> tuple[str, str]:
    """``Name: value`` (the value is never echoed back: it may be a token)."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() or c in "\0:" for c in name):
        raise ConfigError(f"bad --header {name[:40]!r}: use 'Name: value'")
    return name, value.strip()
