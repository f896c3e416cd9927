"""``mesh schemas export|check`` — the generated contracts under ``schemas/``.

Example: mesh schemas export && git diff schemas/
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mesh.cli._output import print_json, say
from mesh.schemagen import Problem, check, export

app = typer.Typer(
    help="Generate and check the event JSON Schemas and the AsyncAPI document.\n\n"
    "Example: mesh schemas export && mesh schemas check",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path,
    typer.Option(
        "--dir",
        envvar="MESH_SCHEMAS_DIR",
        help="The schemas directory [env MESH_SCHEMAS_DIR].",
        file_okay=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]


def _fail(problems: list[Problem]) -> None:
    # One line per problem, in the same shape as the error boundary's single-line errors.
    for problem in problems:
        sys.stderr.write(f"mesh: error: {problem}\n")
    raise typer.Exit(1)


def _as_data(problems: list[Problem]) -> list[dict[str, str]]:
    return [{"kind": p.kind, "path": p.path, "message": p.message} for p in problems]


@app.command("export")
def export_command(
    directory: DirOption = Path("schemas"),
    force: Annotated[
        bool,
        typer.Option("--force", help="Overwrite even when a change breaks a published version."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Write events/<type>/v<version>.json and asyncapi.yaml from the event models.

    Refuses (and writes nothing) when a change would break a version already in the directory.

    Example: mesh schemas export --dir schemas
    """
    report = export(directory, force=force)
    refused = bool(report.breaking) and not force
    if as_json:
        print_json(
            {
                "ok": not refused,
                "dir": str(directory),
                "written": report.written,
                "unchanged": len(report.unchanged),
                "removed": report.removed,
                "problems": _as_data(report.breaking),
            }
        )
        if refused:
            raise typer.Exit(1)
        return
    if refused:
        _fail(report.breaking)
    for rel in report.written:
        say(f"wrote {(directory / rel).as_posix()}")
    for rel in report.removed:
        say(f"removed {(directory / rel).as_posix()}")
    say(
        f"{len(report.written)} written, {len(report.unchanged)} unchanged, "
        f"{len(report.removed)} removed in {directory.as_posix()}"
    )


@app.command("check")
def check_command(directory: DirOption = Path("schemas"), as_json: JsonFlag = False) -> None:
    """Fail if schemas are stale or missing, or if a change breaks a published version.

    Example: mesh schemas check --json
    """
    problems = check(directory)
    if as_json:
        print_json({"ok": not problems, "dir": str(directory), "problems": _as_data(problems)})
        if problems:
            raise typer.Exit(1)
        return
    if problems:
        _fail(problems)
    say(f"{directory.as_posix()}: every generated file is up to date and compatible", "green")
