"""The pure diff between declared topics and the observed cluster: a ``TopicPlan`` of ``Change``s.

Every difference becomes a ``Change`` with a status that says what ``apply`` will do about it:

- ``planned``: apply makes it (create, alter configs, add partitions, delete with
  ``--allow-delete``);
- ``blocked``: an undeclared topic under the prefix; deleted only with ``--allow-delete``;
- ``refused``: mesh never does it (fewer partitions, another replication factor), with the reason;
- ``unsupported``: the broker does not offer the API it needs (the embedded Tansu broker has no
  AlterConfigs and no CreatePartitions), with the way out.

``check`` fails on any change, whatever its status: each one is a real difference between the
files and the cluster (a partition count the broker cannot change still breaks co-partitioning).
What the broker does not report is never counted: a topic whose configs come back empty gets a
note, "configs not reported by this broker", instead of every declared config as false drift.
Only topics under the prefix are looked at; a topic outside it is never listed, let alone
deleted, and with an empty prefix nothing is ever deleted. Nor is anything deleted under a prefix
that does not end with a separator (``team1`` matches ``team1x.requests``, another team's): the
plan names the topics it would match instead.

The plan refuses what the brokers would refuse, so that ``plan`` and ``apply --dry-run`` say it
before ``apply`` fails: a replication factor above the number of brokers, a
``min.insync.replicas`` (declared, or the brokers' default) above the replication factor. The
brokers' own check of the remaining changes (``validate_only``) is added by ``_apply``.

Configs are compared with what is set on the topic, not with the value in force: a declared
key whose override was removed by hand is drift even while the brokers' default happens to
match, because a later change of that default would silently change the topic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mesh.topics._cluster import Api, BrokerCapabilities, ClusterState, ObservedTopic
from mesh.topics._configs import same_value
from mesh.topics._spec import TopicSpec
from mesh.topics._words import listed, plural


class ChangeKind(StrEnum):
    CREATE = "create"
    ALTER_CONFIG = "alter_config"
    ADD_PARTITIONS = "add_partitions"
    REDUCE_PARTITIONS = "reduce_partitions"
    CHANGE_REPLICATION_FACTOR = "change_replication_factor"
    DELETE = "delete"


class ChangeStatus(StrEnum):
    PLANNED = "planned"
    APPLIED = "applied"
    BLOCKED = "blocked"
    REFUSED = "refused"
    UNSUPPORTED = "unsupported"
    FAILED = "failed"


@dataclass(frozen=True)
class ConfigDiff:
    """One config key whose value differs; ``None`` means not set on the topic (old) or
    removed (new)."""

    key: str
    old: str | None
    new: str | None
    default: str | None = None
    """The value in force while ``old`` is None: inherited from the brokers' defaults."""

    def __str__(self) -> str:
        old = self.old
        if old is None:
            old = f"(unset; default {self.default})" if self.default is not None else "(unset)"
        return f"{self.key} {old} → {self.new or '(removed)'}"

    def as_dict(self) -> dict[str, str | None]:
        found = {"old": self.old, "new": self.new}
        return found if self.default is None else {**found, "default": self.default}


