"""``mesh topics validate|plan|apply|check|describe|export`` — topics as code, a thin shell over
``mesh.topics``.

Exit codes: 0 fine; 1 an error (one line on stderr); 2 from ``check`` when the cluster differs
from the declarations (as ``terraform plan -detailed-exitcode`` does, so a script can tell
drift from failure). ``apply`` (and ``apply --dry-run``): 0 every difference was applied (or
would be), 1 a change failed or apply could not run, 2 a difference was refused or left as is
(blocked, unsupported) and none failed. ``apply --json`` prints one JSON document whatever
happens, with each change's outcome.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from mesh.cli._app import settings_of
from mesh.cli._output import console, print_json
from mesh.errors import ConfigError, MeshError, TopicSpecError
from mesh.settings import Settings
from mesh.topics import (
    DEFAULT_DIR,
    EXPORT_FILE,
    Change,
    ChangeKind,
    ChangeStatus,
    Problem,
    TopicDeclarations,
    TopicPlan,
    apply_topics,
    beyond,
    declared_topics,
    describe_topics,
    export_declarations,
    listed,
    load_declarations,
    load_topics,
    open_prefix,
    plan_topics,
    plural,
    summarize,
    validate_declarations,
)

DRIFT_EXIT_CODE = 2
PROGRESS_FROM = 5  # changes; fewer finish before a bar would be worth drawing

app = typer.Typer(
    help="Topics as code: validate topics/*.yaml, plan and apply them, check for drift.\n\n"
    "Example: mesh topics plan && mesh topics apply",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        envvar="MESH_TOPICS_DIR",
        help=f"Directory of the topic declarations [default: ./{DEFAULT_DIR}; env MESH_TOPICS_DIR]",
        show_default=False,
    ),
]
ReplicationOption = Annotated[
    int | None,
    typer.Option(
        "--replication-factor",
        envvar="MESH_TOPIC_REPLICATION_FACTOR",
        min=1,
        help="Replication factor of topics that do not pin one (1 on a laptop, 3 on a "
        "production cluster) [env MESH_TOPIC_REPLICATION_FACTOR]",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help=f"Write {EXPORT_FILE} into this directory (never over an existing file) "
        "instead of printing it",
        show_default=False,
    ),
]
"""Where ``export`` writes (``mesh topics export``, ``mesh access export``)."""
AllowDeleteFlag = Annotated[
    bool,
    typer.Option("--allow-delete", help="Delete topics under the prefix that are not declared."),
]

_SYMBOL = {
    ChangeKind.CREATE: "+",
    ChangeKind.ALTER_CONFIG: "~",
    ChangeKind.ADD_PARTITIONS: "~",
    ChangeKind.REDUCE_PARTITIONS: "!",
    ChangeKind.CHANGE_REPLICATION_FACTOR: "!",
    ChangeKind.DELETE: "-",
}
_STYLE = {
    ChangeStatus.PLANNED: "green",
    ChangeStatus.APPLIED: "green",
    ChangeStatus.BLOCKED: "yellow",
    ChangeStatus.REFUSED: "red",
    ChangeStatus.UNSUPPORTED: "yellow",
    ChangeStatus.FAILED: "red",
}
_LABEL = {
    ChangeStatus.REFUSED: "refused: ",
    ChangeStatus.UNSUPPORTED: "unsupported by this broker: ",
    ChangeStatus.BLOCKED: "",
    ChangeStatus.FAILED: "failed: ",
}


def _emit(text: str, style: str | None = None) -> None:
    """One human line, never wrapped or read as markup; the style stays on this line only."""
    console.print(Text(text, style=style or ""), highlight=False, soft_wrap=True)


def _change_line(change: Change) -> str:
    line = f"  {_SYMBOL[change.kind]} {change.summary()}"
    if change.status in _LABEL:
        line += f" ({_LABEL[change.status]}{change.reason})"
    return line


def _show_changes(plan: TopicPlan, changes: tuple[Change, ...]) -> None:
    for change in changes:
        _emit(_change_line(change), _STYLE[change.status])
    for note in plan.notes:
        _emit(f"  note: {note}", "dim")


def _declared(ctx: typer.Context, directory: Path | None, rf: int | None) -> TopicDeclarations:
    return load_topics(directory, prefix=settings_of(ctx).topic_prefix, replication_factor=rf)


def _where(settings: Settings) -> str:
    return f"prefix {settings.topic_prefix!r} on {settings.bootstrap_servers}"


@app.command()
def validate(
    ctx: typer.Context,
    directory: DirOption = None,
    replication_factor: ReplicationOption = None,
    as_json: JsonFlag = False,
    against_cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Also ask the live cluster: refuse what its brokers would refuse (replication "
            "factor above the broker count, min.insync.replicas above it, configs they reject).",
        ),
    ] = False,
) -> None:
    """Check the declarations offline: names, partitions, replication, config keys and values.

    Example: mesh topics validate --dir topics
    """
    settings = settings_of(ctx)
    prefix = settings.topic_prefix
    declarations = load_declarations(directory, replication_factor=replication_factor)
    problems = validate_declarations(declarations, prefix=prefix)
    if against_cluster and not problems:
        planned = asyncio.run(plan_topics(settings, declarations.topics))
        problems = [
            Problem(str(declarations.directory), f"{c.summary()}: {c.reason}", topic=c.name)
            for c in planned.changes
            if c.status is ChangeStatus.REFUSED
        ]
    if as_json:
        print_json(
            {
                "valid": not problems,
                "directory": str(declarations.directory),
                "prefix": prefix,
                "files": list(declarations.files),
                "topics": [spec.name for spec in declarations.topics],
                "problems": [problem.as_dict() for problem in problems],
            }
        )
    elif not problems:
        _emit(
            f"{plural(len(declarations.topics), 'topic')} in "
            f"{plural(len(declarations.files), 'file')} under "
            f"{declarations.directory} are valid for prefix {prefix!r}"
            + (f" on {settings.bootstrap_servers}" if against_cluster else ""),
            "green",
        )
    elif len(problems) > 1:
        for problem in problems:
            _emit(str(problem), "red")
    if not problems:
        return
    if as_json or len(problems) == 1:
        raise TopicSpecError(summarize(problems))
    raise TopicSpecError(
        f"{plural(len(problems), 'problem')} in the topic declarations under "
        f"{declarations.directory} (listed above)"
    )


@app.command()
def plan(
    ctx: typer.Context,
    directory: DirOption = None,
    replication_factor: ReplicationOption = None,
    allow_delete: AllowDeleteFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Show how the cluster differs from the declarations, and what apply would do.

    Example: mesh topics plan --json
    """
    settings = settings_of(ctx)
    declarations = _declared(ctx, directory, replication_factor)
    result = asyncio.run(plan_topics(settings, declarations.topics, allow_delete=allow_delete))
    if as_json:
        print_json(result.as_dict())
        return
    if result.in_sync:
        _emit(f"no changes: the topics under {_where(settings)} match the declarations", "green")
    else:
        _emit(f"plan for {_where(settings)}:")
    _show_changes(result, result.changes)
    if not result.in_sync:
        _emit(_tally(result))


