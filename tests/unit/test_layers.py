"""The package stays layered: pure domain below, Kafka adapters above it, the CLI on top.

Like eventsourcing's domain → persistence → application, a module may import only from its own
layer or the layers below; this test reads every module's imports (without running them).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mesh"

DOMAIN = (
    "mesh.errors",
    "mesh.events",
    "mesh.workflows._",
    "mesh.settings",
    "mesh.planner._",
    "mesh.resources._",
    "mesh.replay._times",
    "mesh.replay._diff",
    "mesh.replay._timeline",
    "mesh.replay._stepper",
    "mesh.replay._file",
)
"""Pure: no Kafka client, no I/O framework, nothing from the layers above."""

ADAPTERS = (
    "mesh.planner._app",
    "mesh.resources._app",
    "mesh.resources._outbox",
    "mesh.resources._reader",
)
"""The components' Kafka apps live beside their domain but are not part of it."""

FORBIDDEN_FOR_DOMAIN = (
    "aiokafka",
    "faststream",
    "mesh.kafka",
    "mesh.broker",
    "mesh.client",
    "mesh.cli",
    "mesh.dev",
    "mesh.supervisor",
    "mesh.agents",
    "mesh.workflows.runtime",
    "mesh.topics",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _is(name: str, prefixes: tuple[str, ...]) -> bool:
    """``name`` is one of the modules, or inside one (a prefix ending in ``_`` matches private
    submodules such as ``mesh.workflows._decider``)."""
    for prefix in prefixes:
        if prefix.endswith("._"):
            if name.startswith(prefix):
                return True
        elif name == prefix or name.startswith(prefix + "."):
            return True
    return False


def test_domain_modules_import_no_adapter_or_cli() -> None:
    problems = [
        f"{module} imports {imported}"
        for module, imports in _modules().items()
        if _is(module, DOMAIN) and not _is(module, ADAPTERS)
        for imported in imports
        if _is(imported, FORBIDDEN_FOR_DOMAIN)
    ]
    assert problems == []


def test_only_the_cli_imports_the_cli() -> None:
    problems = [
        f"{module} imports {imported}"
        for module, imports in _modules().items()
        if not module.startswith("mesh.cli") and module != "mesh.__main__"
        for imported in imports
        if _is(imported, ("mesh.cli",))
    ]
    assert problems == []


def test_the_check_can_fail() -> None:
    """A module importing aiokafka is caught (so the tests above are not vacuous)."""
    assert _is("aiokafka.admin", FORBIDDEN_FOR_DOMAIN)
    assert _is("mesh.events._mapper", DOMAIN)
    assert _is("mesh.workflows._decider", DOMAIN)
    assert not _is("mesh.client", ("mesh.cli",))
    assert not _is("mesh.workflows.runtime", DOMAIN)
    assert "mesh.events" in _modules()
