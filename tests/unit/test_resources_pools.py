"""The pools file: declared pools, default quotas and defaults, with one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.errors import ConfigError
from mesh.events import Resources
from mesh.resources import DEFAULT_POOLS_FILE, Policy, load_pools, parse_pools, pools_path
from tests._resources_support import ROOT, TEST


def test_the_shipped_demo_pools_load() -> None:
    config = load_pools(ROOT / DEFAULT_POOLS_FILE)
    pools = {p.pool_id: p for p in config.pools(TEST)}
    assert set(pools) == {"local", "cloud-cpu", "cloud-gpu"}
    assert [n.node_id for n in pools["local"].nodes] == ["local-1", "local-2"]
    assert pools["local"].capacity == Resources(
        cpu=8, memory_mb=16384, network_mbps=2000, storage_mb=102400
    )
    assert pools["cloud-gpu"].policy == "priority"
    assert config.config.default == Policy("fair", "cheapest", preempt=False)
    [quota] = config.quotas(TEST)
    assert quota.tenant == "default"
    assert quota.max_allocations == 64


def test_count_expands_nodes_and_sums_capacity_and_cost() -> None:
    config = parse_pools(
        {"pools": [{"id": "p", "nodes": [{"id": "n", "count": 3, "cpu": 2, "cost_per_hour": 0.5}]}]}
    )
    [pool] = config.pools(TEST)
    assert [n.node_id for n in pool.nodes] == ["n-1", "n-2", "n-3"]
    assert pool.capacity.cpu == 6
    assert pool.cost_per_hour == 1.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pools: [", "pools.yaml (line 1): not valid YAML"),
        (
            "pools:\n  - id: p\n    nodes: []\n",
            "pools.yaml: pools.0.nodes: List should have at least 1 item after validation, not 0",
        ),
        (
            "pools:\n  - id: p\n    nodes: [{id: n, cpus: 4}]\n",
            "pools.yaml: pools.0.nodes.0.cpus: Extra inputs are not permitted",
        ),
        (
            "policy: fastest\n",
            "pools.yaml: policy: Input should be 'fair', 'priority', 'demand' or 'predictive'",
        ),
        (
            "pools:\n  - {id: p, nodes: [{id: n}]}\n  - {id: p, nodes: [{id: m}]}\n",
            "pools.yaml: pool 'p' is declared more than once",
        ),
        (
            "pools:\n  - {id: p, nodes: [{id: n, count: 2}, {id: n-1}]}\n",
            "pools.yaml: pool 'p' has node 'n-1' more than once",
        ),
        (
            "pools:\n  - {id: agents, nodes: [{id: n}]}\n",
            "pools.yaml: pool 'agents' is also the discovery pool; rename one",
        ),
    ],
)
def test_mistakes_are_one_readable_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_pools(path)
    assert str(caught.value) == f"{tmp_path}/{message}"


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the pools file"):
        load_pools(tmp_path / "nope.yaml")


def test_the_file_is_found_by_setting_or_in_the_working_directory(tmp_path: Path) -> None:
    assert pools_path(None, cwd=tmp_path) is None
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "pools.yaml").write_text("pools: []\n")
    assert pools_path(None, cwd=tmp_path) == tmp_path / DEFAULT_POOLS_FILE
    assert pools_path(Path("/etc/pools.yaml"), cwd=tmp_path) == Path("/etc/pools.yaml")
    assert load_pools(None).pools(TEST) == []
