"""Overlays: one set of declarations, changed per environment (a 3-broker cluster, production).

A directory holding ``overlay.yaml`` is an overlay of the plain declarations it names as
``base``: its ``defaults`` replace the base files' defaults, its ``topics`` items patch named
topics. Every command that takes ``--dir`` / ``MESH_TOPICS_DIR`` takes an overlay directory the
same way (``mesh topics apply --dir topics/overlays/cluster``), so a user's own cluster uses the
mechanism the project's 3-broker tests use. The format is in ``mesh.topics._spec``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mesh.topics._load import (
    child_node,
    config_type_problem,
    duplicate_keys,
    line_of,
    load_directory,
    pydantic_problem,
    read_document,
    resolve_directory,
)
from mesh.topics._spec import (
    Problem,
    RawOverlay,
    RawPatch,
    TopicDeclarations,
    TopicSpec,
    config_text,
)

OVERLAY_FILE = "overlay.yaml"


def load_declarations(
    directory: Path | None = None, *, replication_factor: int | None = None
) -> TopicDeclarations:
    """Read the declarations of ``directory`` (default ``./topics``): plain files, or an overlay.

    ``replication_factor`` replaces the default replication factor (not a topic's own value, nor
    an overlay's patch of one). Problems are collected in the result; only a missing directory
    or one without files raises.
    """
    path = resolve_directory(directory)
    overlay_file = path / OVERLAY_FILE
    if not overlay_file.is_file():
        return load_directory(path, replication_factor=replication_factor)
    return _load_overlay(path, overlay_file, replication_factor)


def _load_overlay(path: Path, file: Path, replication_factor: int | None) -> TopicDeclarations:
    where = str(file)
    raw, node, problems = _read_overlay(file)
    others = sorted(
        str(other) for other in [*path.glob("*.yaml"), *path.glob("*.yml")] if other != file
    )
    problems += [
        Problem(
            other, f"an overlay directory holds only {OVERLAY_FILE}; declare topics in its base"
        )
        for other in others
    ]
    if raw is None:
        return TopicDeclarations(path, (where,), (), tuple(problems))
    base = Path(path, raw.base)
    at = line_of(node, ["base"])
    if not base.is_dir():
        problems.append(Problem(where, f"base {raw.base!r} is not a directory ({base})", line=at))
        return TopicDeclarations(path, (where,), (), tuple(problems))
    if (base / OVERLAY_FILE).is_file():
        problems.append(
            Problem(where, f"base {raw.base!r} is itself an overlay; name plain files", line=at)
        )
        return TopicDeclarations(path, (where,), (), tuple(problems))
    declared = load_directory(base, replication_factor=replication_factor, overlay=raw.defaults)
    topics, patch_problems = _patch(where, declared.topics, raw.topics, child_node(node, "topics"))
    return TopicDeclarations(
        path,
        (*declared.files, where),
        tuple(topics),
        (*declared.problems, *problems, *patch_problems),
    )


def _read_overlay(file: Path) -> tuple[RawOverlay | None, yaml.Node | None, list[Problem]]:
    where = str(file)
    data, node, problems = read_document(file)
    if problems:
        return None, None, problems
    if not isinstance(data, dict):
        return None, None, [Problem(where, "expected a mapping with a 'base' directory", line=1)]
    problems = [Problem(where, msg, line=at) for msg, at in duplicate_keys(node, topics=True)]
    if data.get("topics", ...) is None:
        data["topics"] = []
    try:
        raw = RawOverlay.model_validate(data)
    except ValidationError as exc:
        wrong = [pydantic_problem(where, e, node, None, RawOverlay) for e in exc.errors()]
        return None, node, problems + wrong
    for key, value in raw.defaults.config.items():
        if config_text(value) is None:
            at = line_of(node, ["defaults", "config", key])
            problems.append(Problem(where, config_type_problem(key, value), line=at))
    return raw, node, problems


def _patch(
    where: str, topics: tuple[TopicSpec, ...], items: list[Any], nodes: yaml.Node | None
) -> tuple[list[TopicSpec], list[Problem]]:
    """The base topics with each named patch applied (config merged, numbers replaced)."""
    by_name = {spec.name: index for index, spec in enumerate(topics)}
    patched = list(topics)
    problems: list[Problem] = []
    for index, item in enumerate(items):
        node = nodes.value[index] if isinstance(nodes, yaml.SequenceNode) else None
        line = node.start_mark.line + 1 if node is not None else None
        name = item.get("name") if isinstance(item, dict) else None
        try:
            patch = RawPatch.model_validate(item)
        except ValidationError as exc:
            topic = name if isinstance(name, str) else None
            problems += [pydantic_problem(where, e, node, topic, RawPatch) for e in exc.errors()]
            continue
        if patch.name not in by_name:
            problems.append(
                Problem(where, "patches a topic the base does not declare", patch.name, line)
            )
            continue
        spec = patched[by_name[patch.name]]
        config = dict(spec.config)
        for key, value in patch.config.items():
            text = config_text(value)
            if text is None:
                at = line_of(node, ["config", key])
                problems.append(Problem(where, config_type_problem(key, value), patch.name, at))
            else:
                config[key] = text
        changes: dict[str, Any] = {"config": config}
        if patch.partitions is not None:
            changes["partitions"] = patch.partitions
        if patch.replication_factor is not None:
            changes["replication_factor"] = patch.replication_factor
        patched[by_name[patch.name]] = spec.model_copy(update=changes)
    return patched, problems
