"""What plans refuse before apply, an open prefix, counted nouns and export (no broker: the
pure parts; tests/kafka/test_topics_refusals_kafka.py and test_topics_export_kafka.py meet
them on real Kafka)."""

from __future__ import annotations

import dataclasses

import yaml

from mesh.topics import (
    ChangeKind,
    ChangeStatus,
    beyond,
    diff_topics,
    export_declarations,
    plural,
)
from tests.unit.test_topics_plan import DECLARED, cluster, kafka_topic, plan, spec


def test_a_replication_factor_above_the_broker_count_is_refused_in_one_line() -> None:
    state = dataclasses.replace(cluster(), brokers=1)
    (change,) = plan(spec(replication_factor=3), state=state).changes
    assert (change.kind, change.status) == (ChangeKind.CREATE, ChangeStatus.REFUSED)
    assert change.reason == "replication factor 3 needs 3 brokers; the cluster has 1"


def test_the_brokers_default_min_insync_above_the_replication_factor_is_refused() -> None:
    state = dataclasses.replace(cluster(), brokers=3, default_min_insync=2)
    (change,) = plan(spec(), state=state).changes
    assert change.status is ChangeStatus.REFUSED
    assert change.reason == (
        "min.insync.replicas 2 (the brokers' default) exceeds the replication factor 1: no "
        "write with acks=all could ever succeed"
    )
    assert plan(spec(replication_factor=2), state=state).changes[0].status is ChangeStatus.PLANNED


def test_an_open_prefix_deletes_nothing_and_names_what_it_matches() -> None:
    state = cluster(kafka_topic("team1a"), kafka_topic("team1x.requests"))
    result = diff_topics([spec("a")], state, prefix="team1", allow_delete=True)
    assert result.changes == ()
    (note,) = result.notes
    assert "the prefix 'team1' does not end with '.', '_' or '-'" in note.message
    assert "team1x.requests" in note.message
    assert beyond("team1", ["team1.a", "team1x.requests", "team1-b", "team1"]) == [
        "team1x.requests"
    ]


def test_counted_nouns() -> None:
    assert [plural(n, "change") for n in (0, 1, 2)] == ["0 changes", "1 change", "2 changes"]
    assert plural(1, "replica") == "1 replica"


def test_export_writes_overrides_and_the_replication_factor_of_each_topic() -> None:
    topic = kafka_topic("mesh.plans", overrides={**DECLARED, "segment.ms": "3600000"})
    bare = kafka_topic("mesh.bare", partitions=2, overrides={}, replication_factor=3)
    outside = kafka_topic("other.x")
    text = export_declarations([topic, bare, outside], "mesh.", "kafka:9092")
    assert text.startswith("# Exported by 'mesh topics export' from kafka:9092")
    assert yaml.safe_load(text) == {
        "topics": [
            {"name": "bare", "partitions": 2, "replication_factor": 3},
            {
                "name": "plans",
                "partitions": 6,
                "replication_factor": 1,
                "config": {**DECLARED, "segment.ms": "3600000"},
            },
        ]
    }
