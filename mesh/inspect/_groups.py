"""Consumer groups of the mesh's components: their lag, and moving them back to a point in time.

A component's group is ``settings.group(name)`` (the topic prefix + the name), so the groups of
this mesh are exactly those under the prefix, and the component is the rest of the name. Committed
offsets are asked for the partitions of the mesh's topics by name (the embedded broker cannot
answer "every partition of the group"), and a partition with no commit is not the group's.

A reset commits new offsets for a group with no members, as Kafka's own
``kafka-consumer-groups --reset-offsets`` does; a group with members would overwrite them at its
next commit, so that is refused. Planning (the dry run) works either way and says who is in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from mesh.errors import ConfigError, MeshError
from mesh.inspect._read import log_ends, offsets_at, reading, topic_partitions
from mesh.kafka.connection import kafka_errors, open_admin
from mesh.settings import Settings


@dataclass(frozen=True)
class PartitionLag:
    """One partition a group has committed on: where it is, where the log ends, the gap."""

    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True)
class GroupInfo:
    """A component's consumer group: its state, members and committed partitions."""

    group: str
    component: str
    state: str
    members: tuple[str, ...]
    partitions: tuple[PartitionLag, ...] = field(default=())

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "component": self.component,
            "state": self.state,
            "members": list(self.members),
            "lag": self.lag,
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed": p.committed,
                    "end": p.end,
                    "lag": p.lag,
                }
                for p in self.partitions
            ],
        }


async def _mesh_groups(admin: AIOKafkaAdminClient, settings: Settings) -> list[str]:
    with kafka_errors(settings, "list consumer groups"):
        listed = await admin.list_consumer_groups()
    prefix = settings.group("")
    return sorted({str(entry[0]) for entry in listed if str(entry[0]).startswith(prefix)})


async def _describe(
    admin: AIOKafkaAdminClient, settings: Settings, groups: list[str]
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Group → (state, members as ``client-id@host``).

    One request per group: the embedded broker drops the connection when asked about several."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for group in groups:
        with kafka_errors(settings, f"describe consumer group {group}"):
            responses = await admin.describe_consumer_groups([group])
        for response in responses:
            for entry in response.groups:
                _error, group_id, state, _ptype, _protocol, members = entry[:6]
                found[str(group_id)] = (
                    str(state),
                    tuple(_member(m) for m in members),
                )
    return found


def _member(member: Any) -> str:
    """``client-id@host`` (the member id when the broker leaves those empty)."""
    member_id, client_id, host = str(member[0]), str(member[1]), str(member[2]).lstrip("/")
    label = client_id or member_id or "?"
    return f"{label}@{host}" if host else label


async def _committed(
    admin: AIOKafkaAdminClient, settings: Settings, group: str, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    if not tps:
        return {}
    with kafka_errors(settings, f"read the committed offsets of {group}"):
        answer = await admin.list_consumer_group_offsets(group, partitions=tps)
    return {tp: int(meta.offset) for tp, meta in answer.items() if meta.offset >= 0}


async def group_infos(settings: Settings, only: str | None = None) -> list[GroupInfo]:
    """Every consumer group of this mesh (or just ``only``) with its lag per partition."""
    async with reading(settings) as consumer:
        topics = await topic_partitions(consumer, settings)
        mesh_tps = [
            TopicPartition(topic, n)
            for topic, count in sorted(topics.items())
            if topic.startswith(settings.topic_prefix)
            for n in range(count)
        ]
        async with open_admin(settings) as admin:
            names = await _mesh_groups(admin, settings)
            if only is not None:
                names = [resolve_group(settings, only, names)]
            described = await _describe(admin, settings, names)
            committed = {name: await _committed(admin, settings, name, mesh_tps) for name in names}
        wanted = sorted({tp for offsets in committed.values() for tp in offsets})
        ends = await log_ends(consumer, settings, wanted)
    infos = []
    for name in names:
        state, members = described.get(name, ("Unknown", ()))
        partitions = tuple(
            PartitionLag(tp.topic, tp.partition, offset, ends[tp])
            for tp, offset in sorted(committed[name].items())
        )
        component = name.removeprefix(settings.group(""))
        infos.append(GroupInfo(name, component, state, members, partitions))
    return infos


def resolve_group(settings: Settings, component: str, groups: list[str]) -> str:
    """The group of ``component`` (a component name, or a full group name of this mesh)."""
    for candidate in (settings.group(component), component):
        if candidate in groups:
            return candidate
    known = ", ".join(g.removeprefix(settings.group("")) for g in groups) or "none"
    raise ConfigError(
        f"no consumer group {settings.group(component)!r} under this mesh's prefix "
        f"(components with groups: {known})"
    )


@dataclass(frozen=True)
class ResetStep:
    """One partition of a reset: the committed offset now and the one to commit."""

    topic: str
    partition: int
    current: int
    target: int

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "current": self.current,
            "target": self.target,
            "change": self.target - self.current,
        }


@dataclass(frozen=True)
class ResetPlan:
    """The offsets a reset commits for a group, per partition it has committed on."""

    group: str
    component: str
    at_ms: int
    steps: tuple[ResetStep, ...]
    members: tuple[str, ...] = ()
    """Active members when it was planned: applying it waits until there are none."""


async def plan_reset(
    settings: Settings, component: str, at_ms: int, *, dry_run: bool = False
) -> ResetPlan:
    """Where each committed partition of the component's group would restart to reprocess from
    ``at_ms``. A group with members is refused (``MeshError``), unless this is a ``dry_run``:
    the plan then lists them."""
    info = (await group_infos(settings, component))[0]
    if not dry_run:
        _refuse_active(info)
    if not info.partitions:
        raise ConfigError(f"consumer group {info.group} has committed no offsets: nothing to reset")
    tps = [TopicPartition(p.topic, p.partition) for p in info.partitions]
    async with reading(settings) as consumer:
        targets = await offsets_at(consumer, settings, tps, at_ms)
    steps = tuple(
        ResetStep(p.topic, p.partition, p.committed, targets[TopicPartition(p.topic, p.partition)])
        for p in info.partitions
    )
    return ResetPlan(info.group, info.component, at_ms, steps, info.members)


def _refuse_active(info: GroupInfo) -> None:
    if info.members:
        shown = ", ".join(info.members[:5]) + (" …" if len(info.members) > 5 else "")
        raise MeshError(
            f"consumer group {info.group} has {len(info.members)} active member(s) ({shown}); "
            f"stop every {info.component} replica first, then reset"
        )


async def apply_reset(settings: Settings, plan: ResetPlan) -> None:
    """Commit the plan's offsets (after checking once more that the group has no members)."""
    info = (await group_infos(settings, plan.group))[0]
    _refuse_active(info)
    offsets = {TopicPartition(s.topic, s.partition): s.target for s in plan.steps}
    async with reading(settings, group_id=plan.group) as consumer:
        with kafka_errors(settings, f"reset the offsets of {plan.group}"):
            consumer.assign(list(offsets))
            await consumer.commit(offsets)


__all__ = [
    "GroupInfo",
    "PartitionLag",
    "ResetPlan",
    "ResetStep",
    "apply_reset",
    "group_infos",
    "plan_reset",
    "resolve_group",
]
