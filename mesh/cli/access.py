"""``mesh access plan|apply|check`` — ACLs and client quotas as code, a thin shell over
``mesh.access``.

Exit codes: ``plan`` 0; ``check`` 0 in sync, 2 drift; ``apply`` 0 every change made, 1 one
failed (the others are still made). An error is one line on stderr and exit 1. ``--json``
prints one JSON document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.text import Text

from mesh.access import (
    AccessPlan,
    AclChange,
    QuotaChange,
    apply_access,
    export_components,
    load_access,
    plan_access,
    read_prefix_acls,
)
from mesh.cli._app import settings_of
from mesh.cli._output import console, print_json
from mesh.cli.topics import OutOption, export_target, write_export
from mesh.topics import plural

DRIFT_EXIT_CODE = 2
FAILED_EXIT_CODE = 1

app = typer.Typer(
    help="ACLs as code: per component, the principal it runs as and what it may do "
    "(access/*.yaml); plan, apply and check them within the topic prefix.\n\n"
    "Example: mesh access plan && mesh access apply",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        envvar="MESH_ACCESS_DIR",
        help="Directory of the access declarations [default: ./access; env MESH_ACCESS_DIR]",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]


def _emit(text: str, style: str = "") -> None:
    console.print(Text(text, style=style), highlight=False, soft_wrap=True)


def _show(plan: AccessPlan, changes: Sequence[AclChange | QuotaChange]) -> None:
    for change in changes:
        _emit(f"  {change}", "red" if change.status == "failed" else "green")
    for note in plan.notes:
        _emit(f"  note: {note}", "dim")


def _where(ctx: typer.Context) -> str:
    settings = settings_of(ctx)
    return f"prefix {settings.topic_prefix!r} on {settings.bootstrap_servers}"


@app.command()
def plan(ctx: typer.Context, directory: DirOption = None, as_json: JsonFlag = False) -> None:
    """Show the ACLs apply would add and remove.

    Example: mesh access plan --dir access
    """
    result = asyncio.run(plan_access(settings_of(ctx), load_access(directory)))
    if as_json:
        print_json(result.as_dict())
        return
    if result.in_sync:
        _emit(f"no changes: the ACLs under {_where(ctx)} match the declarations", "green")
    else:
        _emit(f"plan for {_where(ctx)}:")
    _show(result, result.changes)
    if not result.in_sync:
        _emit(plural(len(result.changes), "change") + " to apply")


@app.command()
def check(ctx: typer.Context, directory: DirOption = None, as_json: JsonFlag = False) -> None:
    """Exit 0 when the ACLs match the declarations, 2 (listing the differences) if not.

    Example: mesh access check || mesh access apply
    """
    result = asyncio.run(plan_access(settings_of(ctx), load_access(directory)))
    if as_json:
        print_json(result.as_dict())
    elif result.in_sync:
        _emit(f"in sync: the ACLs under {_where(ctx)} match the declarations", "green")
        _show(result, ())
    else:
        _emit(f"drift: the ACLs under {_where(ctx)} differ from the declarations:", "red")
        _show(result, result.changes)
    if not result.in_sync:
        raise typer.Exit(DRIFT_EXIT_CODE)


@app.command()
def apply(
    ctx: typer.Context,
    directory: DirOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Add and remove the declared principals' ACLs under the prefix to match the declarations.

    Example: mesh access apply --dry-run
    """
    settings = settings_of(ctx)
    declared = load_access(directory)
    result, outcomes = asyncio.run(apply_access(settings, declared, dry_run=dry_run))
    failed = [c for c in outcomes if c.status == "failed"]
    if as_json:
        print_json(
            {
                **result.as_dict(),
                "dry_run": dry_run,
                "exit_code": FAILED_EXIT_CODE if failed else 0,
                "changes": [c.as_dict() for c in outcomes],
            }
        )
    else:
        _emit(f"{'dry run for' if dry_run else 'applied to'} {_where(ctx)}:")
        _show(result, outcomes)
        done = len(outcomes) - len(failed)
        verb = "would apply" if dry_run else "applied"
        tail = f"; {len(failed)} failed" if failed else ""
        _emit(f"{verb} {plural(done, 'change')}{tail}")
    if failed:
        raise typer.Exit(FAILED_EXIT_CODE)


@app.command()
def export(
    ctx: typer.Context,
    out: OutOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the ACLs on resources under the prefix as declarations, one component per
    principal (quotas are not exported); bindings they cannot express are listed on stderr.

    Example: mesh access export --out access && mesh access plan --dir access
    """
    settings = settings_of(ctx)
    target = export_target(out)
    components, left_out = export_components(
        asyncio.run(read_prefix_acls(settings)), settings.topic_prefix
    )
    for acl in left_out:
        typer.echo(f"warning: not exported (no declaration expresses it): {acl}", err=True)
    text = (
        f"# Exported by 'mesh access export' from {settings.bootstrap_servers} under the "
        f"prefix {settings.topic_prefix!r}.\n"
        + yaml.safe_dump({"components": components}, sort_keys=False)
    )
    if target is not None:
        write_export(target, text)
    if as_json:
        print_json(
            {
                "prefix": settings.topic_prefix,
                "file": None if target is None else str(target),
                "components": components,
                "left_out": [acl.as_dict() for acl in left_out],
            }
        )
    elif target is None:
        console.file.write(text)
    else:
        _emit(
            f"exported the ACLs of {plural(len(components), 'principal')} under {_where(ctx)} "
            f"to {target}",
            "green",
        )
