"""The public face of ``mesh.topics`` and the import direction of its layers."""

from __future__ import annotations

import ast
from pathlib import Path

import mesh.topics

PACKAGE = Path(mesh.topics.__file__).parent
PURE = ("_configs", "_spec", "_load", "_overlay", "_validate", "_cluster", "_plan")
KAFKA_SIDE = ("aiokafka", "mesh.kafka", "mesh.topics._admin", "mesh.topics._apply", "mesh.cli")


def test_exported_names_are_pinned() -> None:
    """Adding or removing a public name is a decision, not an accident."""
    assert mesh.topics.__all__ == [
        "DEFAULT_DIR",
        "EXPORT_FILE",
        "OVERLAY_FILE",
        "TOPIC_CONFIGS",
        "Api",
        "ApplyResult",
        "BrokerCapabilities",
        "Change",
        "ChangeKind",
        "ChangeStatus",
        "ClusterState",
        "ConfigDiff",
        "Note",
        "ObservedConfig",
        "ObservedTopic",
        "Problem",
        "TopicDeclarations",
        "TopicPlan",
        "TopicSpec",
        "apply_topics",
        "beyond",
        "config_problem",
        "declared_topics",
        "describe_topics",
        "diff_topics",
        "export_declarations",
        "listed",
        "load_declarations",
        "load_topics",
        "open_prefix",
        "plan_topics",
        "plural",
        "read_cluster",
        "summarize",
        "validate_declarations",
    ]
    for name in mesh.topics.__all__:
        assert hasattr(mesh.topics, name), name


def _imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_declarations_and_planning_know_nothing_of_kafka() -> None:
    """Loading, validation and planning are pure: testable without a broker, reusable anywhere."""
    for module in PURE:
        leaks = {i for i in _imports(module) if i.startswith(KAFKA_SIDE)}
        assert not leaks, (module, leaks)
