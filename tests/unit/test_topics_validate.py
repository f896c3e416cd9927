"""Offline validation: every rule, each problem with file and topic, and the one-line summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh.errors import TopicSpecError
from mesh.topics import (
    TopicDeclarations,
    TopicSpec,
    config_problem,
    load_topics,
    summarize,
    validate_declarations,
)
from mesh.topics._configs import TOPIC_CONFIGS, same_value

PREFIX = "mesh."


def spec(name: str = "x", **fields: object) -> TopicSpec:
    values: dict[str, object] = {
        "partitions": 3,
        "replication_factor": 1,
        "file": "topics/t.yaml",
        "line": 4,
    }
    values.update(fields)
    return TopicSpec.model_validate({"name": name, **values})


def problems_of(*specs: TopicSpec, prefix: str = PREFIX) -> list[str]:
    declarations = TopicDeclarations(Path("topics"), topics=specs)
    return [str(p) for p in validate_declarations(declarations, prefix=prefix)]


def test_a_valid_declaration_has_no_problems() -> None:
    assert problems_of(spec(config={"retention.ms": "1000", "cleanup.policy": "delete"})) == []


@pytest.mark.parametrize("name", ["bad name", "a/b", "é", ".", ".."])
def test_illegal_names(name: str) -> None:
    (problem,) = problems_of(spec(name))
    assert "may hold only letters, digits" in problem


def test_name_too_long_counts_the_prefix() -> None:
    (problem,) = problems_of(spec("a" * 245), prefix="long.")
    assert "longer than Kafka's 249 characters" in problem


def test_name_must_be_logical() -> None:
    """Writing the full name (with the prefix) is a mistake the prefix would double."""
    (problem,) = problems_of(spec("mesh.plans"))
    assert "names are logical: write 'plans'" in problem


@pytest.mark.parametrize(("partitions", "ok"), [(0, False), (1, True), (1000, True), (1001, False)])
def test_partition_bounds(partitions: int, ok: bool) -> None:
    found = problems_of(spec(partitions=partitions))
    assert (found == []) is ok
    if not ok:
        assert "partitions must be between 1 and 1000" in found[0]


def test_replication_factor_at_least_one() -> None:
    (problem,) = problems_of(spec(replication_factor=0))
    assert "replication_factor must be between 1 and" in problem


def test_min_insync_replicas_not_above_replication_factor() -> None:
    (problem,) = problems_of(spec(replication_factor=2, config={"min.insync.replicas": "3"}))
    assert "min.insync.replicas 3 exceeds the replication factor 2" in problem
    assert problems_of(spec(replication_factor=3, config={"min.insync.replicas": "2"})) == []


def test_unknown_config_key_with_suggestion() -> None:
    (problem,) = problems_of(spec(config={"retention.mss": "1"}))
    assert "unknown topic config 'retention.mss' (did you mean 'retention.ms'?)" in problem


def test_config_removed_in_kafka_4() -> None:
    (problem,) = problems_of(spec(config={"message.format.version": "3.0"}))
    assert "removed in Kafka 4.0" in problem


def test_bad_config_value() -> None:
    (problem,) = problems_of(spec(config={"cleanup.policy": "forever"}))
    assert "config cleanup.policy must be delete, compact or compact,delete" in problem


def test_every_problem_has_file_line_and_topic() -> None:
    (problem,) = problems_of(spec("plans", partitions=0))
    assert problem.startswith("topics/t.yaml:4: topic 'plans': ")


def test_duplicate_names_across_files() -> None:
    first = spec("plans", file="topics/a.yaml", line=3)
    second = spec("plans", file="topics/b.yaml", line=9)
    (problem,) = problems_of(first, second)
    assert problem.startswith("topics/b.yaml:9: topic 'plans': declared twice")
    assert "first in topics/a.yaml:3" in problem


def test_dot_underscore_collision() -> None:
    """Kafka refuses 'a_b' next to 'a.b' (their metric names are equal)."""
    found = problems_of(spec("a.b"), spec("a_b"))
    assert len(found) == 2
    assert all("collides with" in p for p in found)


def test_copartitioned_topics_need_equal_partitions() -> None:
    """The odd one out is named, with the group's count and the topics that have it."""
    found = problems_of(
        spec("plans", partitions=6, copartition="workflow"),
        spec("commands", partitions=6, copartition="workflow"),
        spec("tasks.ready", partitions=3, copartition="workflow"),
        spec("agents", partitions=3),
    )
    (problem,) = found
    assert "topic 'tasks.ready': has 3 partitions but co-partitioned group 'workflow' has 6" in (
        problem
    )
    assert "plans" in problem
    assert "commands" in problem


