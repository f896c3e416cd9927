"""Plain requests through the whole mesh: the planner decomposes each built-in request type and
the plan runs to completion on the demo agents (mesh dev's processes) — and a request the
planner cannot plan is rejected with its reason and nothing runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from mesh.planner import Planner, workflow_id_for
from mesh.settings import Settings
from tests.e2e import ROOT, running_mesh
from tests.helpers import run_mesh

BUILT_IN_TYPES = sorted(Planner.from_settings(Settings()).templates.types)


@pytest.fixture
def request_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for kind in BUILT_IN_TYPES:
        path = tmp_path / f"{kind}.yaml"
        path.write_text(yaml.safe_dump({"type": kind, "description": f"demo {kind} request"}))
        files[kind] = path
    return files


async def test_every_built_in_type_plans_and_completes(
    embedded_settings: Settings, request_files: dict[str, Path]
) -> None:
    assert BUILT_IN_TYPES  # the planner ships templates
    async with running_mesh(embedded_settings, shell_agents=2, python_agents=0):
        runs = await asyncio.gather(
            *(
                asyncio.to_thread(
                    run_mesh,
                    "submit",
                    str(path),
                    "--wait",
                    "--json",
                    env=embedded_settings.to_env(),
                    timeout=300,
                )
                for path in request_files.values()
            )
        )
    for kind, run in zip(request_files, runs, strict=True):
        assert run.code == 0, f"{kind}: {run.stderr}"
        result = json.loads(run.stdout)
        assert result["status"] == "completed", f"{kind}: {result}"
        assert result["tasks"], kind


async def test_feature_example_flags_stdin_and_a_rejected_request(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    bad = tmp_path / "unknown.yaml"
    bad.write_text(yaml.safe_dump({"type": "teleport", "description": "no template for this"}))
    env = embedded_settings.to_env()
    async with running_mesh(embedded_settings, shell_agents=2, python_agents=0):
        feature, by_flags, from_stdin, rejected = await asyncio.gather(
            asyncio.to_thread(
                run_mesh,
                "submit",
                str(ROOT / "examples" / "feature.yaml"),
                "--wait",
                "--json",
                env=env,
                timeout=300,
            ),
            asyncio.to_thread(
                run_mesh,
                "submit",
                "--type",
                "bugfix",
                "--description",
                "Fix the login timeout",
                "-r",
                "A test reproduces the timeout",
                "-c",
                "max_parallelism=2",
                "--context",
                "repository=.",
                "--id",
                "req-by-flags",
                "--wait",
                "--json",
                env=env,
                timeout=300,
            ),
            asyncio.to_thread(
                run_mesh,
                "submit",
                "-",
                "--wait",
                "--json",
                env=env,
                timeout=300,
                stdin="type: documentation\ndescription: Document mesh submit\n",
            ),
            asyncio.to_thread(run_mesh, "submit", str(bad), "--wait", env=env, timeout=300),
        )
        # The README's newcomer path ends with the replay agreeing with the live state.
        assert feature.code == 0, feature.stderr
        feature_id = json.loads(feature.stdout)["workflow_id"]
        diff = await asyncio.to_thread(
            run_mesh, "replay", feature_id, "--diff-live", env=env, timeout=120
        )
        assert diff.code == 0, diff.stdout + diff.stderr
    for run in (feature, by_flags, from_stdin):
        assert run.code == 0, run.stderr
        assert json.loads(run.stdout)["status"] == "completed"
    assert json.loads(by_flags.stdout)["workflow_id"] == workflow_id_for("req-by-flags")
    assert rejected.code == 1
    assert "rejected" in rejected.stderr
    assert "unknown_type" in rejected.stderr
