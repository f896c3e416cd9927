"""Topic overlays: one set of declarations changed per environment (``topics/overlays/*``)."""

from __future__ import annotations

from pathlib import Path

from mesh.topics import OVERLAY_FILE, load_declarations, validate_declarations
from tests.helpers import run_mesh

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "topics"
CLUSTER = SHIPPED / "overlays" / "cluster"

BASE = """\
defaults:
  partitions: 3
  config: {min.insync.replicas: 1, retention.ms: 1000}
topics:
  - name: plain
  - name: pinned
    replication_factor: 2
    config: {min.insync.replicas: 1}
"""


def overlay(tmp_path: Path, text: str, base: str = BASE) -> Path:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "t.yaml").write_text(base)
    directory = tmp_path / "env"
    directory.mkdir()
    (directory / OVERLAY_FILE).write_text(text)
    return directory


def test_the_shipped_cluster_overlay_gives_every_topic_three_replicas_two_in_sync() -> None:
    """The same topics as topics/, each with replication factor 3 and min.insync.replicas 2,
    and otherwise unchanged."""
    base = load_declarations(SHIPPED).by_name()
    cluster = load_declarations(CLUSTER)
    assert validate_declarations(cluster, prefix="mesh.") == []
    topics = cluster.by_name()
    assert set(topics) == set(base)
    for name, spec in topics.items():
        assert spec.replication_factor == 3, name
        assert spec.config["min.insync.replicas"] == "2", name
        assert spec.partitions == base[name].partitions
        assert {k: v for k, v in spec.config.items() if k != "min.insync.replicas"} == {
            k: v for k, v in base[name].config.items() if k != "min.insync.replicas"
        }
    assert cluster.files[-1] == str(CLUSTER / OVERLAY_FILE)


def test_overlay_defaults_replace_the_files_defaults_but_not_a_topics_own(
    tmp_path: Path,
) -> None:
    directory = overlay(
        tmp_path,
        "base: ../base\ndefaults:\n  replication_factor: 3\n  config: {min.insync.replicas: 2}\n",
    )
    topics = load_declarations(directory).by_name()
    assert (topics["plain"].replication_factor, topics["plain"].config) == (
        3,
        {"min.insync.replicas": "2", "retention.ms": "1000"},
    )
    assert (
        topics["pinned"].replication_factor,
        topics["pinned"].config["min.insync.replicas"],
    ) == (
        2,
        "1",
    )


def test_the_replication_factor_flag_still_wins_over_overlay_defaults(tmp_path: Path) -> None:
    directory = overlay(tmp_path, "base: ../base\ndefaults: {replication_factor: 3}\n")
    topics = load_declarations(directory, replication_factor=5).by_name()
    assert topics["plain"].replication_factor == 5
    assert topics["pinned"].replication_factor == 2


def test_a_patch_changes_one_named_topic(tmp_path: Path) -> None:
    directory = overlay(
        tmp_path,
        "base: ../base\n"
        "topics:\n"
        "  - name: pinned\n"
        "    partitions: 6\n"
        "    replication_factor: 3\n"
        "    config: {retention.ms: 5000, min.insync.replicas: 2}\n",
    )
    topics = load_declarations(directory).by_name()
    assert (topics["pinned"].partitions, topics["pinned"].replication_factor) == (6, 3)
    assert topics["pinned"].config == {"min.insync.replicas": "2", "retention.ms": "5000"}
    assert topics["plain"].partitions == 3


def test_mistakes_in_an_overlay_are_located_problems(tmp_path: Path) -> None:
    directory = overlay(tmp_path, "base: ../base\ndefaults: {replication_factr: 3}\n")
    (directory / "extra.yaml").write_text("topics: []\n")
    where = str(directory / OVERLAY_FILE)
    assert [str(p) for p in load_declarations(directory).problems] == [
        f"{where}:2: unknown field 'replication_factr' (did you mean 'replication_factor'?)",
        f"{directory / 'extra.yaml'}: an overlay directory holds only overlay.yaml; declare "
        "topics in its base",
    ]


def test_a_patch_of_a_topic_the_base_lacks_is_a_located_problem(tmp_path: Path) -> None:
    directory = overlay(tmp_path, "base: ../base\ntopics:\n  - name: nowhere\n    partitions: 2\n")
    [problem] = load_declarations(directory).problems
    assert str(problem) == (
        f"{directory / OVERLAY_FILE}:3: topic 'nowhere': patches a topic the base does not declare"
    )


def test_an_overlay_needs_a_plain_base_directory(tmp_path: Path) -> None:
    directory = overlay(tmp_path, "base: ../missing\n")
    [problem] = load_declarations(directory).problems
    assert "base '../missing' is not a directory" in str(problem)
    (tmp_path / "base" / OVERLAY_FILE).write_text("base: ..\n")
    (directory / OVERLAY_FILE).write_text("base: ../base\n")
    [problem] = load_declarations(directory).problems
    assert "is itself an overlay" in str(problem)


def test_validation_sees_the_overlaid_values(tmp_path: Path) -> None:
    """An overlay that asks for more in-sync replicas than replicas fails `validate`."""
    directory = overlay(tmp_path, "base: ../base\ndefaults:\n  config: {min.insync.replicas: 2}\n")
    problems = validate_declarations(load_declarations(directory), prefix="mesh.")
    assert [p.topic for p in problems] == ["plain"]
    assert "min.insync.replicas 2 exceeds the replication factor 1" in problems[0].message


def test_mesh_topics_validate_takes_an_overlay_directory() -> None:
    done = run_mesh("topics", "validate", "--dir", str(CLUSTER))
    assert done.code == 0, done.stderr
    assert f"18 topics in 7 files under {CLUSTER} are valid" in done.stdout