def test_problems_found_while_loading_come_first(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "topics:\n  - {name: a, partitions: x}\n  - {name: b b, partitions: 1}\n"
    )
    with pytest.raises(TopicSpecError) as caught:
        load_topics(tmp_path, prefix=PREFIX)
    problems = caught.value.fields["problems"]
    assert [p.topic for p in problems] == ["a", "b b"]
    assert str(caught.value).startswith("2 problems in the topic declarations: ")
    assert "\n" not in str(caught.value)


def test_summary_is_one_line_and_bounded() -> None:
    problems = validate_declarations(
        TopicDeclarations(Path("t"), topics=tuple(spec(f"t{i}", partitions=0) for i in range(5))),
        prefix=PREFIX,
    )
    line = summarize(problems)
    assert line.startswith("5 problems in the topic declarations: ")
    assert line.endswith("and 2 more (see 'mesh topics validate')")
    assert summarize(problems[:1]) == str(problems[0])


def test_load_topics_returns_valid_declarations(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("topics:\n  - {name: a, partitions: 2}\n")
    assert [t.name for t in load_topics(tmp_path, prefix=PREFIX).topics] == ["a"]


# -- config values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cleanup.policy", "delete"),
        ("cleanup.policy", "compact"),
        ("cleanup.policy", "compact,delete"),
        ("cleanup.policy", "delete, compact"),
        ("retention.ms", "-1"),
        ("retention.bytes", "-1"),
        ("max.message.bytes", "0"),
        ("segment.ms", "1"),
        ("segment.bytes", "1048576"),
        ("min.insync.replicas", "1"),
        ("compression.type", "zstd"),
        ("message.timestamp.type", "LogAppendTime"),
        ("min.compaction.lag.ms", "0"),
        ("delete.retention.ms", "0"),
        ("min.cleanable.dirty.ratio", "0.5"),
        ("compression.gzip.level", "-1"),
        ("compression.zstd.level", "-131072"),
        ("preallocate", "TRUE"),
        ("leader.replication.throttled.replicas", "*"),
        ("follower.replication.throttled.replicas", "0:1,1:2"),
        ("local.retention.ms", "-2"),
    ],
)
def test_valid_config_values(key: str, value: str) -> None:
    assert config_problem(key, value) is None


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("cleanup.policy", "", "must be delete, compact"),
        ("cleanup.policy", "compacted", "must be delete, compact"),
        ("retention.ms", "-2", "must be at least -1"),
        ("retention.ms", "7d", "must be an integer"),
        ("retention.bytes", "-2", "must be at least -1"),
        ("max.message.bytes", "-1", "must be at least 0"),
        ("max.message.bytes", "4294967296", "must be between 0 and 2147483647"),
        ("segment.ms", "0", "must be at least 1"),
        ("segment.bytes", "1048575", "must be at least 1048576"),
        ("min.insync.replicas", "0", "must be at least 1"),
        ("compression.type", "GZIP", "must be one of uncompressed, zstd"),
        ("message.timestamp.type", "createtime", "must be one of CreateTime, LogAppendTime"),
        ("min.compaction.lag.ms", "-1", "must be at least 0"),
        ("delete.retention.ms", "-1", "must be at least 0"),
        ("min.cleanable.dirty.ratio", "1.5", "must be between 0 and 1"),
        ("compression.gzip.level", "0", "must be between 1 and 9, or -1"),
        ("compression.lz4.level", "18", "must be between 1 and 17"),
        ("preallocate", "yes", "must be true or false"),
        ("leader.replication.throttled.replicas", "x", "must be '*' or a list"),
        ("flush.messages", "0", "must be at least 1"),
        ("segment.index.bytes", "3", "must be at least 4"),
    ],
)
def test_invalid_config_values(key: str, value: str, expected: str) -> None:
    problem = config_problem(key, value)
    assert problem is not None
    assert expected in problem
    assert problem.startswith(f"config {key} ")


def test_the_key_list_is_kafka_4s() -> None:
    """What a Kafka 4.3 broker reports for a topic: 33 keys, none of the ones 4.0 removed."""
    assert len(TOPIC_CONFIGS) == 33
    assert "message.format.version" not in TOPIC_CONFIGS
    assert {"retention.ms", "cleanup.policy", "min.insync.replicas"} <= TOPIC_CONFIGS.keys()


@pytest.mark.parametrize(
    ("key", "left", "right", "same"),
    [
        ("min.cleanable.dirty.ratio", "0.50", "0.5", True),
        ("cleanup.policy", "delete,compact", "compact, delete", True),
        ("retention.ms", "0604800000", "604800000", True),
        ("preallocate", "TRUE", "true", True),
        ("retention.ms", "1", "2", False),
        ("retention.ms", None, "2", False),
        ("retention.ms", None, None, True),
        ("unknown.key", " a ", "a", True),
    ],
)
def test_values_compare_as_the_broker_reads_them(
    key: str, left: str | None, right: str | None, same: bool
) -> None:
    """The broker rewrites some values (0.50 → 0.5); comparing strings would be false drift."""
    assert same_value(key, left, right) is same
