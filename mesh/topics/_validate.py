"""Offline rules for topic declarations (no broker needed): what ``mesh topics validate`` checks.

The rules are the ones Jikkou and JulieOps run before touching a cluster (name policy, partition
bounds, known config keys) plus what the mesh itself relies on: co-partitioned topics must have
equal partition counts, or the replica that owns input partition p would not own state
partition p.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from mesh.errors import TopicSpecError
from mesh.topics._configs import config_problem
from mesh.topics._overlay import load_declarations
from mesh.topics._spec import Problem, TopicDeclarations, TopicSpec

MAX_PARTITIONS = 1000
MAX_REPLICATION_FACTOR = 32767  # an int16 on the wire
MAX_TOPIC_NAME = 249  # Kafka's own limit
_LEGAL_NAME = re.compile(r"[A-Za-z0-9._-]+")
_SHOWN_IN_ONE_LINE = 3


def validate_declarations(declarations: TopicDeclarations, *, prefix: str) -> list[Problem]:
    """Every problem of the declarations: those met while loading, then each rule's."""
    problems = list(declarations.problems)
    for spec in declarations.topics:
        problems.extend(_topic_problems(spec, prefix))
    problems.extend(_duplicates(declarations.topics))
    problems.extend(_collisions(declarations.topics))
    problems.extend(_copartition_problems(declarations.topics))
    return problems


def load_topics(
    directory: Path | None = None, *, prefix: str, replication_factor: int | None = None
) -> TopicDeclarations:
    """Load and validate; raise ``TopicSpecError`` (one line, all problems in ``.fields``)."""
    declarations = load_declarations(directory, replication_factor=replication_factor)
    problems = validate_declarations(declarations, prefix=prefix)
    if problems:
        raise TopicSpecError(summarize(problems), problems=problems)
    return declarations


def summarize(problems: list[Problem]) -> str:
    """All problems as one line: the first few in full, then how many more."""
    if len(problems) == 1:
        return str(problems[0])
    shown = "; ".join(str(p) for p in problems[:_SHOWN_IN_ONE_LINE])
    more = len(problems) - _SHOWN_IN_ONE_LINE
    tail = f"; and {more} more (see 'mesh topics validate')" if more > 0 else ""
    return f"{len(problems)} problems in the topic declarations: {shown}{tail}"


def _problem(spec: TopicSpec, message: str) -> Problem:
    return Problem(spec.file, message, topic=spec.name, line=spec.line)


def _topic_problems(spec: TopicSpec, prefix: str) -> list[Problem]:
    found: list[str] = []
    full = spec.full_name(prefix)
    if not _LEGAL_NAME.fullmatch(spec.name) or spec.name in (".", ".."):
        found.append("name may hold only letters, digits, '.', '_' and '-'")
    elif len(full) > MAX_TOPIC_NAME:
        found.append(f"name {full!r} is longer than Kafka's {MAX_TOPIC_NAME} characters")
    if prefix and spec.name.startswith(prefix):
        found.append(
            f"names are logical: write {spec.name[len(prefix) :]!r}; "
            f"the prefix {prefix!r} is added on apply"
        )
    if not 1 <= spec.partitions <= MAX_PARTITIONS:
        found.append(f"partitions must be between 1 and {MAX_PARTITIONS} (got {spec.partitions})")
    if not 1 <= spec.replication_factor <= MAX_REPLICATION_FACTOR:
        found.append(
            f"replication_factor must be between 1 and {MAX_REPLICATION_FACTOR} "
            f"(got {spec.replication_factor})"
        )
    for key, value in spec.config.items():
        problem = config_problem(key, value)
        if problem is not None:
            found.append(problem)
    min_isr = spec.config.get("min.insync.replicas", "")
    if min_isr.strip().isdigit() and int(min_isr) > spec.replication_factor:
        found.append(
            f"min.insync.replicas {int(min_isr)} exceeds the replication factor "
            f"{spec.replication_factor}: no write with acks=all could ever succeed"
        )
    return [_problem(spec, message) for message in found]


def _duplicates(topics: tuple[TopicSpec, ...]) -> list[Problem]:
    first: dict[str, TopicSpec] = {}
    found: list[Problem] = []
    for spec in topics:
        if spec.name in first:
            earlier = first[spec.name]
            where = f"{earlier.file}:{earlier.line}" if earlier.line else earlier.file
            found.append(_problem(spec, f"declared twice (first in {where})"))
        else:
            first[spec.name] = spec
    return found


def _collisions(topics: tuple[TopicSpec, ...]) -> list[Problem]:
    """Kafka refuses a topic whose name equals another's once '.' is read as '_'."""
    by_metric_name: dict[str, set[str]] = defaultdict(set)
    for spec in topics:
        by_metric_name[spec.name.replace(".", "_")].add(spec.name)
    found: list[Problem] = []
    for spec in topics:
        others = by_metric_name[spec.name.replace(".", "_")] - {spec.name}
        if others:
            found.append(
                _problem(
                    spec,
                    f"collides with {', '.join(sorted(others))}: Kafka treats '.' and '_' "
                    "alike in metric names and refuses the second topic",
                )
            )
    return found


def _copartition_problems(topics: tuple[TopicSpec, ...]) -> list[Problem]:
    groups: dict[str, list[TopicSpec]] = defaultdict(list)
    for spec in topics:
        if spec.copartition:
            groups[spec.copartition].append(spec)
    found: list[Problem] = []
    for group, members in sorted(groups.items()):
        counts = Counter(spec.partitions for spec in members)
        if len(counts) < 2:
            continue
        usual = counts.most_common(1)[0][0]
        peers = ", ".join(s.name for s in members if s.partitions == usual)
        for spec in members:
            if spec.partitions != usual:
                found.append(
                    _problem(
                        spec,
                        f"has {spec.partitions} partitions but co-partitioned group {group!r} "
                        f"has {usual} ({peers}); co-partitioned topics need equal counts",
                    )
                )
    return found
