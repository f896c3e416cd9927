"""The pure planner over observed clusters, Apache Kafka's shape and the embedded Tansu's."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st

from mesh.topics import (
    Api,
    ApplyResult,
    BrokerCapabilities,
    ChangeKind,
    ChangeStatus,
    ClusterState,
    ObservedConfig,
    ObservedTopic,
    TopicPlan,
    TopicSpec,
    diff_topics,
)
from mesh.topics._cluster import DEFAULT_CONFIG, DYNAMIC_TOPIC_CONFIG
from mesh.topics._plan import (
    CONFIGS_NOT_REPORTED,
    NEEDS_ALLOW_DELETE,
    NO_DELETE_WITHOUT_PREFIX,
    REFUSE_FEWER_PARTITIONS,
    REFUSE_REPLICATION,
)

PREFIX = "mesh."
DECLARED = {"cleanup.policy": "delete", "retention.ms": "604800000"}
# What Apache Kafka reports besides overrides: every other topic config, as a default.
KAFKA_DEFAULTS = {
    "cleanup.policy": "delete",
    "retention.ms": "604800000",
    "segment.bytes": "1073741824",
    "max.message.bytes": "1048588",
    "segment.ms": "604800000",
    "min.insync.replicas": "1",
}
TANSU = BrokerCapabilities.of(
    {0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 32, 36, 44}
)


def spec(name: str = "plans", partitions: int = 6, **fields: object) -> TopicSpec:
    values: dict[str, object] = {"replication_factor": 1, "config": dict(DECLARED)}
    values.update(fields)
    return TopicSpec.model_validate({"name": name, "partitions": partitions, **values})


def kafka_topic(
    name: str = "mesh.plans",
    partitions: int = 6,
    overrides: Mapping[str, str] | None = None,
    replication_factor: int = 1,
) -> ObservedTopic:
    """A topic as Apache Kafka reports it: every config, overrides marked DYNAMIC_TOPIC_CONFIG."""
    overrides = DECLARED if overrides is None else overrides
    configs = {key: ObservedConfig(value, DEFAULT_CONFIG) for key, value in KAFKA_DEFAULTS.items()}
    configs |= {
        key: ObservedConfig(value, DYNAMIC_TOPIC_CONFIG) for key, value in overrides.items()
    }
    return ObservedTopic(name, partitions, replication_factor, configs)


def tansu_topic(
    name: str = "mesh.plans", partitions: int = 6, given: Mapping[str, str] | None = None
) -> ObservedTopic:
    """A topic as Tansu reports it: only the configs given at creation, marked DEFAULT_CONFIG."""
    given = DECLARED if given is None else given
    configs = {key: ObservedConfig(value, DEFAULT_CONFIG) for key, value in given.items()}
    return ObservedTopic(name, partitions, 1, configs)


def cluster(*topics: ObservedTopic, capabilities: BrokerCapabilities | None = None) -> ClusterState:
    return ClusterState({t.name: t for t in topics}, capabilities or BrokerCapabilities())


def plan(*specs: TopicSpec, state: ClusterState, allow_delete: bool = False) -> TopicPlan:
    return diff_topics(specs, state, prefix=PREFIX, allow_delete=allow_delete)


# -- Apache Kafka -------------------------------------------------------------------------------


def test_empty_cluster_creates_every_topic_with_its_configs() -> None:
    result = plan(spec("plans"), spec("dlq", 3, replication_factor=3), state=cluster())
    assert [(c.kind, c.topic, c.status) for c in result.changes] == [
        (ChangeKind.CREATE, "mesh.dlq", ChangeStatus.PLANNED),
        (ChangeKind.CREATE, "mesh.plans", ChangeStatus.PLANNED),
    ]
    dlq = result.changes[0]
    assert (dlq.new, dlq.replication_factor, dict(dlq.config)) == (3, 3, DECLARED)
    assert dlq.name == "dlq"
    assert not result.in_sync


def test_in_sync_cluster_has_no_changes() -> None:
    assert plan(spec(), state=cluster(kafka_topic())).in_sync


def test_a_removed_override_is_drift_even_when_the_default_matches() -> None:
    """cleanup.policy=delete is Kafka's default, but only an override keeps it if the
    brokers' default changes: a declared key the topic merely inherits is drift."""
    observed = kafka_topic(overrides={"retention.ms": "604800000"})
    result = plan(spec(), state=cluster(observed))
    ((change,),) = [result.changes]
    assert change.kind is ChangeKind.ALTER_CONFIG
    (diff,) = change.config_diff
    assert (diff.key, diff.old, diff.new, diff.default) == (
        "cleanup.policy",
        None,
        "delete",
        "delete",
    )
    assert str(diff) == "cleanup.policy (unset; default delete) → delete"


