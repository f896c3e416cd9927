"""docker-compose.yml is valid Compose and runs only real ``mesh`` commands.

No Docker engine runs here, so the file is checked the way Docker Compose checks it: loaded by
compose-go (the library `docker compose` uses: JSON Schema plus consistency checks), and validated
again with jsonschema against the Compose Specification schema that compose-go ships. Every service
command that starts with ``mesh`` must parse as a real subcommand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.helpers import run_mesh

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tooling" / "compose"
COMPONENT_COMMANDS = {
    "planner": ["mesh", "run", "planner"],
    "workflows": ["mesh", "run", "workflows"],
    "agents": ["mesh", "run", "agents"],
    "resources": ["mesh", "run", "resources"],
    "ui": ["mesh", "ui", "--host"],
}


@pytest.fixture(scope="module")
def compose_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the compose-go checker once (Go modules are cached by Go itself)."""
    if shutil.which("go") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Go is needed to validate docker-compose.yml with compose-go")
        pytest.skip("Go is not installed")
    binary = tmp_path_factory.mktemp("compose") / "compose-check"
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=TOOL, check=True, timeout=600)
    return binary


def _validate(compose_check: Path, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(compose_check), "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    services: dict[str, Any] = json.loads(done.stdout)["services"]
    return services


def _mesh_command_problems(services: dict[str, Any]) -> list[str]:
    problems = []
    for name, service in services.items():
        command = service["command"] or []
        if not command or command[0] != "mesh":
            continue
        run = run_mesh(*command[1:], "--help")
        if run.code != 0:
            problems.append(
                f"{name}: {' '.join(command)} is not a mesh command ({run.stderr.strip()})"
            )
    return problems


def test_compose_file_loads_with_compose_go(compose_check: Path) -> None:
    services = _validate(compose_check, ROOT / "docker-compose.yml")
    assert services["kafka"]["image"].startswith("apache/kafka:")
    for name, service in services.items():
        assert service["restart"], f"{name} has no restart policy"
    assert services["kafka"]["healthcheck"]
    assert "kafka" in services["topics"]["depends_on"]


def test_compose_file_matches_the_compose_spec_schema(compose_check: Path) -> None:
    done = subprocess.run(
        [str(compose_check), "schema"], capture_output=True, text=True, check=True, timeout=60
    )
    schema = json.loads(done.stdout)
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.Draft202012Validator(schema).validate(document)


def test_every_service_command_is_a_real_mesh_subcommand(compose_check: Path) -> None:
    services = _validate(compose_check, ROOT / "docker-compose.yml")
    assert services["topics"]["command"] == ["mesh", "topics", "apply"]
    for name, expected in COMPONENT_COMMANDS.items():
        if name in services:
            assert services[name]["command"][:3] == expected
    assert _mesh_command_problems(services) == []


def test_a_made_up_command_is_caught(compose_check: Path, tmp_path: Path) -> None:
    """The command check can fail: a service running a command mesh does not have."""
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    document["services"]["topics"]["command"] = ["mesh", "run", "nonexistent"]
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(document))
    problems = _mesh_command_problems(_validate(compose_check, path))
    assert len(problems) == 1
    assert "topics" in problems[0]


def test_an_invalid_compose_file_is_rejected(compose_check: Path, tmp_path: Path) -> None:
    """compose-go rejects what Docker Compose would reject (here a misspelt key)."""
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    document["services"]["kafka"]["restart_policy"] = "always"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(document))
    done = subprocess.run(
        [str(compose_check), "validate", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "restart_policy" in done.stderr


def test_prometheus_scrapes_every_service_that_serves_metrics(compose_check: Path) -> None:
    """Each `mesh run …` / `mesh agent run` service serves /metrics on its MESH_METRICS_PORT,
    and prometheus/prometheus.yml has exactly those services as targets."""
    services = _validate(compose_check, ROOT / "docker-compose.yml")
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    serving = {}
    for name, service in services.items():
        command = service["command"] or []
        if command[:2] in (["mesh", "run"], ["mesh", "agent"]):
            environment = (
                document["services"][name].get("environment") or document["x-mesh"]["environment"]
            )
            serving[name] = environment["MESH_METRICS_PORT"]
    assert {"workflows", "agents", "planner", "resources", "agent-shell"} <= set(serving)
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert targets == {f"{name}:{port}" for name, port in serving.items()}
    assert (
        "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in (document["services"]["prometheus"]["volumes"])
    )