@dataclass(frozen=True)
class Change:
    """One difference between a declared topic and the cluster, and what apply does about it."""

    kind: ChangeKind
    topic: str
    """Full name on the cluster."""
    name: str
    """Logical name (the full name without the prefix)."""
    status: ChangeStatus = ChangeStatus.PLANNED
    reason: str | None = None
    old: int | None = None
    """Partitions or replication factor now (for those kinds)."""
    new: int | None = None
    config_diff: tuple[ConfigDiff, ...] = ()
    config: Mapping[str, str] = field(default_factory=dict)
    """For create and alter_config: the whole declared set of configs."""
    replication_factor: int | None = None

    def with_status(self, status: ChangeStatus, reason: str | None = None) -> Change:
        return dataclasses.replace(self, status=status, reason=reason)

    def summary(self) -> str:
        """What the change is, in words, without its status."""
        if self.kind is ChangeKind.CREATE:
            return (
                f"create {self.topic} ({plural(self.new or 0, 'partition')}, replication factor "
                f"{self.replication_factor}, {plural(len(self.config), 'config')})"
            )
        if self.kind is ChangeKind.ALTER_CONFIG:
            return f"alter configs of {self.topic}: " + ", ".join(map(str, self.config_diff))
        if self.kind is ChangeKind.DELETE:
            verb = "would delete" if self.status is ChangeStatus.BLOCKED else "delete"
            return f"{verb} {self.topic} (not declared; {plural(self.old or 0, 'partition')})"
        what = {
            ChangeKind.ADD_PARTITIONS: "add partitions to",
            ChangeKind.REDUCE_PARTITIONS: "reduce partitions of",
            ChangeKind.CHANGE_REPLICATION_FACTOR: "change replication factor of",
        }[self.kind]
        return f"{what} {self.topic}: {self.old} → {self.new}"

    def details(self) -> dict[str, Any]:
        if self.kind is ChangeKind.CREATE:
            return {
                "partitions": self.new,
                "replication_factor": self.replication_factor,
                "config": dict(self.config),
            }
        if self.kind is ChangeKind.ALTER_CONFIG:
            return {"config": {d.key: d.as_dict() for d in self.config_diff}}
        if self.kind is ChangeKind.DELETE:
            return {"partitions": self.old}
        field_name = (
            "replication_factor"
            if self.kind is ChangeKind.CHANGE_REPLICATION_FACTOR
            else "partitions"
        )
        return {field_name: {"old": self.old, "new": self.new}}

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "topic": self.topic,
            "name": self.name,
            "status": str(self.status),
            "reason": self.reason,
            "details": self.details(),
        }


@dataclass(frozen=True)
class Note:
    """Something worth knowing that is not a difference (e.g. configs not reported)."""

    topic: str
    """Full name, or empty for a note about the whole plan."""
    message: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.message}" if self.topic else self.message

    def as_dict(self) -> dict[str, str]:
        return {"topic": self.topic, "message": self.message}


@dataclass(frozen=True)
class TopicPlan:
    """Every difference between the declarations and the cluster, in the order apply acts."""

    prefix: str
    changes: tuple[Change, ...] = ()
    notes: tuple[Note, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not self.changes

    @property
    def planned(self) -> tuple[Change, ...]:
        """The changes apply will make."""
        return tuple(c for c in self.changes if c.status is ChangeStatus.PLANNED)

    @property
    def held_back(self) -> tuple[Change, ...]:
        """The changes apply will not make (blocked, refused, unsupported)."""
        return tuple(c for c in self.changes if c.status is not ChangeStatus.PLANNED)

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "in_sync": self.in_sync,
            "changes": [c.as_dict() for c in self.changes],
            "notes": [n.as_dict() for n in self.notes],
        }


REFUSE_FEWER_PARTITIONS = (
    "Kafka cannot remove partitions; to have fewer, delete the topic (and its data) and apply again"
)
REFUSE_REPLICATION = (
    "mesh does not move replicas; change the replication factor with a partition "
    "reassignment (kafka-reassign-partitions.sh)"
)
NEEDS_ALLOW_DELETE = "apply deletes it only with --allow-delete"
CONFIGS_NOT_REPORTED = "configs not reported by this broker; they cannot be compared"
KEYS_MOVE = (
    "adding partitions moves keys to other partitions; per-key order holds only among "
    "messages written after the change"
)
NO_DELETE_WITHOUT_PREFIX = (
    "the topic prefix is empty, so no topic is ever deleted (every topic of the cluster "
    "would look undeclared)"
)
SEPARATORS = "._-"
"""What a topic prefix should end with, so that it matches only its own topics."""
_ORDER = list(ChangeKind)


def open_prefix(prefix: str) -> bool:
    """A non-empty prefix without a trailing separator: ``team1`` also matches ``team1x.a``."""
    return bool(prefix) and prefix[-1] not in SEPARATORS


