"""The async core of ``mesh topics plan|apply|check|describe``, usable from Python as is.

Each function opens one admin connection, reads the cluster once, and works from that reading,
so the plan printed and the changes made come from the same observation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mesh.errors import ConfigError
from mesh.kafka.connection import open_admin
from mesh.settings import Settings
from mesh.topics._admin import TopicAdmin
from mesh.topics._cluster import ClusterState, ObservedTopic
from mesh.topics._plan import Change, ChangeKind, ChangeStatus, TopicPlan, diff_topics
from mesh.topics._spec import TopicSpec

DEFAULT_VISIBLE_WITHIN = 30.0


@dataclass(frozen=True)
class ApplyResult:
    """What ``apply`` did (or, with ``dry_run``, would do) and what it left alone."""

    plan: TopicPlan
    changes: tuple[Change, ...]
    """Changes made (status ``applied``), or with ``dry_run`` the ones apply would make."""
    dry_run: bool = False

    @property
    def skipped(self) -> tuple[Change, ...]:
        """Differences left as they are: blocked, refused or unsupported."""
        return self.plan.held_back

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.plan.prefix,
            "dry_run": self.dry_run,
            "changes": [c.as_dict() for c in self.changes],
            "skipped": [c.as_dict() for c in self.skipped],
            "notes": [n.as_dict() for n in self.plan.notes],
        }


async def read_cluster(settings: Settings) -> ClusterState:
    """The topics of the cluster (configs of those under the prefix) and the broker's APIs."""
    async with open_admin(settings) as admin:
        return await TopicAdmin(admin, settings).read_cluster(settings.topic_prefix)


async def plan_topics(
    settings: Settings, topics: Iterable[TopicSpec], *, allow_delete: bool = False
) -> TopicPlan:
    """The differences between validated declarations and the cluster."""
    cluster = await read_cluster(settings)
    return diff_topics(topics, cluster, prefix=settings.topic_prefix, allow_delete=allow_delete)


async def apply_topics(
    settings: Settings,
    topics: Iterable[TopicSpec],
    *,
    dry_run: bool = False,
    allow_delete: bool = False,
    on_plan: Callable[[TopicPlan], None] | None = None,
    on_change: Callable[[Change], None] | None = None,
    visible_within: float = DEFAULT_VISIBLE_WITHIN,
) -> ApplyResult:
    """Make the cluster match validated declarations, as far as the broker allows.

    ``on_plan`` sees the plan before anything is changed and ``on_change`` each change as it
    is completed (for progress display); a change is complete once the metadata shows it,
    which must happen within ``visible_within`` seconds. Topics outside the prefix are never
    touched.
    """
    prefix = settings.topic_prefix
    async with open_admin(settings) as admin:
        cluster_admin = TopicAdmin(admin, settings, visible_within=visible_within)
        cluster = await cluster_admin.read_cluster(prefix)
        plan = diff_topics(topics, cluster, prefix=prefix, allow_delete=allow_delete)
        if on_plan is not None:
            on_plan(plan)
        if dry_run:
            return ApplyResult(plan, plan.planned, dry_run=True)
        applied: list[Change] = []

        def done(change: Change) -> None:
            finished = change.with_status(ChangeStatus.APPLIED)
            applied.append(finished)
            if on_change is not None:
                on_change(finished)

        steps = {
            ChangeKind.CREATE: cluster_admin.create,
            ChangeKind.ALTER_CONFIG: cluster_admin.alter_configs,
            ChangeKind.ADD_PARTITIONS: cluster_admin.add_partitions,
            ChangeKind.DELETE: cluster_admin.delete,
        }
        for kind, step in steps.items():
            batch = [c for c in plan.planned if c.kind is kind]
            if batch:
                await step(batch, done)
    return ApplyResult(plan, tuple(applied))


async def describe_topics(settings: Settings, name: str | None = None) -> list[ObservedTopic]:
    """Live topics under the prefix; ``name`` (logical or full) picks one of them."""
    cluster = await read_cluster(settings)
    owned = {topic.name: topic for topic in cluster.under(settings.topic_prefix)}
    if name is None:
        return list(owned.values())
    for candidate in (settings.topic(name), name):  # the logical reading first
        if candidate in owned:
            return [owned[candidate]]
    raise ConfigError(
        f"no topic {name!r} under the prefix {settings.topic_prefix!r} on "
        f"{settings.bootstrap_servers}; 'mesh topics describe' lists them"
    )
