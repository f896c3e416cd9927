"""Every command documents itself: ``--help`` shows an example and offers ``--json``."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mesh.cli import app


def _commands() -> list[str]:
    root = typer.main.get_command(app)
    found: list[str] = []

    def walk(command: Any, path: list[str]) -> None:  # Typer's own (vendored) click types
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
        else:
            found.append(" ".join(path))

    walk(root, [])
    return sorted(found)


COMMANDS = _commands()


def test_the_command_tree_is_found() -> None:
    assert {"submit", "replay", "tail", "dlq redrive", "agents spawn", "run workflows"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example_and_json(command: str) -> None:
    shown = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "example" in shown.output.lower(), command
    assert "--json" in shown.output, command