def beyond(prefix: str, names: Iterable[str]) -> list[str]:
    """The names ``prefix`` matches only as a string: not followed by a separator, so they
    likely belong to another prefix (``team1x.a`` under ``team1``)."""
    return [
        n
        for n in names
        if n.startswith(prefix) and n[len(prefix) : len(prefix) + 1] not in SEPARATORS
    ]


def open_prefix_note(prefix: str, matched: list[str]) -> str:
    """Why nothing is deleted under ``prefix``, naming the topics it matches."""
    return (
        f"the prefix {prefix!r} does not end with '.', '_' or '-', so it also matches other "
        f"prefixes' topics ({listed(matched)}); undeclared topics under it are never deleted "
        f"(end it with a separator, e.g. MESH_TOPIC_PREFIX={prefix}.)"
    )


def _unsupported(api: Api, remedy: str) -> str:
    return f"the broker offers no {api.label} (API key {int(api)}); {remedy}"


def refusal(
    replication_factor: int, config: Mapping[str, str], cluster: ClusterState
) -> str | None:
    """Why the brokers would refuse a topic of this replication factor and these configs, or
    never take a write to it (None if they would not): what ``plan`` says before ``apply``."""
    brokers = cluster.brokers
    if brokers is not None and replication_factor > brokers:
        return (
            f"replication factor {replication_factor} needs "
            f"{plural(replication_factor, 'broker')}; the cluster has {brokers}"
        )
    declared = config.get("min.insync.replicas", "").strip()
    if declared.isdigit():
        min_isr: int | None = int(declared)
        whose = ""
    else:
        min_isr, whose = cluster.default_min_insync, " (the brokers' default)"
    if min_isr is not None and min_isr > replication_factor:
        return (
            f"min.insync.replicas {min_isr}{whose} exceeds the replication factor "
            f"{replication_factor}: no write with acks=all could ever succeed"
        )
    return None


def diff_topics(
    declared: Iterable[TopicSpec],
    cluster: ClusterState,
    *,
    prefix: str,
    allow_delete: bool = False,
) -> TopicPlan:
    """The plan that brings the topics under ``prefix`` to the declarations (pure)."""
    caps = cluster.capabilities
    owned = {topic.name: topic for topic in cluster.under(prefix)}
    specs = {spec.name: spec for spec in declared}
    changes: list[Change] = []
    notes: list[Note] = []
    for _name, spec in sorted(specs.items()):
        full = spec.full_name(prefix)
        observed = owned.get(full)
        if observed is None:
            changes.append(_create(spec, full, cluster))
            continue
        found, noted = _differences(spec, observed, cluster)
        changes.extend(found)
        notes.extend(noted)
    declared_full = {spec.full_name(prefix) for spec in specs.values()}
    undeclared = [t for t in owned.values() if t.name not in declared_full]
    if undeclared and not prefix:
        notes.append(Note("", NO_DELETE_WITHOUT_PREFIX))
    elif undeclared and open_prefix(prefix):
        notes.append(Note("", open_prefix_note(prefix, [t.name for t in undeclared])))
    elif undeclared:
        changes.extend(_delete(topic, prefix, caps, allow_delete) for topic in undeclared)
    changes.sort(key=lambda c: (_ORDER.index(c.kind), c.topic))
    return TopicPlan(prefix, tuple(changes), tuple(notes))


def _create(spec: TopicSpec, full: str, cluster: ClusterState) -> Change:
    change = Change(
        ChangeKind.CREATE,
        full,
        spec.name,
        new=spec.partitions,
        replication_factor=spec.replication_factor,
        config=dict(spec.config),
    )
    if not cluster.capabilities.offers(Api.CREATE_TOPICS):
        return change.with_status(
            ChangeStatus.UNSUPPORTED, _unsupported(Api.CREATE_TOPICS, "create it by hand")
        )
    refused = refusal(spec.replication_factor, spec.config, cluster)
    return change if refused is None else change.with_status(ChangeStatus.REFUSED, refused)


