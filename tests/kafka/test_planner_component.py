"""The planner component's contract (tests/contract/planner.py) on real Apache Kafka, where group
coordination is as in production and offsets are exact; the behaviour must not differ."""

from __future__ import annotations

from tests.contract.brokers import OnKafka
from tests.contract.planner import PlannerContract


class TestPlannerOnKafka(OnKafka, PlannerContract):
    """Requests planned or rejected, learning rebuilt, on Apache Kafka."""
