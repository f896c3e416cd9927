"""The package's explicit sorted API and the command line's one-line errors (its layering is
checked with every component's in ``test_layers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import mesh.resources
import mesh.resources.runtime
from tests.helpers import assert_one_line_error, run_mesh


def test_the_public_api_is_sorted_and_complete() -> None:
    names = mesh.resources.__all__
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(mesh.resources, name) is not None
    assert mesh.resources.runtime.__all__ == ["ResourceService", "read_allocator", "run_resources"]
    for required in (
        "Allocator",
        "ResourceRequest",
        "request_for_ready",
        "release_target",
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
