"""The replay contract (tests/contract/replay.py) on real Apache Kafka: transactions, and
offsets looked up by timestamp on every partition."""

from __future__ import annotations

from tests.contract.brokers import OnKafka
from tests.contract.replay import ReplayContract


class TestReplayOnKafka(OnKafka, ReplayContract):
    """Replay, status, list and watch on Apache Kafka."""
