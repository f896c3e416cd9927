"""``mesh agent run`` — an agent process.

It runs until SIGTERM or Ctrl-C, then shut down gracefully and exit 0 (a second Ctrl-C stops at
once). Their logs are structlog lines on stderr (JSON when piped); unless ``--log-level`` is given
they log at INFO, because a long-running process that says nothing cannot be operated.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import structlog
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
    load_agents,
)
from mesh.cli._app import settings_of
from mesh.errors import ConfigError
from mesh.events import Capability
from mesh.log import configure_logging

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
    json_logs: Annotated[
        bool,
        typer.Option(
            "--json", help="Log one JSON object per line (the default when stderr is no terminal)."
        ),
    ] = False,
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
    chosen_id = agent_id or f"{kind.value}-{_host()}-{os.getpid()}"
    _service_logging(ctx, "agent", chosen_id, json_logs)
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
    _serve(AgentWorker(settings, config, runner).run)


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


def _serve(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    try:
        asyncio.run(_until_signalled(main))
    except asyncio.CancelledError:
        raise typer.Exit(130) from None
    # Shut down already: a late SIGTERM (a supervisor repeating itself) must not turn the clean
    # exit into "killed by signal" while the interpreter finishes.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


async def _until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)``; SIGTERM or SIGINT sets ``stop``, a second SIGINT cancels at once.

    A repeated SIGTERM stays graceful: Ctrl-C in ``mesh dev`` reaches every process of the
    terminal's group and the supervisor then sends its own SIGTERM, which must not cut the
    shutdown short (a supervisor that wants it shorter sends SIGKILL).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    interrupts = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal interrupts
        if sig is signal.SIGINT:
            interrupts += 1
        if interrupts > 1 and task is not None:
            task.cancel()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)  # removed when asyncio.run closes the loop
    await main(stop)


def _service_logging(
    ctx: typer.Context, component: str, instance: str | None, json_logs: bool = False
) -> None:
    """Bind the component and, unless ``--log-level`` was given, log at INFO."""
    configure_logging(component, instance=instance)
    root = ctx.find_root()
    source = root.get_parameter_source("log_level")
    if source is None or source.name == "DEFAULT":
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


def _host() -> str:
    return "".join(socket.gethostname().split()) or "host"
