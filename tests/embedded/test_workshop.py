"""``mesh dev``'s workshop: the feature request runs as a real pipeline on a scratch git
repository (files, ``ruff format``, ``pytest``, ``git commit``), and a failing generated test
fails its task with pytest's output. Real processes on the embedded broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import yaml

from mesh.dev import DevOptions, dev_capability_map
from mesh.settings import Settings
from mesh.topics import apply_topics, load_topics
from tests.e2e import ROOT, running_mesh
from tests.helpers import run_mesh

FEATURE = ROOT / "examples" / "feature.yaml"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def _python(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", *args]
    return subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=False)


def _request(tmp_path: Path, **context: object) -> Path:
    request = yaml.safe_load(FEATURE.read_text())
    request["context"] = {**request.get("context", {}), **context}
    path = tmp_path / "feature.yaml"
    path.write_text(yaml.safe_dump(request))
    return path


async def test_the_feature_request_leaves_formatted_tested_commits(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    settings = embedded_settings.model_copy(update={"state_dir": tmp_path})
    async with running_mesh(settings, shell_agents=1, python_agents=0, workshop_agents=1) as mesh:
        run = await asyncio.to_thread(
            run_mesh, "submit", str(FEATURE), "--wait", "--json", env=settings.to_env(), timeout=300
        )
        workshop = mesh.workshop_dir
    result = json.loads(run.stdout)
    assert result["status"] == "completed", run.stdout + run.stderr
    repo = workshop / result["workflow_id"]
    tasks = [t["task_id"] for t in result["tasks"]]
    assert (repo / "feature.py").is_file()
    assert (repo / "test_feature.py").is_file()
    subjects = _git(repo, "log", "--format=%s").splitlines()
    # A commit per step that writes files, named after its task: design and implement, and
    # the tests by `test` (design first) or `write_tests` (test first; its `test` only runs them).
    authors = {subject.partition(":")[0] for subject in subjects}
    assert {"design", "implement"} <= authors, subjects
    assert authors & {"test", "write_tests"}, subjects
    assert authors <= set(tasks), (subjects, tasks)
    assert len(subjects) == len(authors)  # one commit each
    tested = _git(repo, "log", "--format=%s", "--", "test_feature.py").split(":")[0]
    assert tested in ("test", "write_tests"), tested
    assert _git(repo, "status", "--porcelain") == ""
    check = _python(repo, "ruff", "format", "--check", ".")
    assert check.returncode == 0, check.stdout
    ran = _python(repo, "pytest", "-q", "-p", "no:cacheprovider", "test_feature.py")
    assert ran.returncode == 0, ran.stdout
    assert "2 passed" in ran.stdout


async def test_a_failing_generated_test_fails_its_task_with_the_output(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    settings = embedded_settings.model_copy(update={"state_dir": tmp_path})
    async with running_mesh(settings, shell_agents=1, python_agents=0, workshop_agents=1):
        run = await asyncio.to_thread(
            run_mesh,
            "submit",
            str(_request(tmp_path, fail_tests=True)),
            "--wait",
            "--json",
            env=settings.to_env(),
            timeout=300,
        )
    result = json.loads(run.stdout)
    assert result["status"] == "failed", run.stdout
    failed = [t["task_id"] for t in result["tasks"] if t["status"] == "failed"]
    text = json.dumps(result)
    assert len(failed) == 1, text
    assert failed[0].endswith("test"), failed  # test or run_tests, whichever method ran
    assert "tests failed" in text
    assert "test_count_matches_the_requirements" in text  # pytest's own output
    assert "1 failed" in text


async def test_agents_list_shows_the_capability_map(embedded_settings: Settings) -> None:
    declared = load_topics(ROOT / "topics", prefix=embedded_settings.topic_prefix)
    await apply_topics(embedded_settings, declared.topics)
    env = {**embedded_settings.to_env(), "MESH_PLANNER_CAPABILITY_MAP": "code=code,*=shell"}
    listed = await asyncio.to_thread(run_mesh, "agents", "list", "--json", env=env, timeout=60)
    assert listed.code == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["capability_map"] == {"code": "code", "*": "shell"}
    assert document["capability_map_source"] == "MESH_PLANNER_CAPABILITY_MAP"
    shown = await asyncio.to_thread(run_mesh, "agents", "list", env=env, timeout=60)
    assert shown.code == 0, shown.stderr
    assert "code → code, * → shell" in shown.stdout
    # mesh dev's own map: the workshop serves its four capabilities, shell the rest.
    assert dev_capability_map(DevOptions()) == {
        "design": "design",
        "code": "code",
        "test": "test",
        "review": "review",
        "*": "shell",
    }
    assert dev_capability_map(DevOptions(workshop_agents=0)) == {"*": "shell"}
