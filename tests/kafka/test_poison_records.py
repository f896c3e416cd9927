"""The poison-record contract (tests/embedded/test_poison_records.py) on real Apache Kafka, where
a 1 MiB record limit, group coordination and committed offsets are as in production."""

from __future__ import annotations

import pytest

from mesh.settings import Settings
from tests.embedded.test_poison_records import (
    test_poison_calls_are_dead_lettered_once_and_the_call_behind_is_answered,
    test_poison_requests_are_dead_lettered_once_and_the_request_behind_is_planned,
)

__all__ = [
    "test_poison_calls_are_dead_lettered_once_and_the_call_behind_is_answered",
    "test_poison_requests_are_dead_lettered_once_and_the_request_behind_is_planned",
]


@pytest.fixture
def settings(kafka_settings: Settings) -> Settings:
    return kafka_settings
