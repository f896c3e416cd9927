"""How commands print: a rich table or text on a terminal, one JSON document with ``--json``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from mesh.times import format_time

PIPED_WIDTH = 160
"""Width of tables written to a pipe or file (no terminal to fit; ``COLUMNS`` wins): wide
enough that ids and times stay on one line for grep, where rich would assume 80."""


def _console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPED_WIDTH if piped else None)


console = _console()
err_console = _console(stderr=True)


def json_default(value: object) -> str:
    """How values JSON has no type for are written: times as ISO 8601 in UTC with ``T`` and
    ``Z`` (as events carry them), anything else as its text."""
    if isinstance(value, datetime):
        return format_time(value, "auto")
    return str(value)


def dumps(data: Any, *, indent: int | None = None) -> str:
    """``data`` as JSON text, the way every command writes it."""
    separators = None if indent is not None else (",", ":")
    return json.dumps(data, indent=indent, separators=separators, default=json_default)


def rounded(value: Any) -> Any:
    """``value`` with its floats rounded for people (6 significant digits: 0.30000000000000004
    reads 0.3); JSON output keeps them whole."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def compact(value: Any) -> str:
    """A value on one line for people: JSON without spaces, floats rounded, text unescaped."""
    return json.dumps(
        rounded(value), separators=(",", ":"), ensure_ascii=False, default=json_default
    )


def print_json(data: Any) -> None:
    """Write ``data`` as one JSON document on stdout (for scripts)."""
    sys.stdout.write(dumps(data, indent=2) + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Render rows as a table (coloured on a terminal, plain when piped). The first column
    (the id a reader copies into the next command) is never shortened: on a narrow terminal
    the other columns fold onto more lines instead, never cut to an ellipsis."""
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    table = Table(title=title, show_lines=False, header_style="bold")
    for i, column in enumerate(columns):
        if i == 0:
            widest = max([len(column), *(len(row[0]) for row in cells if row)])
            table.add_column(column, no_wrap=True, min_width=widest)
        else:  # short values (a status, a count) stay whole; long ones fold
            widest = max([0, *(len(row[i]) for row in cells if len(row) > i)])
            table.add_column(column, overflow="fold", min_width=min(widest, 10))
    for row in cells:
        table.add_row(*row)
    console.print(table)


def say(message: str, style: str | None = None) -> None:
    """A human line on stdout, never cut into lines by the console (a terminal wraps it; a
    pipe gets it whole, for grep)."""
    console.print(message, style=style, highlight=False, soft_wrap=True)
