"""The planner component's contract (tests/embedded/test_planner_component.py) on real Kafka.

Real Kafka adds what the embedded broker lacks (group coordination as in production, exact
offsets); the behaviour must not differ.
"""

from __future__ import annotations

import pytest

from mesh.settings import Settings
from tests.embedded.test_planner_component import (
    test_a_request_becomes_a_plan,
    test_learned_state_is_rebuilt_from_the_history_after_a_restart,
    test_unplannable_requests_are_rejected_with_their_reason_and_nothing_is_planned,
)

__all__ = [
    "test_a_request_becomes_a_plan",
    "test_learned_state_is_rebuilt_from_the_history_after_a_restart",
    "test_unplannable_requests_are_rejected_with_their_reason_and_nothing_is_planned",
]


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings
