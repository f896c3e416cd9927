"""``mesh topics`` as a user runs it (a real subprocess), for everything that needs no broker."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from mesh.broker._probe import free_port
from mesh.cli import topics as cli_topics
from mesh.topics import Change, ChangeKind, ChangeStatus, TopicPlan
from tests.helpers import assert_one_line_error, run_mesh

SHIPPED = Path(__file__).resolve().parents[2] / "topics"


@pytest.fixture
def topics_dir(tmp_path: Path) -> Path:
    """A copy of the shipped declarations that a test may break."""
    target = tmp_path / "topics"
    shutil.copytree(SHIPPED, target)
    return target


def test_validate_shipped_declarations(topics_dir: Path) -> None:
    done = run_mesh("topics", "validate", "--dir", str(topics_dir))
    assert done.code == 0, done.stderr
    assert "18 topics in 6 files" in done.stdout
    assert done.stderr == ""


def test_validate_json_is_one_document(topics_dir: Path) -> None:
    done = run_mesh("topics", "validate", "--json", env={"MESH_TOPICS_DIR": str(topics_dir)})
    assert done.code == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["valid"] is True
    assert document["problems"] == []
    assert len(document["topics"]) == 18
    assert document["prefix"] == "mesh."


def test_default_directory_is_topics_under_cwd(topics_dir: Path) -> None:
    done = run_mesh("topics", "validate", cwd=topics_dir.parent)
    assert done.code == 0, done.stderr


def test_no_topics_directory_names_the_one_looked_for(tmp_path: Path) -> None:
    line = assert_one_line_error(run_mesh("topics", "validate", cwd=tmp_path))
    assert str(tmp_path / "topics") in line
    assert "--dir" in line


def test_malformed_yaml_is_one_line_with_file_and_line(topics_dir: Path) -> None:
    (topics_dir / "broken.yaml").write_text("topics:\n  - name: x\n   partitions: [1\n")
    for command in ("validate", "plan", "apply", "check"):
        line = assert_one_line_error(run_mesh("topics", command, "--dir", str(topics_dir)))
        assert f"{topics_dir / 'broken.yaml'}:3: malformed YAML" in line, (command, line)


def test_unknown_config_key_is_one_line(topics_dir: Path) -> None:
    """Found offline, before any broker is asked (none is running here)."""
    path = topics_dir / "dlq.yaml"
    path.write_text(path.read_text().replace("retention.ms:", "retention.mss:"))
    env = {"MESH_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    for command in ("validate", "apply"):
        done = run_mesh("topics", command, "--dir", str(topics_dir), env=env)
        line = assert_one_line_error(done)
        assert "topic 'dlq': unknown topic config 'retention.mss'" in line
        assert "did you mean 'retention.ms'?" in line
        assert str(path) in line


def test_several_problems_are_listed_on_stdout_and_summed_up_on_stderr(topics_dir: Path) -> None:
    path = topics_dir / "workflow.yaml"
    text = path.read_text().replace("retention.ms: 604800000", "retention.ms: -5", 1)
    path.write_text(text.replace("- name: commands", "- name: commands\n    partitions: 3"))
    done = run_mesh("topics", "validate", "--dir", str(topics_dir))
    line = assert_one_line_error(done)
    assert "2 problems in the topic declarations" in line
    assert "(listed above)" in line
    assert "topic 'plans': config retention.ms must be at least -1 (got -5)" in done.stdout
    assert "topic 'commands': has 3 partitions but co-partitioned group 'workflow'" in done.stdout


def test_validate_json_with_problems(topics_dir: Path) -> None:
    path = topics_dir / "dlq.yaml"
    path.write_text(path.read_text().replace("partitions: 3", "partitions: 0"))
    done = run_mesh("topics", "validate", "--json", "--dir", str(topics_dir))
    assert_one_line_error(done)
    document = json.loads(done.stdout)
    assert document["valid"] is False
    (problem,) = document["problems"]
    assert problem["topic"] == "dlq"
    assert problem["file"] == str(path)
    assert isinstance(problem["line"], int)


def test_replication_override_is_checked_against_min_insync(topics_dir: Path) -> None:
    """--replication-factor applies to every topic that does not pin one; 0 is refused."""
    path = topics_dir / "workflow.yaml"
    path.write_text(path.read_text().replace("min.insync.replicas: 1", "min.insync.replicas: 2"))
    assert run_mesh("topics", "validate", "--dir", str(topics_dir)).code != 0
    done = run_mesh("topics", "validate", "--dir", str(topics_dir), "--replication-factor", "3")
    assert done.code == 0, done.stderr
    env = {"MESH_TOPIC_REPLICATION_FACTOR": "2"}
    assert run_mesh("topics", "validate", "--dir", str(topics_dir), env=env).code == 0
    line = assert_one_line_error(
        run_mesh("topics", "validate", "--dir", str(topics_dir), "--replication-factor", "0")
    )
    assert "--replication-factor" in line


def test_unreachable_broker_is_one_line(topics_dir: Path) -> None:
    env = {"MESH_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    for args in (("plan",), ("apply",), ("check",), ("describe",), ("apply", "--json")):
        done = run_mesh("topics", *args, "--dir", str(topics_dir), env=env, timeout=60)
        line = assert_one_line_error(done)
        assert "no Kafka broker answered" in line, (args, line)
        if "--json" in args:  # one whole document all the same, saying what stopped it
            document = json.loads(done.stdout)
            assert (document["exit_code"], document["changes"]) == (1, [])
            assert "no Kafka broker answered" in document["error"]


# -- the progress bar ----------------------------------------------------------------------------


def _plan_of(count: int) -> TopicPlan:
    changes = tuple(
        Change(ChangeKind.CREATE, f"mesh.t{i}", f"t{i}", new=1, replication_factor=1)
        for i in range(count)
    )
    return TopicPlan("mesh.", changes)


def _run_display(
    monkeypatch: pytest.MonkeyPatch, *, terminal: bool, quiet: bool, count: int
) -> str:
    out = io.StringIO()
    monkeypatch.setattr(
        cli_topics, "console", Console(file=out, force_terminal=terminal, width=100)
    )
    display = cli_topics._ApplyDisplay(quiet=quiet)
    plan = _plan_of(count)
    display.planned(plan)
    for change in plan.planned:
        display.applied(change.with_status(ChangeStatus.APPLIED))
    display.close()
    return out.getvalue()


def test_progress_bar_when_many_changes_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = _run_display(monkeypatch, terminal=True, quiet=False, count=cli_topics.PROGRESS_FROM)
    assert "applying" in shown  # the bar's label
    assert "create mesh.t4" in shown


@pytest.mark.parametrize(
    ("terminal", "quiet", "count"),
    [(False, False, 20), (True, True, 20), (True, False, cli_topics.PROGRESS_FROM - 1)],
)
def test_no_progress_bar_when_piped_quiet_or_few(
    monkeypatch: pytest.MonkeyPatch, terminal: bool, quiet: bool, count: int
) -> None:
    """Never in --json (quiet), never when piped, not for a handful of changes."""
    shown = _run_display(monkeypatch, terminal=terminal, quiet=quiet, count=count)
    assert "applying" not in shown
    assert ("create mesh.t0" in shown) is not quiet