def _tally(result: TopicPlan) -> str:
    counts: dict[str, int] = {}
    for change in result.changes:
        word = "to apply" if change.status is ChangeStatus.PLANNED else str(change.status)
        counts[word] = counts.get(word, 0) + 1
    parts = ", ".join(f"{n} {word}" for word, n in counts.items())
    return f"{plural(len(result.changes), 'difference')}: {parts}"


class _ApplyDisplay:
    """Lines as changes complete; a progress bar too when many run on a terminal."""

    def __init__(self, quiet: bool) -> None:
        self._quiet = quiet
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def planned(self, result: TopicPlan) -> None:
        count = len(result.planned)
        if self._quiet or not console.is_terminal or count < PROGRESS_FROM:
            return
        self._progress = Progress(
            TextColumn("applying"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("apply", total=count)

    def applied(self, change: Change) -> None:
        if self._quiet:
            return
        if self._progress is not None and self._task is not None:
            # Before the line: printing redraws the bar from its last refresh.
            self._progress.update(self._task, advance=1, refresh=True)
        _emit(_change_line(change), _STYLE[change.status])

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@app.command()
def apply(
    ctx: typer.Context,
    directory: DirOption = None,
    replication_factor: ReplicationOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
    allow_delete: AllowDeleteFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Create, alter and grow topics to match the declarations (delete only with --allow-delete).

    Example: mesh topics apply --dry-run
    """
    settings = settings_of(ctx)
    if as_json:
        _apply_json(ctx, directory, replication_factor, dry_run, allow_delete)
        return
    declarations = _declared(ctx, directory, replication_factor)
    display = _ApplyDisplay(quiet=dry_run)
    _emit(f"{'dry run for' if dry_run else 'applying to'} {_where(settings)}:")
    try:
        result = asyncio.run(
            apply_topics(
                settings,
                declarations.topics,
                dry_run=dry_run,
                allow_delete=allow_delete,
                on_plan=display.planned,
                on_change=display.applied,
            )
        )
    finally:
        display.close()
    if dry_run:
        _show_changes(result.plan, result.plan.changes)
    else:
        _show_changes(result.plan, result.skipped)
    verb = "would apply" if dry_run else "applied"
    failed = f"; {len(result.failed)} failed" if result.failed else ""
    skipped = f"; {len(result.skipped)} left as they are" if result.skipped else ""
    if not result.changes and not result.skipped and not result.failed:
        _emit("  no changes: the topics already match the declarations", "green")
    else:
        _emit(f"{verb} {plural(len(result.changes), 'change')}{failed}{skipped}")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _apply_json(
    ctx: typer.Context,
    directory: Path | None,
    replication_factor: int | None,
    dry_run: bool,
    allow_delete: bool,
) -> None:
    """``apply --json``: one document on stdout whatever happens; an error that stops apply
    before any change is the document's ``error`` (and the line on stderr)."""
    settings = settings_of(ctx)
    try:
        declarations = _declared(ctx, directory, replication_factor)
        result = asyncio.run(
            apply_topics(settings, declarations.topics, dry_run=dry_run, allow_delete=allow_delete)
        )
    except MeshError as exc:
        print_json(
            {
                "prefix": settings.topic_prefix,
                "dry_run": dry_run,
                "exit_code": 1,
                "error": str(exc),
                "changes": [],
                "failed": [],
                "skipped": [],
                "notes": [],
            }
        )
        raise
    print_json(result.as_dict())
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command()
def check(
    ctx: typer.Context,
    directory: DirOption = None,
    replication_factor: ReplicationOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Exit 0 when the cluster matches the declarations, 2 (listing the differences) if not.

    Example: mesh topics check || mesh topics apply
    """
    settings = settings_of(ctx)
    declarations = _declared(ctx, directory, replication_factor)
    result = asyncio.run(plan_topics(settings, declarations.topics))
    if as_json:
        print_json(result.as_dict())
    elif result.in_sync:
        _emit(f"in sync: the topics under {_where(settings)} match the declarations", "green")
        _show_changes(result, ())
    else:
        _emit(f"drift: the topics under {_where(settings)} differ from the declarations:", "red")
        _show_changes(result, result.changes)
        _emit(_tally(result))
    if not result.in_sync:
        raise typer.Exit(DRIFT_EXIT_CODE)


@app.command()
def describe(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="One topic, logical (plans) or full (mesh.plans).")
    ] = None,
    directory: DirOption = None,
    as_json: JsonFlag = False,
) -> None:
    """List the live topics under the prefix: partitions, replication factor, configs set.

    Example: mesh topics describe workflow.events
    """
    settings = settings_of(ctx)
    topics = asyncio.run(describe_topics(settings, name))
    declared: set[str] | None = None
    if directory is not None or DEFAULT_DIR.is_dir():
        # Only to mark undeclared topics: a half-broken file must not hide the live view.
        found = load_declarations(directory).topics
        declared = {spec.full_name(settings.topic_prefix) for spec in found}
    prefix = settings.topic_prefix
    if as_json:
        rows = [
            {
                "topic": topic.name,
                "name": topic.name[len(prefix) :],
                "partitions": topic.partitions,
                "replication_factor": topic.replication_factor,
                "configs": topic.overrides() if topic.configs_reported else None,
                "configs_reported": topic.configs_reported,
                "declared": None if declared is None else topic.name in declared,
            }
            for topic in topics
        ]
        print_json({"prefix": prefix, "topics": rows})
        return
    if not topics:
        _emit(f"no topics under {_where(settings)}", "yellow")
        return
    table = Table(title=f"topics under {_where(settings)}", header_style="bold")
    table.add_column("topic", no_wrap=True)
    table.add_column("partitions", justify="right", no_wrap=True)
    table.add_column("rf", justify="right", no_wrap=True)
    table.add_column("configs set on the topic", overflow="fold")
    if declared is not None:
        table.add_column("declared", no_wrap=True)
    for topic in topics:
        shown = (
            "\n".join(f"{key}={value}" for key, value in topic.overrides().items())
            if topic.configs_reported
            else "(not reported by this broker)"
        )
        cells = [topic.name, str(topic.partitions), str(topic.replication_factor), shown]
        if declared is not None:
            cells.append("yes" if topic.name in declared else "no")
        table.add_row(*(escape(cell) for cell in cells))
    console.print(table)


@app.command()
def export(
    ctx: typer.Context,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            help="Export the topics under this prefix [default: MESH_TOPIC_PREFIX]",
            show_default=False,
        ),
    ] = None,
    out: OutOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the live topics under a prefix as declarations, to adopt an existing cluster.

    Example: mesh topics export --prefix team1. --out topics && mesh topics plan --dir topics
    """
    settings = settings_of(ctx)
    if prefix is not None:
        settings = settings.model_copy(update={"topic_prefix": prefix})
    target = export_target(out)
    topics = asyncio.run(describe_topics(settings))
    text = export_declarations(topics, settings.topic_prefix, settings.bootstrap_servers)
    if open_prefix(settings.topic_prefix):
        strangers = beyond(settings.topic_prefix, [t.name for t in topics])
        _warn(
            f"warning: the prefix {settings.topic_prefix!r} does not end with '.', '_' or '-', "
            "so it matches other prefixes' topics too; exported among them: "
            f"{listed(strangers) or 'none'}"
        )
    if target is not None:
        write_export(target, text)
    if as_json:
        print_json(
            {
                "prefix": settings.topic_prefix,
                "file": None if target is None else str(target),
                "topics": declared_topics(topics, settings.topic_prefix),
            }
        )
        return
    if target is None:
        console.file.write(text)
        return
    _emit(
        f"exported {plural(len(topics), 'topic')} under {_where(settings)} to {target}; "
        f"see it in sync: MESH_TOPIC_PREFIX={settings.topic_prefix} mesh topics plan --dir {out}",
        "green",
    )


def _warn(text: str) -> None:
    typer.echo(text, err=True)


def export_target(out: Path | None) -> Path | None:
    """The file ``export --out DIR`` writes; refused (one line) if it exists."""
    target = out / EXPORT_FILE if out is not None else None
    if target is not None and target.exists():
        raise ConfigError(f"{target} exists; export never overwrites a file (choose another --out)")
    return target


def write_export(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
