"""Read ``topics/*.yaml`` into ``TopicDeclarations``, remembering where each thing was written.

Loading never stops at the first mistake: every file is read and every topic parsed on its own,
and each problem carries file, line and topic, so one ``mesh topics validate`` run lists all of
them. The YAML node tree is kept next to the data only to point at lines.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from mesh.errors import TopicSpecError
from mesh.topics._spec import (
    Problem,
    RawDefaults,
    RawFile,
    RawOverlayDefaults,
    RawTopic,
    TopicDeclarations,
    TopicSpec,
    config_text,
)

DEFAULT_DIR = Path("topics")


def resolve_directory(directory: Path | None) -> Path:
    """The declarations directory: ``directory`` if given, else ``./topics``; it must exist."""
    path = directory if directory is not None else DEFAULT_DIR
    if path.is_dir():
        return path
    if directory is None:
        raise TopicSpecError(
            f"no topic declarations: {Path.cwd() / DEFAULT_DIR} does not exist; run from the "
            "project root, or pass --dir or set MESH_TOPICS_DIR"
        )
    raise TopicSpecError(f"no topic declarations: {path} is not a directory")


def load_directory(
    path: Path,
    *,
    replication_factor: int | None = None,
    overlay: RawOverlayDefaults | None = None,
) -> TopicDeclarations:
    """Read every ``*.yaml``/``*.yml`` file of the directory ``path``.

    ``replication_factor`` replaces the default replication factor (not a topic's own value);
    ``overlay`` (an overlay's ``defaults``) replaces the files' defaults. Problems are collected
    in the result; only a directory without files raises.
    """
    files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    if not files:
        raise TopicSpecError(f"no topic declarations: {path} holds no *.yaml files")
    topics: list[TopicSpec] = []
    problems: list[Problem] = []
    for file in files:
        found, wrong = _load_file(file, replication_factor, overlay)
        topics.extend(found)
        problems.extend(wrong)
    return TopicDeclarations(path, tuple(str(f) for f in files), tuple(topics), tuple(problems))


def read_document(file: Path) -> tuple[Any, yaml.Node | None, list[Problem]]:
    """A YAML file's data and node tree (for lines), or the problems that stop reading it."""
    where = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, None, [Problem(where, f"cannot read the file: {exc}")]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        return None, None, [_yaml_problem(where, exc)]
    finally:
        loader.dispose()
    return data, node, []


def _load_file(
    file: Path, replication_factor: int | None, overlay: RawOverlayDefaults | None
) -> tuple[list[TopicSpec], list[Problem]]:
    where = str(file)
    data, node, unreadable = read_document(file)
    if unreadable or data is None:
        return [], unreadable
    if not isinstance(data, dict):
        return [], [Problem(where, "expected a mapping with a 'topics' list", line=1)]
    problems = [Problem(where, msg, line=at) for msg, at in duplicate_keys(node, topics=False)]
    if data.get("topics", ...) is None:  # "topics:" with nothing under it
        data["topics"] = []
    try:
        raw = RawFile.model_validate(data)
    except ValidationError as exc:
        wrong = [pydantic_problem(where, e, node, None, RawFile) for e in exc.errors()]
        return [], problems + wrong
    defaults = raw.defaults
    if overlay is not None:  # the environment's defaults replace the file's
        rf = overlay.replication_factor
        defaults = RawDefaults(
            partitions=defaults.partitions,
            replication_factor=rf if rf is not None else defaults.replication_factor,
            config={**defaults.config, **overlay.config},
        )
    topics: list[TopicSpec] = []
    items = child_node(node, "topics")
    for index, item in enumerate(raw.topics):
        item_node = items.value[index] if isinstance(items, yaml.SequenceNode) else None
        spec, wrong = _topic(where, item, item_node, defaults, replication_factor)
        problems.extend(wrong)
        if spec is not None:
            topics.append(spec)
    return topics, problems


def _topic(
    where: str,
    item: Any,
    node: yaml.Node | None,
    defaults: RawDefaults,
    replication_factor: int | None,
) -> tuple[TopicSpec | None, list[Problem]]:
    line = node.start_mark.line + 1 if node is not None else None
    if not isinstance(item, dict):
        return None, [Problem(where, "each item of 'topics' must be a mapping", line=line)]
    name = item.get("name") if isinstance(item.get("name"), str) else None
    problems = [
        Problem(where, msg, topic=name, line=at) for msg, at in duplicate_keys(node, topics=True)
    ]
    try:
        raw = RawTopic.model_validate(item)
    except ValidationError as exc:
        wrong = [pydantic_problem(where, e, node, name, RawTopic) for e in exc.errors()]
        return None, problems + wrong
    config: dict[str, str] = {}
    for key, value in {**defaults.config, **raw.config}.items():
        text = config_text(value)
        if text is None:
            at = line_of(node, ["config", key]) if key in raw.config else line
            problems.append(
                Problem(where, config_type_problem(key, value), topic=raw.name, line=at)
            )
        else:
            config[str(key)] = text
    partitions = raw.partitions if raw.partitions is not None else defaults.partitions
    if partitions is None:
        problems.append(Problem(where, "partitions is required", topic=raw.name, line=line))
        return None, problems
    candidates = (raw.replication_factor, replication_factor, defaults.replication_factor, 1)
    rf = next(value for value in candidates if value is not None)
    spec = TopicSpec(
        name=raw.name,
        partitions=partitions,
        replication_factor=rf,
        config=config,
        key=raw.key,
        description=raw.description,
        copartition=raw.copartition,
        file=where,
        line=line,
    )
    return spec, problems


def config_type_problem(key: str, value: Any) -> str:
    return f"config {key} must be a string, number, boolean or list (got {value!r})"


def _yaml_problem(where: str, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    detail = f"{problem} ({context})" if context else str(problem)
    line = mark.line + 1 if mark is not None else None
    return Problem(where, f"malformed YAML: {detail}", line=line)


def pydantic_problem(
    where: str,
    error: ErrorDetails,
    node: yaml.Node | None,
    topic: str | None,
    model: type[BaseModel],
) -> Problem:
    loc = [part for part in error["loc"] if isinstance(part, str | int)]
    field = ".".join(str(part) for part in loc)
    if error["type"] == "extra_forbidden":
        known = model
        nested = model.model_fields[loc[0]].annotation if loc[0] in model.model_fields else None
        if len(loc) > 1 and isinstance(nested, type) and issubclass(nested, BaseModel):
            known = nested  # an unknown key inside `defaults:` is compared with its fields
        hint = difflib.get_close_matches(str(loc[-1]), known.model_fields, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        message = f"unknown field {loc[-1]!r}{suggestion}"
    elif error["type"] == "missing":
        message = f"{field} is required"
    else:
        message = f"{field}: {error['msg'].lower()} (got {error['input']!r})"
    return Problem(where, message, topic=topic, line=line_of(node, loc))


def _entry(node: yaml.Node | None, key: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """The (key node, value node) of ``key`` in a mapping, or (item, item) in a sequence."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(key):
                return key_node, value_node
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key], node.value[key]
    return None


def child_node(node: yaml.Node | None, key: str | int) -> yaml.Node | None:
    found = _entry(node, key)
    return found[1] if found is not None else None


def line_of(node: yaml.Node | None, path: Sequence[str | int]) -> int | None:
    """Line (1-based) of the deepest key along ``path`` that exists: where a reader looks."""
    if node is None:
        return None
    at: yaml.Node = node
    for part in path:
        found = _entry(node, part)
        if found is None:
            break
        at, node = found
    return int(at.start_mark.line) + 1


def duplicate_keys(node: yaml.Node | None, *, topics: bool) -> Iterator[tuple[str, int]]:
    """Keys written twice in one mapping (YAML keeps the last one silently).

    With ``topics=False`` the ``topics`` list is left to the per-topic pass, which knows names.
    """
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
            if key_node.value in seen:
                line = key_node.start_mark.line + 1
                yield f"key {key_node.value!r} is written twice (YAML keeps the last)", line
            seen.add(key_node.value)
        if not topics and isinstance(key_node, yaml.ScalarNode) and key_node.value == "topics":
            continue
        yield from duplicate_keys(value_node, topics=True)
