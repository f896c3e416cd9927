"""Loading ``topics/*.yaml``: the format, defaults, the replication override, located problems."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.errors import TopicSpecError
from mesh.topics import DEFAULT_DIR, load_declarations, validate_declarations

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "topics"

# DESIGN.md's topics table: logical name → cleanup policy.
DESIGN_TOPICS = {
    "requests": "delete",
    "plans": "delete",
    "commands": "delete",
    "workflow.events": "delete",
    "workflow.state": "compact",
    "tasks.ready": "delete",
    "tasks.assigned": "delete",
    "tasks.results": "delete",
    "agents": "compact",
    "agents.heartbeats": "delete",
    "resources": "compact",
    "breakers": "compact",
    "replies": "delete",
    "dlq": "delete",
    # Beyond DESIGN.md's table: lifecycle requests to the Agent Manager, and calls of the
    # client API to any component; both answered on replies.
    "agents.commands": "delete",
    "calls": "delete",
    "tasks.output": "delete",
    "payloads": "delete",
}
WORKFLOW_GROUP = {
    "plans",
    "commands",
    "workflow.events",
    "workflow.state",
    "tasks.ready",
    "tasks.results",
}


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_shipped_declarations_cover_the_design_table() -> None:
    """topics/ declares exactly DESIGN's topics, each with cleanup policy, key and description."""
    declarations = load_declarations(SHIPPED)
    assert validate_declarations(declarations, prefix="mesh.") == []
    topics = declarations.by_name()
    assert set(topics) == set(DESIGN_TOPICS)
    for name, policy in DESIGN_TOPICS.items():
        spec = topics[name]
        assert spec.config["cleanup.policy"] == policy, name
        assert spec.key, name
        assert spec.description, name
        assert spec.replication_factor == 1, name
        assert "max.message.bytes" in spec.config, name
        if policy == "delete":
            assert "retention.ms" in spec.config, name


def test_shipped_workflow_group_is_copartitioned_with_six_partitions() -> None:
    """The topics the Workflow Manager reads and writes form one group of 6 partitions each."""
    topics = load_declarations(SHIPPED).by_name()
    group = {name for name, spec in topics.items() if spec.copartition == "workflow"}
    assert group == WORKFLOW_GROUP
    assert {topics[name].partitions for name in group} == {6}
    assert all(topics[name].key == "workflow id" for name in group)


def test_shipped_retention_matches_the_design_words() -> None:
    """'long retention' for the history, 'short' for heartbeats and replies."""
    topics = load_declarations(SHIPPED).by_name()
    week = 7 * 24 * 3600 * 1000
    assert int(topics["workflow.events"].config["retention.ms"]) > 4 * week
    assert int(topics["agents.heartbeats"].config["retention.ms"]) < week
    assert int(topics["replies"].config["retention.ms"]) < week


def test_defaults_and_overrides_resolve(tmp_path: Path) -> None:
    """File defaults fill what a topic leaves out; a topic's own values win; values become
    Kafka strings (ints, floats, booleans and lists)."""
    write(
        tmp_path,
        "a.yaml",
        """
defaults:
  partitions: 4
  config: {retention.ms: 1000, preallocate: false}
topics:
  - name: one
    key: id
    description: first
  - name: two
    partitions: 2
    config:
      retention.ms: 2000
      min.cleanable.dirty.ratio: 0.5
      cleanup.policy: [compact, delete]
""",
    )
    topics = load_declarations(tmp_path).by_name()
    assert topics["one"].partitions == 4
    assert topics["one"].config == {"retention.ms": "1000", "preallocate": "false"}
    assert topics["one"].key == "id"
    assert topics["one"].description == "first"
    assert topics["two"].partitions == 2
    assert topics["two"].config == {
        "retention.ms": "2000",
        "preallocate": "false",
        "min.cleanable.dirty.ratio": "0.5",
        "cleanup.policy": "compact,delete",
    }
    assert topics["one"].file == str(tmp_path / "a.yaml")
    assert topics["one"].line == 6  # the line of "- name: one"


def test_replication_factor_precedence(tmp_path: Path) -> None:
    """A topic's own value > the override (flag/env) > the file default > 1."""
    write(
        tmp_path,
        "a.yaml",
        """
defaults: {replication_factor: 2}
topics:
  - {name: default, partitions: 1}
  - {name: pinned, partitions: 1, replication_factor: 5}
""",
    )
    write(tmp_path, "b.yaml", "topics:\n  - {name: bare, partitions: 1}\n")
    plain = load_declarations(tmp_path).by_name()
    assert (plain["default"].replication_factor, plain["pinned"].replication_factor) == (2, 5)
    assert plain["bare"].replication_factor == 1
    overridden = load_declarations(tmp_path, replication_factor=3).by_name()
    assert overridden["default"].replication_factor == 3
    assert overridden["bare"].replication_factor == 3
    assert overridden["pinned"].replication_factor == 5