def _differences(
    spec: TopicSpec, observed: ObservedTopic, cluster: ClusterState
) -> tuple[list[Change], list[Note]]:
    caps = cluster.capabilities
    full = observed.name
    changes: list[Change] = []
    notes: list[Note] = []
    if observed.replication_factor != spec.replication_factor:
        changes.append(
            Change(
                ChangeKind.CHANGE_REPLICATION_FACTOR,
                full,
                spec.name,
                ChangeStatus.REFUSED,
                REFUSE_REPLICATION,
                old=observed.replication_factor,
                new=spec.replication_factor,
            )
        )
    if spec.partitions < observed.partitions:
        changes.append(
            Change(
                ChangeKind.REDUCE_PARTITIONS,
                full,
                spec.name,
                ChangeStatus.REFUSED,
                REFUSE_FEWER_PARTITIONS,
                old=observed.partitions,
                new=spec.partitions,
            )
        )
    elif spec.partitions > observed.partitions:
        grow = Change(
            ChangeKind.ADD_PARTITIONS, full, spec.name, old=observed.partitions, new=spec.partitions
        )
        if not caps.offers(Api.CREATE_PARTITIONS):
            remedy = "delete the topic (and its data) and apply again to get more partitions"
            grow = grow.with_status(
                ChangeStatus.UNSUPPORTED, _unsupported(Api.CREATE_PARTITIONS, remedy)
            )
        else:
            notes.append(Note(full, KEYS_MOVE))
        changes.append(grow)
    if not observed.configs_reported:
        notes.append(Note(full, CONFIGS_NOT_REPORTED))
        return changes, notes
    diff = config_diff(spec.config, observed)
    if diff:
        alter = Change(
            ChangeKind.ALTER_CONFIG, full, spec.name, config_diff=diff, config=dict(spec.config)
        )
        if not caps.offers(Api.ALTER_CONFIGS):
            remedy = "delete the topic (and its data) and apply again to change its configs"
            alter = alter.with_status(
                ChangeStatus.UNSUPPORTED, _unsupported(Api.ALTER_CONFIGS, remedy)
            )
        elif "min.insync.replicas" in spec.config:
            # Only a declared value is sent: the topic keeps its replicas, whatever is declared.
            own = {"min.insync.replicas": spec.config["min.insync.replicas"]}
            refused = refusal(observed.replication_factor, own, cluster)
            if refused is not None:
                alter = alter.with_status(ChangeStatus.REFUSED, refused)
        changes.append(alter)
    return changes, notes


def config_diff(declared: Mapping[str, str], observed: ObservedTopic) -> tuple[ConfigDiff, ...]:
    """Declared keys not set on the topic to their value, then overrides set on the topic but
    not declared. A declared key the topic only inherits is a difference even when the
    inherited value matches: the override is what keeps it."""
    overrides = observed.overrides()
    diffs = []
    for key, value in sorted(declared.items()):
        current = overrides.get(key)
        if current is not None and same_value(key, current, value):
            continue
        default = observed.value_of(key) if current is None else None
        diffs.append(ConfigDiff(key, current, value, default))
    diffs.extend(
        ConfigDiff(key, value, None) for key, value in overrides.items() if key not in declared
    )
    return tuple(diffs)


def _delete(
    topic: ObservedTopic, prefix: str, caps: BrokerCapabilities, allow_delete: bool
) -> Change:
    change = Change(ChangeKind.DELETE, topic.name, topic.name[len(prefix) :], old=topic.partitions)
    if not caps.offers(Api.DELETE_TOPICS):
        return change.with_status(
            ChangeStatus.UNSUPPORTED, _unsupported(Api.DELETE_TOPICS, "delete it by hand")
        )
    if not allow_delete:
        return change.with_status(ChangeStatus.BLOCKED, NEEDS_ALLOW_DELETE)
    return change
