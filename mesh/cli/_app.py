"""The root ``mesh`` command: global connection flags and the error boundary.

Flags override ``MESH_*`` environment variables; the resulting ``Settings`` travel in the Click
context to every subcommand. With no broker address given (no ``--bootstrap-servers``, no
``MESH_BOOTSTRAP_SERVERS``), commands go to the embedded broker that ``mesh dev`` or ``mesh
broker start`` recorded and that still runs, so a second terminal needs no export.
:func:`main` is the one place where errors become a single readable line and an exit code, so
no subcommand prints a traceback for a known situation.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from mesh.broker.embedded import recorded_broker
from mesh.errors import MeshError
from mesh.events import validation_message
from mesh.log import configure_logging
from mesh.settings import Settings

app = typer.Typer(
    name="mesh",
    help="An event mesh on Apache Kafka: plan, run and replay workflows of agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    bootstrap_servers: Annotated[
        str | None,
        typer.Option(
            "--bootstrap-servers", "-b", help="Kafka brokers [env MESH_BOOTSTRAP_SERVERS]"
        ),
    ] = None,
    topic_prefix: Annotated[
        str | None, typer.Option(help="Prefix of the mesh's topics [env MESH_TOPIC_PREFIX]")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(help="Kafka client id [env MESH_CLIENT_ID]")
    ] = None,
    security_protocol: Annotated[
        str | None,
        typer.Option(
            help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL [env MESH_SECURITY_PROTOCOL]"
        ),
    ] = None,
    sasl_mechanism: Annotated[
        str | None,
        typer.Option(help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 [env MESH_SASL_MECHANISM]"),
    ] = None,
    sasl_username: Annotated[
        str | None,
        typer.Option(help="SASL user; the password comes only from MESH_SASL_PASSWORD"),
    ] = None,
    ssl_cafile: Annotated[
        Path | None, typer.Option(help="CA bundle for TLS [env MESH_SSL_CAFILE]")
    ] = None,
    resource_gate: Annotated[
        bool | None,
        typer.Option(
            "--resource-gate/--no-resource-gate",
            help="Dispatch a ready task only once the Resource Allocator granted its resources "
            "[env MESH_RESOURCE_GATE]",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "WARNING",
) -> None:
    """Build the settings once; flags win over the environment."""
    overrides: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "topic_prefix": topic_prefix,
        "client_id": client_id,
        "security_protocol": security_protocol,
        "sasl_mechanism": sasl_mechanism,
        "sasl_username": sasl_username,
        "ssl_cafile": ssl_cafile,
        "resource_gate": resource_gate,
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise MeshError(f"invalid setting {validation_message(exc)}") from exc
    configure_logging("cli", level=log_level.upper())
    ctx.meta[BOOTSTRAP_GIVEN] = bootstrap_servers is not None
    if (
        bootstrap_servers is None
        and "MESH_BOOTSTRAP_SERVERS" not in os.environ
        and ctx.invoked_subcommand != "dev"  # it starts a mesh; it does not look for one
    ):
        running = recorded_broker(settings.state_dir)
        if running is not None:
            settings = settings.model_copy(update={"bootstrap_servers": running.bootstrap_servers})
    ctx.obj = settings


BOOTSTRAP_GIVEN = "mesh.bootstrap_given"
"""Context key: True when ``--bootstrap-servers`` was given on the root command."""


def bootstrap_given(ctx: typer.Context) -> bool:
    """True when the root command got ``--bootstrap-servers`` (``mesh -b HOST:PORT dev``)."""
    return bool(ctx.find_root().meta.get(BOOTSTRAP_GIVEN))


def mesh_command() -> str:
    """How to run ``mesh`` again, as this process was run, so a hint works as printed: ``mesh``
    when PATH finds this very script, else its path (``.venv/bin/mesh``), else ``python -m
    mesh`` with this interpreter."""
    script = Path(sys.argv[0])
    if script.name == "mesh":
        found = shutil.which("mesh")
        if found is not None and Path(found).absolute() == script.absolute():
            return "mesh"
        return _from_here(script)
    return f"{_from_here(Path(sys.executable))} -m mesh"


def _from_here(path: Path) -> str:
    try:
        relative = path.absolute().relative_to(Path.cwd())
    except ValueError:
        return shlex.quote(str(path.absolute()))
    return shlex.quote(str(relative) if relative.parent != Path() else f"./{relative}")


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root command built (for subcommands)."""
    root_ctx = ctx.find_root()
    settings = root_ctx.obj
    if not isinstance(settings, Settings):  # invoked without the root callback (tests)
        settings = Settings()
        root_ctx.obj = settings
    return settings


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app and turn every known failure into one line."""
    command = typer.main.get_command(app)
    try:
        # Without standalone mode Click returns the code of a raised Exit instead of exiting.
        code = command.main(args=argv, prog_name="mesh", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("mesh: aborted\n")
        sys.exit(130)
    except typer.TyperException as exc:  # Click's usage and parameter errors derive from it
        hint = ""
        usage_ctx = getattr(exc, "ctx", None)
        if usage_ctx is not None:
            hint = f" (see '{usage_ctx.command_path} --help')"
        sys.stderr.write(f"mesh: error: {exc.format_message()}{hint}\n")
        sys.exit(exc.exit_code)
    except MeshError as exc:
        sys.stderr.write(f"mesh: error: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("mesh: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:  # `mesh dlq list --json | head`: the reader has what it wanted
        with contextlib.suppress(OSError):  # point stdout at nothing so the exit flush is quiet
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    sys.exit(code if isinstance(code, int) else 0)
