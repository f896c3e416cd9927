"""The README tells the truth about the configuration and stays inside the repository: every
``MESH_*`` variable the code reads is in its configuration table (and nothing else is), no link
leaves the repository, and the broker address has one flag name everywhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from mesh.access import load_access
from mesh.cli import app
from mesh.console import ConsoleSettings
from mesh.observe.serve import ENV_HOST as METRICS_HOST
from mesh.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _options(command: Any) -> Iterator[Any]:
    """Every parameter of ``command`` and its subcommands (typer's own click: duck-typed)."""
    yield from command.params
    for sub in (getattr(command, "commands", None) or {}).values():
        yield from _options(sub)


def _cli() -> Any:
    return typer.main.get_command(app)


def configuration_variables() -> set[str]:
    """Every MESH_* variable the code reads: the settings objects and options' env vars."""
    names = {f"MESH_{field.upper()}" for field in Settings.model_fields}
    names |= {f"MESH_UI_{field.upper()}" for field in ConsoleSettings.model_fields}
    names.add(METRICS_HOST)  # read by the metrics server itself, beside --metrics-port's variable
    for param in _options(_cli()):
        envvars = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
        names |= {str(v) for v in envvars if v and str(v).startswith("MESH_")}
    return names


def table_variables() -> set[str]:
    """The variables of the README's configuration table (its first column)."""
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(MESH_[A-Z_]+)` \|", section, re.M))


def test_every_mesh_variable_is_in_the_configuration_table() -> None:
    code = configuration_variables()
    documented = table_variables()
    assert "MESH_PLANNER_TEMPLATES" in code  # the check reads the planner's settings too
    assert code - documented == set(), "add these to the README's configuration table"
    assert documented - code == set(), "the README documents variables nothing reads"


def test_no_link_leaves_the_repository() -> None:
    targets = re.findall(r"\]\(([^)]+)\)", README)
    for target in targets:
        assert not re.match(r"[a-z]+:", target), f"external link {target}"
        path = (ROOT / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), f"{target} points outside the repository"
        assert path.exists(), f"{target} does not exist"
    urls = re.findall(r"https?://[^\s)`'\"<>]+", README)
    outside = [u for u in urls if not re.match(r"https?://(127\.0\.0\.1|localhost|host)[:/]", u)]
    assert outside == [], "the README links outside the repository"


def test_the_broker_address_has_one_flag_name() -> None:
    """``--bootstrap-servers`` (``-b``) on the root and on ``mesh dev``; nothing else."""
    flags = {
        flag
        for param in _options(_cli())
        if param.param_type_name == "option"
        for flag in param.opts
        if "bootstrap" in flag
    }
    assert flags == {"--bootstrap-servers"}
    assert re.findall(r"--bootstrap\b(?!-servers)", README) == []


def test_the_secured_cluster_table_is_the_shipped_access_file() -> None:
    """Each row of the README's table of ACLs names what ``access/components.yaml`` grants
    that component, no more and no less."""
    section = README.split("## Running mesh on a secured cluster", 1)[1].split("\n## ", 1)[0]
    for component in load_access(ROOT / "access").components:
        (row,) = [r for r in section.splitlines() if f"| `{component.principal}` |" in r]
        cells = [set(re.findall(r"`([^`]+)`", c)) for c in row.strip("|").split("|")[2:]]
        assert cells == [
            set(component.read),
            set(component.write),
            set(component.groups),
            set(component.transactional_ids),
        ], component.component