def test_config_change_shows_old_and_new() -> None:
    observed = kafka_topic(overrides={**DECLARED, "retention.ms": "86400000"})
    (change,) = plan(spec(), state=cluster(observed)).changes
    assert change.kind is ChangeKind.ALTER_CONFIG
    assert change.status is ChangeStatus.PLANNED
    assert [(d.key, d.old, d.new) for d in change.config_diff] == [
        ("retention.ms", "86400000", "604800000")
    ]
    assert dict(change.config) == DECLARED  # the whole set: AlterConfigs replaces overrides
    assert change.summary() == "alter configs of mesh.plans: retention.ms 86400000 → 604800000"


def test_undeclared_override_is_drift_but_a_default_is_not() -> None:
    """An override set by hand is removed; the dozens of defaults Kafka reports are not drift."""
    observed = kafka_topic(overrides={**DECLARED, "segment.ms": "1000"})
    (change,) = plan(spec(), state=cluster(observed)).changes
    assert [(d.key, d.old, d.new) for d in change.config_diff] == [("segment.ms", "1000", None)]
    assert "segment.ms 1000 → (removed)" in change.summary()


def test_values_the_broker_rewrote_are_not_drift() -> None:
    declared = spec(
        config={"min.cleanable.dirty.ratio": "0.50", "cleanup.policy": "delete,compact"}
    )
    observed = kafka_topic(
        overrides={"min.cleanable.dirty.ratio": "0.5", "cleanup.policy": "compact,delete"}
    )
    assert plan(declared, state=cluster(observed)).in_sync


def test_partition_increase_is_planned_with_a_note() -> None:
    result = plan(spec(partitions=12), state=cluster(kafka_topic(partitions=6)))
    (change,) = result.changes
    assert (change.kind, change.status, change.old, change.new) == (
        ChangeKind.ADD_PARTITIONS,
        ChangeStatus.PLANNED,
        6,
        12,
    )
    assert any("moves keys" in note.message for note in result.notes)


def test_partition_decrease_is_refused_with_the_reason() -> None:
    (change,) = plan(spec(partitions=3), state=cluster(kafka_topic(partitions=6))).changes
    assert (change.kind, change.status) == (ChangeKind.REDUCE_PARTITIONS, ChangeStatus.REFUSED)
    assert change.reason == REFUSE_FEWER_PARTITIONS
    assert "cannot remove partitions" in change.reason


def test_replication_factor_change_is_refused_with_the_reason() -> None:
    result = plan(spec(replication_factor=3), state=cluster(kafka_topic()))
    (change,) = result.changes
    assert (change.kind, change.status) == (
        ChangeKind.CHANGE_REPLICATION_FACTOR,
        ChangeStatus.REFUSED,
    )
    assert (change.old, change.new) == (1, 3)
    assert change.reason == REFUSE_REPLICATION
    assert result.planned == ()
    assert result.held_back == (change,)


def test_undeclared_topic_under_prefix_needs_allow_delete() -> None:
    state = cluster(kafka_topic(), kafka_topic("mesh.handmade", 2))
    (blocked,) = plan(spec(), state=state).changes
    assert (blocked.kind, blocked.status, blocked.reason) == (
        ChangeKind.DELETE,
        ChangeStatus.BLOCKED,
        NEEDS_ALLOW_DELETE,
    )
    assert blocked.summary().startswith("would delete mesh.handmade")
    (planned,) = plan(spec(), state=state, allow_delete=True).changes
    assert (planned.kind, planned.status, planned.name) == (
        ChangeKind.DELETE,
        ChangeStatus.PLANNED,
        "handmade",
    )


def test_topics_outside_the_prefix_are_never_listed() -> None:
    state = cluster(
        kafka_topic(),
        kafka_topic("other.plans"),
        kafka_topic("meshplans"),
        kafka_topic("__consumer_offsets", 50),
    )
    assert plan(spec(), state=state, allow_delete=True).in_sync


def test_internal_topics_are_never_deleted_even_with_an_empty_prefix() -> None:
    internal = ObservedTopic("__transaction_state", 50, 1, internal=True)
    state = ClusterState({"__transaction_state": internal, "x": kafka_topic("x")})
    result = diff_topics([], state, prefix="", allow_delete=True)
    assert result.changes == ()
    assert [n.message for n in result.notes] == [NO_DELETE_WITHOUT_PREFIX]


def test_changes_come_in_the_order_apply_acts() -> None:
    state = cluster(
        kafka_topic("mesh.a", overrides={"retention.ms": "1"}),
        kafka_topic("mesh.b", partitions=1),
        kafka_topic("mesh.zz"),
    )
    result = plan(spec("c"), spec("a"), spec("b"), state=state, allow_delete=True)
    assert [c.kind for c in result.changes] == [
        ChangeKind.CREATE,
        ChangeKind.ALTER_CONFIG,
        ChangeKind.ADD_PARTITIONS,
        ChangeKind.DELETE,
    ]


