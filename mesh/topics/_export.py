"""Live topics as declarations: how an existing cluster is adopted (``mesh topics export``).

Each topic under the prefix becomes one declaration with its logical name, partition count,
its own replication factor (pinned, so no ``--replication-factor`` changes it) and the configs
set on the topic (overrides only: what it inherits stays inherited). Values are written as the
brokers report them, quoted, so ``plan`` compares exactly what was read and finds the topics
in sync. A broker that does not report configs (Tansu for a topic created without any) gives
declarations without them, and ``plan`` then notes that it cannot compare them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from mesh.topics._cluster import ObservedTopic

EXPORT_FILE = "exported.yaml"


def export_declarations(topics: Iterable[ObservedTopic], prefix: str, source: str) -> str:
    """The YAML of a declarations file holding ``topics`` (full names under ``prefix``)."""
    header = (
        f"# Exported by 'mesh topics export' from {source} under the prefix {prefix!r}.\n"
        f"# Plan it with MESH_TOPIC_PREFIX={prefix} 'mesh topics plan --dir <this directory>'.\n"
    )
    body = yaml.safe_dump(
        {"topics": declared_topics(topics, prefix)}, sort_keys=False, allow_unicode=True
    )
    return header + body


def declared_topics(topics: Iterable[ObservedTopic], prefix: str) -> list[dict[str, Any]]:
    """One declaration (as its YAML mapping) per topic under ``prefix``, by name."""
    declared: list[dict[str, Any]] = []
    for topic in sorted(topics, key=lambda t: t.name):
        logical = topic.name[len(prefix) :]
        if not logical or not topic.name.startswith(prefix):
            continue
        entry: dict[str, Any] = {
            "name": logical,
            "partitions": topic.partitions,
            "replication_factor": topic.replication_factor,
        }
        overrides = topic.overrides() if topic.configs_reported else {}
        if overrides:
            entry["config"] = dict(overrides)
        declared.append(entry)
    return declared
