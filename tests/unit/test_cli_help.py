"""Every command documents itself: ``--help`` shows an example and offers ``--json``.

The help texts are collected in a child process: invoking the app in-process would configure
logging onto the test runner's captured streams for the rest of the session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

_COLLECT = """
import json, sys
from typer.main import get_command
from typer.testing import CliRunner
from mesh.cli import app

def walk(command, path):
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in subcommands.items():
            yield from walk(sub, [*path, name])
    else:
        yield " ".join(path)

runner = CliRunner()
helps = {
    name: runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"}).output
    for name in walk(get_command(app), [])
}
json.dump(helps, sys.stdout)
"""


def _helps() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _COLLECT], capture_output=True, text=True, timeout=120, check=True
    )
    helps: dict[str, Any] = json.loads(done.stdout)
    return helps


HELPS = _helps()


def test_the_command_tree_is_found() -> None:
    assert {"submit", "replay", "tail", "dlq redrive", "agents spawn", "run workflows"} <= set(
        HELPS
    )


@pytest.mark.parametrize("command", sorted(HELPS))
def test_help_has_an_example_and_json(command: str) -> None:
    shown = HELPS[command]
    assert "example" in shown.lower(), shown
    assert "--json" in shown, shown
