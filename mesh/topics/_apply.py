"""The async core of ``mesh topics plan|apply|check|describe``, usable from Python as is.

Each function opens one admin connection, reads the cluster once, and works from that reading,
so the plan printed and the changes made come from the same observation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mesh.errors import BrokerError, BrokerUnavailable, ConfigError
from mesh.kafka.connection import open_admin
from mesh.settings import Settings
from mesh.topics._admin import TopicAdmin
from mesh.topics._cluster import ClusterState, ObservedTopic
from mesh.topics._plan import Change, ChangeKind, ChangeStatus, TopicPlan, diff_topics
from mesh.topics._spec import TopicSpec

DEFAULT_VISIBLE_WITHIN = 30.0


@dataclass(frozen=True)
class ApplyResult:
    """What ``apply`` did (or, with ``dry_run``, would do), what failed and what it left alone.

    ``exit_code`` is the command's: 0 every difference was applied (or would be), 1 a change
    failed, 2 a difference was refused or left as is (blocked, unsupported) and none failed.
    """

    plan: TopicPlan
    changes: tuple[Change, ...]
    """Changes made (status ``applied``), or with ``dry_run`` the ones apply would make."""
    dry_run: bool = False
    failed: tuple[Change, ...] = ()
    """Changes the brokers refused or that could not be made (status ``failed``, ``reason``
    the error)."""

    @property
    def skipped(self) -> tuple[Change, ...]:
        """Differences left as they are: blocked, refused or unsupported."""
        return self.plan.held_back

    @property
    def exit_code(self) -> int:
        return exit_code(failed=bool(self.failed), held_back=bool(self.skipped))

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.plan.prefix,
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
            "changes": [c.as_dict() for c in self.changes],
            "failed": [c.as_dict() for c in self.failed],
            "skipped": [c.as_dict() for c in self.skipped],
            "notes": [n.as_dict() for n in self.plan.notes],
        }


def exit_code(*, failed: bool, held_back: bool) -> int:
    """0 all done, 1 something failed, 2 something refused or left as is (for every apply)."""
    return 1 if failed else 2 if held_back else 0


async def read_cluster(settings: Settings) -> ClusterState:
    """The topics of the cluster (configs of those under the prefix) and the broker's APIs."""
    async with open_admin(settings) as admin:
        return await TopicAdmin(admin, settings).read_cluster(settings.topic_prefix)


async def plan_topics(
    settings: Settings, topics: Iterable[TopicSpec], *, allow_delete: bool = False
) -> TopicPlan:
    """The differences between validated declarations and the cluster, with what the brokers
    would refuse marked refused."""
    async with open_admin(settings) as admin:
        cluster_admin = TopicAdmin(admin, settings)
        cluster = await cluster_admin.read_cluster(settings.topic_prefix)
        plan = diff_topics(topics, cluster, prefix=settings.topic_prefix, allow_delete=allow_delete)
        return await cluster_admin.preflight(plan, cluster.capabilities)


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
    is completed or fails (for progress display); a change is complete once the metadata
    shows it, which must happen within ``visible_within`` seconds. A change the brokers refuse
    is reported in ``failed`` and the others go on; if the brokers stop answering, the changes
    not yet made are failed with that error. Topics outside the prefix are never touched.
    """
    prefix = settings.topic_prefix
    async with open_admin(settings) as admin:
        cluster_admin = TopicAdmin(admin, settings, visible_within=visible_within)
        cluster = await cluster_admin.read_cluster(prefix)
        plan = diff_topics(topics, cluster, prefix=prefix, allow_delete=allow_delete)
        plan = await cluster_admin.preflight(plan, cluster.capabilities)
        if on_plan is not None:
            on_plan(plan)
        if dry_run:
            return ApplyResult(plan, plan.planned, dry_run=True)
        applied: list[Change] = []
        failures: list[Change] = []

        def done(change: Change) -> None:
            finished = change.with_status(ChangeStatus.APPLIED)
            applied.append(finished)
            if on_change is not None:
                on_change(finished)

        def failed(change: Change, reason: str) -> None:
            failure = change.with_status(ChangeStatus.FAILED, reason)
            failures.append(failure)
            if on_change is not None:
                on_change(failure)

        steps = {
            ChangeKind.CREATE: cluster_admin.create,
            ChangeKind.ALTER_CONFIG: cluster_admin.alter_configs,
            ChangeKind.ADD_PARTITIONS: cluster_admin.add_partitions,
            ChangeKind.DELETE: cluster_admin.delete,
        }
        stopped: BrokerError | None = None
        for kind, step in steps.items():
            batch = [c for c in plan.planned if c.kind is kind]
            if not batch:
                continue
            if stopped is not None:
                for change in batch:
                    failed(change, f"not attempted: {stopped}")
                continue
            try:
                await step(batch, done, failed)
            except BrokerError as exc:  # the whole request failed: every change of it did
                finished = {(c.kind, c.topic) for c in (*applied, *failures)}
                for change in batch:
                    if (change.kind, change.topic) not in finished:
                        failed(change, str(exc))
                if isinstance(exc, BrokerUnavailable):
                    stopped = exc
    return ApplyResult(plan, tuple(applied), failed=tuple(failures))


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
