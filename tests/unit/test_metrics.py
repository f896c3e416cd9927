"""The metrics hooks count what they are given, per batch, with bounded labels; the lag comes
from the consumer's end offsets and the positions the component reached."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from aiokafka import TopicPartition

from mesh.events import Mapper, Producer, TaskCompleted, meta
from mesh.kafka.produce import Outgoing
from mesh.observe import metrics
from tests.helpers import assert_one_line_error, run_mesh


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int


def value(name: str, **labels: str) -> float:
    found = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if found is None else found


class FakeConsumer:
    """What the lag collector reads: assignment and end offsets (read_committed's LSO)."""

    def __init__(self, ends: dict[TopicPartition, int]) -> None:
        self.ends = ends

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends[tp] + 100  # above the LSO: the LSO must win

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.ends[tp]


def test_a_batch_is_counted_per_topic_and_its_size_observed() -> None:
    group, topic = "unit-batch", "unit.batch.topic"
    before = value("messaging_client_consumed_messages_total", **_labels(topic, group))
    batch = {
        TopicPartition(topic, 0): [Rec(topic, 0, 5), Rec(topic, 0, 6)],
        TopicPartition(topic, 1): [Rec(topic, 1, 9)],
    }
    metrics.consumed(group, batch)
    after = value("messaging_client_consumed_messages_total", **_labels(topic, group))
    assert after - before == 3
    assert value("mesh_batch_records_count", messaging_consumer_group_name=group) == 1
    assert value("mesh_batch_records_sum", messaging_consumer_group_name=group) == 3


def test_lag_is_the_end_offset_minus_the_position_reached() -> None:
    group, topic = "unit-lag", "unit.lag.topic"
    consumer = FakeConsumer({TopicPartition(topic, 0): 10, TopicPartition(topic, 1): 4})
    metrics.watch(consumer, group)
    metrics.consumed(group, {TopicPartition(topic, 0): [Rec(topic, 0, 6)]})
    lag = {"messaging_consumer_group_name": group, "messaging_destination_name": topic}
    assert value("mesh_consumer_lag_records", **lag, messaging_destination_partition_id="0") == 3
    # Partition 1: nothing consumed and no fetch position: no series rather than a guess.
    got = metrics.REGISTRY.get_sample_value(
        "mesh_consumer_lag_records", {**lag, "messaging_destination_partition_id": "1"}
    )
    assert got is None


def test_written_history_counts_task_transitions_by_state() -> None:
    mapper = Mapper()
    event = _completed()
    before = value("mesh_task_transitions_total", state="completed")
    metrics.decided([Outgoing.of("workflow.events", mapper.encode(event))] * 2)
    assert value("mesh_task_transitions_total", state="completed") - before == 2


def test_sent_records_are_counted_by_topic() -> None:
    before = value("messaging_client_sent_messages_total", messaging_destination_name="p.x")
    metrics.sent(["x", "x", "y"], lambda channel: f"p.{channel}")
    assert value("messaging_client_sent_messages_total", messaging_destination_name="p.x") == (
        before + 2
    )


def test_no_metric_has_a_workflow_or_task_id_label() -> None:
    names = {
        label
        for collector in metrics.REGISTRY._collector_to_names  # every registered metric
        for label in getattr(collector, "_labelnames", ())
    }
    assert not names & {"workflow_id", "task_id", "correlation_id"}


def _labels(topic: str, group: str) -> dict[str, str]:
    return {"messaging_destination_name": topic, "messaging_consumer_group_name": group}


def _completed() -> TaskCompleted:
    me = Producer(component="test", instance="t")
    return TaskCompleted(
        **meta(me, correlation_id="r"), workflow_id="wf", task_id="A", attempt=1, agent_id="a"
    )


class Held:
    def __init__(self) -> None:
        self.counts = {"gpu": 2.0}

    def by_pool(self) -> dict[str, float]:
        return self.counts


def test_a_sampled_gauge_reads_its_source_at_scrape_and_ends_with_it() -> None:
    held = Held()
    metrics.sample("unit_sampled", "a test gauge", "pool", held.by_pool)
    assert value("unit_sampled", pool="gpu") == 2
    held.counts["gpu"] = 3
    assert value("unit_sampled", pool="gpu") == 3
    del held  # a component gone (rebuilt after a fault) no longer counts
    assert metrics.REGISTRY.get_sample_value("unit_sampled", {"pool": "gpu"}) is None


def test_a_metrics_port_in_use_is_one_line_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = run_mesh("-b", "127.0.0.1:1", "run", "planner", env={"MESH_METRICS_PORT": str(port)})
    line = assert_one_line_error(run)
    assert f"cannot serve metrics on 127.0.0.1:{port}" in line