def test_plan_json_shape() -> None:
    state = cluster(kafka_topic(partitions=6, overrides={"retention.ms": "1"}))
    document = plan(spec(partitions=3), state=state).as_dict()
    assert document["prefix"] == PREFIX
    assert document["in_sync"] is False
    kinds = {c["kind"]: c for c in document["changes"]}
    assert kinds["alter_config"]["details"] == {
        "config": {
            "cleanup.policy": {"old": None, "new": "delete", "default": "delete"},
            "retention.ms": {"old": "1", "new": "604800000"},
        }
    }
    assert kinds["reduce_partitions"] == {
        "kind": "reduce_partitions",
        "topic": "mesh.plans",
        "name": "plans",
        "status": "refused",
        "reason": REFUSE_FEWER_PARTITIONS,
        "details": {"partitions": {"old": 6, "new": 3}},
    }


def test_apply_result_json_has_changes_and_skipped() -> None:
    result = plan(spec(partitions=3), state=cluster(kafka_topic()))
    document = ApplyResult(result, ()).as_dict()
    assert document["changes"] == []
    assert [c["kind"] for c in document["skipped"]] == ["reduce_partitions"]
    assert document["dry_run"] is False


# -- the embedded Tansu broker ------------------------------------------------------------------


def test_tansu_reports_the_creation_configs_and_is_in_sync() -> None:
    """Configs given at creation come back as DEFAULT_CONFIG: they still count as set."""
    observed = tansu_topic()
    assert not observed.reports_defaults
    assert observed.overrides() == DECLARED
    assert plan(spec(), state=cluster(observed, capabilities=TANSU)).in_sync


def test_tansu_reporting_no_configs_is_a_note_not_drift() -> None:
    result = plan(spec(), state=cluster(tansu_topic(given={}), capabilities=TANSU))
    assert result.in_sync
    assert [(n.topic, n.message) for n in result.notes] == [("mesh.plans", CONFIGS_NOT_REPORTED)]
    assert "configs not reported by this broker" in CONFIGS_NOT_REPORTED


def test_tansu_config_change_is_unsupported_and_still_drift() -> None:
    """No AlterConfigs on Tansu: plan says so, apply skips it, check still reports it."""
    observed = tansu_topic(given={**DECLARED, "retention.ms": "1"})
    result = plan(spec(), state=cluster(observed, capabilities=TANSU))
    (change,) = result.changes
    assert (change.kind, change.status) == (ChangeKind.ALTER_CONFIG, ChangeStatus.UNSUPPORTED)
    assert change.reason is not None
    assert "AlterConfigs (API key 33)" in change.reason
    assert result.planned == ()
    assert not result.in_sync


def test_tansu_config_declared_later_or_dropped_is_seen() -> None:
    """With only creation configs reported, a missing declared key and an extra one both show."""
    observed = tansu_topic(given={"retention.ms": "604800000", "segment.ms": "5"})
    (change,) = plan(spec(), state=cluster(observed, capabilities=TANSU)).changes
    assert [(d.key, d.old, d.new) for d in change.config_diff] == [
        ("cleanup.policy", None, "delete"),
        ("segment.ms", "5", None),
    ]


def test_tansu_partition_increase_is_unsupported() -> None:
    result = plan(spec(partitions=12), state=cluster(tansu_topic(), capabilities=TANSU))
    (change,) = result.changes
    assert (change.kind, change.status) == (ChangeKind.ADD_PARTITIONS, ChangeStatus.UNSUPPORTED)
    assert change.reason is not None
    assert "CreatePartitions (API key 37)" in change.reason
    assert result.notes == ()  # keys do not move when no partition is added


def test_tansu_creates_and_deletes_normally() -> None:
    state = cluster(tansu_topic("mesh.old"), capabilities=TANSU)
    result = plan(spec(), state=state, allow_delete=True)
    assert [(c.kind, c.status) for c in result.changes] == [
        (ChangeKind.CREATE, ChangeStatus.PLANNED),
        (ChangeKind.DELETE, ChangeStatus.PLANNED),
    ]


def test_a_broker_without_delete_topics() -> None:
    caps = BrokerCapabilities.of(set(Api) - {Api.DELETE_TOPICS})
    (change,) = plan(state=cluster(kafka_topic(), capabilities=caps), allow_delete=True).changes
    assert change.status is ChangeStatus.UNSUPPORTED


# -- the prefix is the fence --------------------------------------------------------------------

_names = st.text(alphabet="abc.", min_size=1, max_size=6)


@given(
    declared=st.sets(_names, max_size=4),
    live=st.sets(st.sampled_from(["mesh.", "other.", "mes", "__", ""]).flatmap(
        lambda head: _names.map(lambda tail: head + tail)
    ), max_size=6),
)  # fmt: skip
def test_no_change_ever_names_a_topic_outside_the_prefix(
    declared: set[str], live: set[str]
) -> None:
    state = cluster(*(kafka_topic(name) for name in live))
    result = plan(*(spec(name) for name in declared), state=state, allow_delete=True)
    assert all(change.topic.startswith(PREFIX) for change in result.changes)
    deleted = {c.topic for c in result.changes if c.kind is ChangeKind.DELETE}
    assert deleted == {n for n in live if n.startswith(PREFIX)} - {PREFIX + n for n in declared}
