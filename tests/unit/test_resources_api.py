"""The package's shape: pure domain below the Kafka adapters, an explicit sorted API, and the
command line's one-line errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mesh.resources
from tests.helpers import assert_one_line_error, run_mesh

PACKAGE = Path(mesh.resources.__file__).parent
ADAPTERS = {"_app", "_outbox", "_reader", "__init__"}
FORBIDDEN = ("aiokafka", "faststream", "mesh.kafka", "mesh.cli", "mesh.broker", "mesh.topics")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_domain_imports_no_kafka_client_framework_or_cli() -> None:
    problems = [
        f"{path.stem} imports {name}"
        for path in sorted(PACKAGE.glob("*.py"))
        if path.stem not in ADAPTERS
        for name in _imports(path)
        if any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN)
    ]
    assert problems == []


def test_the_layer_check_can_fail() -> None:
    assert "aiokafka" in _imports(PACKAGE / "_app.py")
    assert "mesh.kafka.connection" in _imports(PACKAGE / "_reader.py")


def test_the_public_api_is_sorted_and_complete() -> None:
    names = mesh.resources.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(mesh.resources, name) is not None
    for required in (
        "Allocator",
        "ResourceRequest",
        "ResourceService",
        "run_resources",
        "request_for_ready",
        "release_target",
        "read_allocator",
        "load_pools",
    ):
        assert required in names


def test_the_seed_api_is_on_the_allocator() -> None:
    for method in ("allocate_resources", "release_resources", "get_resource_usage", "set_quotas"):
        assert callable(getattr(mesh.resources.Allocator, method))


@pytest.mark.parametrize("command", ["usage", "pools", "quotas"])
def test_a_broker_down_is_one_readable_line(command: str) -> None:
    run = run_mesh(
        "resources", command, "--json", env={"MESH_BOOTSTRAP_SERVERS": "127.0.0.1:1"}, timeout=60
    )
    line = assert_one_line_error(run)
    assert "no Kafka broker answered at 127.0.0.1:1" in line
    assert run.stdout == ""


def test_a_bad_pools_file_is_one_readable_line(tmp_path: Path) -> None:
    bad = tmp_path / "pools.yaml"
    bad.write_text("policy: fastest\n")
    run = run_mesh(
        "resources",
        "usage",
        env={"MESH_BOOTSTRAP_SERVERS": "127.0.0.1:1", "MESH_RESOURCE_POOLS": str(bad)},
        timeout=60,
    )
    assert "policy: Input should be" in assert_one_line_error(run)
