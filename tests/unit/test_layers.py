"""The package stays layered: pure domain below, Kafka adapters above it, the CLI on top.

Like eventsourcing's domain → persistence → application, a module may import only from its own
layer or the layers below; this test reads every module's imports (without running them).

Every component has one shape: ``mesh/<component>/`` holds its pure code (decider, policies,
state) and ``mesh/<component>/runtime/`` its Kafka app and API handlers. The pure part imports
no Kafka client, no I/O framework, no HTTP client and nothing from the layers above; and no
module reaches into another package's private modules (``mesh.x._y`` from outside ``mesh.x``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mesh"

COMPONENTS = ("workflows", "planner", "resources", "agentmanager")
"""Each has its pure package and its ``runtime`` subpackage."""

DOMAIN = (
    "mesh.errors",
    "mesh.events",
    "mesh.settings",
    *(f"mesh.{component}" for component in COMPONENTS),
    "mesh.times",
    "mesh.replay._diff",
    "mesh.replay._timeline",
    "mesh.replay._stepper",
    "mesh.replay._file",
)
"""Pure: no Kafka client, no I/O framework, nothing from the layers above."""

RUNTIMES = tuple(f"mesh.{component}.runtime" for component in COMPONENTS)
"""The components' Kafka apps live beside their domain but are not part of it."""

FORBIDDEN_FOR_DOMAIN = (
    "aiokafka",
    "faststream",
    "httpx",
    "mesh.kafka",
    "mesh.broker",
    "mesh.client",
    "mesh.cli",
    "mesh.dev",
    "mesh.supervisor",
    "mesh.agents",
    "mesh.topics",
    "mesh.inspect",
    *RUNTIMES,
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


def _modules(root: Path = PACKAGE) -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in root.rglob("*.py")}


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


def _top(name: str) -> str:
    """The top-level package of a mesh module (``mesh.agentmanager.runtime._x`` →
    ``mesh.agentmanager``); a top-level module is its own."""
    return ".".join(name.split(".")[:2])


def _private_of_another(module: str, imported: str) -> bool:
    """``imported`` is a private module (a ``_x`` part) of another mesh package."""
    if not imported.startswith("mesh.") or _top(imported) == _top(module):
        return False
    return any(part.startswith("_") for part in imported.split(".")[2:])


def domain_problems(modules: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} imports {imported}"
        for module, imports in modules.items()
        if _is(module, DOMAIN) and not _is(module, RUNTIMES)
        for imported in imports
        if _is(imported, FORBIDDEN_FOR_DOMAIN)
    )


def private_problems(modules: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} imports {imported}"
        for module, imports in modules.items()
        for imported in imports
        if _private_of_another(module, imported)
    )


def test_domain_modules_import_no_adapter_or_cli() -> None:
    assert domain_problems(_modules()) == []


def test_no_module_imports_another_packages_private_modules() -> None:
    assert private_problems(_modules()) == []


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_component_has_a_pure_package_and_a_runtime(component: str) -> None:
    assert (PACKAGE / component / "__init__.py").is_file()
    assert (PACKAGE / component / "runtime" / "__init__.py").is_file()
    modules = _modules()
    assert _is(f"mesh.{component}", DOMAIN)
    # The runtime is where Kafka is used: the check above is not vacuous.
    runtime = {m: i for m, i in modules.items() if m.startswith(f"mesh.{component}.runtime")}
    kafka = ("aiokafka", "faststream", "mesh.kafka")
    assert any(_is(name, kafka) for i in runtime.values() for name in i)


def test_only_the_cli_imports_the_cli() -> None:
    problems = [
        f"{module} imports {imported}"
        for module, imports in _modules().items()
        if not module.startswith("mesh.cli") and module != "mesh.__main__"
        for imported in imports
        if _is(imported, ("mesh.cli",))
    ]
    assert problems == []


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_planted_bad_module_fails_the_check(component: str, tmp_path: Path) -> None:
    """A pure module that imports aiokafka, or another package's private module, is caught:
    the checks above are not vacuous."""
    root = tmp_path / "mesh"
    (root / component).mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / component / "__init__.py").write_text("")
    (root / component / "_bad.py").write_text(
        "from aiokafka import AIOKafkaConsumer\nfrom mesh.kafka._x import y\n"
    )
    global PACKAGE
    saved, PACKAGE = PACKAGE, root
    try:
        planted = _modules(root)
    finally:
        PACKAGE = saved
    assert domain_problems(planted) == [
        f"mesh.{component}._bad imports aiokafka",
        f"mesh.{component}._bad imports mesh.kafka._x",
    ]
    assert private_problems(planted) == [f"mesh.{component}._bad imports mesh.kafka._x"]
