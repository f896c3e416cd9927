"""The planner component's contract (tests/contract/planner.py) on the embedded broker."""

from __future__ import annotations

from tests.contract.brokers import OnEmbedded
from tests.contract.planner import PlannerContract


class TestPlannerOnEmbedded(OnEmbedded, PlannerContract):
    """Requests planned or rejected, learning rebuilt, on the embedded broker."""