def test_a_zero_replication_factor_is_kept_for_the_validator(tmp_path: Path) -> None:
    """0 is not 'unset': it must reach validation rather than fall through to a default."""
    write(tmp_path, "a.yaml", "topics:\n  - {name: x, partitions: 1, replication_factor: 0}\n")
    declarations = load_declarations(tmp_path, replication_factor=3)
    assert declarations.by_name()["x"].replication_factor == 0
    (problem,) = validate_declarations(declarations, prefix="mesh.")
    assert "replication_factor must be between 1" in problem.message


def test_yml_files_are_read_and_an_empty_file_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", "topics:\n  - {name: x, partitions: 1}\n")
    write(tmp_path, "b.yaml", "# nothing yet\n")
    write(tmp_path, "c.yaml", "topics:\n")
    declarations = load_declarations(tmp_path)
    assert [t.name for t in declarations.topics] == ["x"]
    assert declarations.problems == ()


def test_malformed_yaml_is_one_located_problem(tmp_path: Path) -> None:
    """A YAML syntax error names file and line and says what is wrong; other files still load."""
    path = write(tmp_path, "bad.yaml", "topics:\n  - name: x\n    partitions: 1\n   oops: [\n")
    write(tmp_path, "good.yaml", "topics:\n  - {name: y, partitions: 1}\n")
    declarations = load_declarations(tmp_path)
    assert [t.name for t in declarations.topics] == ["y"]
    (problem,) = declarations.problems
    assert problem.file == str(path)
    assert problem.line == 4
    assert problem.message.startswith("malformed YAML: ")
    assert str(problem).startswith(f"{path}:4: malformed YAML")


X = "topics:\n  - name: x\n"  # the start of a file with one topic named x
INT = "partitions: input should be a valid integer"


@pytest.mark.parametrize(
    ("text", "expected", "line"),
    [
        ("- a\n- b\n", "expected a mapping with a 'topics' list", 1),
        ("topics: {name: x}\n", "topics: input should be a valid list", 1),
        ("topic:\n  - {name: x}\n", "unknown field 'topic' (did you mean 'topics'?)", 1),
        ("defaults: {partitons: 3}\ntopics: []\n", "unknown field 'partitons' (did you mean", 1),
        ("topics:\n  - just-a-name\n", "each item of 'topics' must be a mapping", 2),
        ("topics:\n  - {partitions: 1}\n", "name is required", 2),
        (X, "partitions is required", 2),
        (X + "    partitions: '3'\n", INT, 3),
        (X + "    partitions: true\n", INT, 3),
        (X + "    partitons: 3\n", "unknown field 'partitons' (did you mean 'partitions'?)", 3),
        (
            X + "    partitions: 1\n    config:\n      retention.ms:\n",
            "config retention.ms must be a string, number",
            5,
        ),
    ],
)
def test_structural_problems_are_located(
    tmp_path: Path, text: str, expected: str, line: int
) -> None:
    """Every wrong shape is reported with its file and line, in words a user can act on."""
    path = write(tmp_path, "t.yaml", text)
    problems = load_declarations(tmp_path).problems
    assert len(problems) == 1, problems
    assert expected in problems[0].message
    assert problems[0].file == str(path)
    assert problems[0].line == line


def test_problem_names_the_topic(tmp_path: Path) -> None:
    write(tmp_path, "t.yaml", "topics:\n  - name: plans\n    partitions: nope\n")
    (problem,) = load_declarations(tmp_path).problems
    assert problem.topic == "plans"
    assert "topic 'plans'" in str(problem)


def test_a_key_written_twice_is_reported(tmp_path: Path) -> None:
    """YAML silently keeps the last of two equal keys; a declaration must not."""
    write(
        tmp_path,
        "t.yaml",
        "topics:\n  - name: x\n    partitions: 1\n    config:\n"
        "      retention.ms: 1\n      retention.ms: 2\n",
    )
    (problem,) = load_declarations(tmp_path).problems
    assert "'retention.ms' is written twice" in problem.message
    assert (problem.topic, problem.line) == ("x", 6)


def test_one_bad_topic_does_not_hide_the_others(tmp_path: Path) -> None:
    write(
        tmp_path,
        "t.yaml",
        "topics:\n  - {name: a, partitions: x}\n  - {name: b, partitions: 1}\n"
        "  - {name: c, partitions: y}\n",
    )
    declarations = load_declarations(tmp_path)
    assert [t.name for t in declarations.topics] == ["b"]
    assert [p.topic for p in declarations.problems] == ["a", "c"]


def test_missing_directory_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --dir the default ./topics is looked up from the working directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TopicSpecError) as caught:
        load_declarations()
    assert str(tmp_path / DEFAULT_DIR) in str(caught.value)
    assert "--dir" in str(caught.value)
    assert "MESH_TOPICS_DIR" in str(caught.value)
    with pytest.raises(TopicSpecError, match="is not a directory"):
        load_declarations(tmp_path / "nowhere")


def test_directory_without_yaml_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "hello")
    with pytest.raises(TopicSpecError, match=r"holds no \*\.yaml files"):
        load_declarations(tmp_path)


def test_default_directory_is_found_from_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "topics", "a.yaml", "topics:\n  - {name: x, partitions: 1}\n")
    monkeypatch.chdir(tmp_path)
    assert [t.name for t in load_declarations().topics] == ["x"]
