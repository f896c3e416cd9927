"""``mesh plan FILE [--json]``: a dry run that shows stages and the critical path."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import assert_one_line_error, run_mesh

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "feature.yaml")


def test_plan_shows_stages_and_the_critical_path() -> None:
    run = run_mesh("plan", EXAMPLE, env={"COLUMNS": "120"})
    assert run.code == 0, run.stderr
    assert "tasks in" in run.stdout
    assert "stages" in run.stdout
    assert "critical path (★): design → implement → test → review" in run.stdout
    assert "★ design" in run.stdout
    assert "estimated makespan" in run.stdout
    assert "at max_parallelism 2" in run.stdout


def test_plan_json_is_one_document_with_the_plan() -> None:
    run = run_mesh("plan", EXAMPLE, "--json")
    assert run.code == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["status"] == "planned"
    assert data["workflow_id"] == data["plan"]["plan_id"]
    assert data["critical_path"][0] == "design"
    assert data["critical_path"][-1] == "review"
    assert [t for stage in data["stages"] for t in stage] == [
        t["task_id"] for t in data["plan"]["tasks"]
    ]
    assert data["estimate"]["makespan_seconds"] == data["plan"]["estimated_duration_seconds"]
    assert data["plan"]["max_parallelism"] == 2


def test_plan_reads_stdin_and_user_templates(tmp_path: Path) -> None:
    (tmp_path / "hello.yaml").write_text(
        "tasks:\n  hello:\n    capabilities: [shell]\n"
        "    command: [echo, '${request.description}']\n"
    )
    run = run_mesh(
        "plan", "-", "--json", "--templates", str(tmp_path), stdin="type: hello\ndescription: hi\n"
    )
    assert run.code == 0, run.stderr
    assert json.loads(run.stdout)["plan"]["tasks"][0]["command"] == ["echo", "hi"]


def test_a_malformed_request_file_is_one_readable_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: feature\ndescription: [unclosed\n")
    line = assert_one_line_error(run_mesh("plan", str(bad)))
    assert str(bad) in line
    assert "not valid YAML/JSON" in line
    bad.write_text("type: feature\ndescription: x\nconstraints: {max_parallelism: lots}\n")
    line = assert_one_line_error(run_mesh("plan", str(bad)))
    assert "plan rejected: invalid_request: constraints.max_parallelism" in line
    line = assert_one_line_error(run_mesh("plan", str(tmp_path / "missing.yaml")))
    assert "cannot read it" in line


def test_a_rejected_plan_exits_non_zero_with_the_reason() -> None:
    run = run_mesh("plan", "-", "--json", stdin="type: deploy\ndescription: ship it\n")
    line = assert_one_line_error(run)
    assert "plan rejected: unknown_type: no template for request type 'deploy'" in line
    assert json.loads(run.stdout)["kind"] == "unknown_type"
